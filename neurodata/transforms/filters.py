"""Filters and geometry: transforms that drop, move or relabel events.

All take a structured event array or an :class:`EventBatch`, return the same
kind, never modify their input, and keep events in their input order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurodata.transforms import _kernels as K
from neurodata.transforms._base import EventTransform, RandomMixin, per_sample, resolve_sensor


def _memory_size(sensor_size, batch):
    """``(W, H)`` large enough for every event (pixel memories must not overflow)."""
    W, H, _ = resolve_sensor(sensor_size, batch)
    if batch.n_events:
        W = max(W, int(batch.x.max()) + 1)
        H = max(H, int(batch.y.max()) + 1)
    return W, H


@dataclass
class Denoise(EventTransform):
    """Drop events with no event at a 4-neighbour pixel in the preceding ``filter_time`` us.

    An event at ``(x, y, t)`` survives if one of ``(x±1, y)``, ``(x, y±1)``
    had an event at ``t'`` (earlier in the sample) with ``t - t' < filter_time``.
    Unlike tonic, pixels that have not fired yet never count as recent
    (tonic starts its memory at ``filter_time``, so every event before the
    absolute time ``filter_time`` passes).
    """

    filter_time: float = 10000
    sensor_size: tuple | None = None

    def _apply(self, batch, rng):
        W, H = _memory_size(self.sensor_size, batch)
        keep = K.denoise(batch.x, batch.y, batch.t, batch.offsets, W, H,
                         int(np.ceil(self.filter_time)))
        return batch.take(keep)


@dataclass
class RefractoryPeriod(RandomMixin, EventTransform):
    """Drop events within ``delta`` us (inclusive) after the previous event of the same pixel.

    ``delta`` may be a ``(low, high)`` range drawn per sample. A pixel's first
    event is always kept (tonic drops a first event at ``t <= 0``).
    """

    delta: float | tuple = 1000
    sensor_size: tuple | None = None
    seed: int | np.random.Generator | None = None

    @property
    def deterministic(self):  # noqa: D401 - a fixed delta needs no randomness
        return not isinstance(self.delta, (tuple, list))

    def _apply(self, batch, rng):
        W, H = _memory_size(self.sensor_size, batch)
        period = np.floor(per_sample(self.delta, len(batch), rng)).astype(np.int64)
        keep = K.refractory(batch.x, batch.y, batch.t, batch.offsets, W, H, period)
        return batch.take(keep)


@dataclass
class Decimation(EventTransform):
    """Keep every ``n``-th event of each pixel (the ``n``-th, ``2n``-th, ...)."""

    n: int = 2
    sensor_size: tuple | None = None

    def _apply(self, batch, rng):
        if self.n < 1:
            raise ValueError("n must be a positive integer")
        W, H = _memory_size(self.sensor_size, batch)
        return batch.take(K.decimate(batch.x, batch.y, batch.offsets, W, H, int(self.n)))


@dataclass
class Downsample(EventTransform):
    """Scale timestamps by ``time_factor`` and coordinates by ``spatial_factor``.

    ``target_size`` with ``sensor_size`` sets the spatial factors to
    ``target / sensor``. Scaled values are truncated toward zero (as tonic);
    no event is dropped. Set ``sensor_size`` of later transforms to the new size.
    """

    time_factor: float = 1.0
    spatial_factor: float | tuple = 1.0
    sensor_size: tuple | None = None
    target_size: tuple | None = None

    def _apply(self, batch, rng):
        if self.target_size is not None:
            if self.sensor_size is None:
                raise ValueError("target_size needs sensor_size")
            fx = self.target_size[0] / self.sensor_size[0]
            fy = self.target_size[1] / self.sensor_size[1]
        elif isinstance(self.spatial_factor, (tuple, list)):
            fx, fy = self.spatial_factor
        else:
            fx = fy = self.spatial_factor
        t = batch.t if self.time_factor == 1 else K.affine(batch.t, self.time_factor, 0, np.int64)
        x = batch.x if fx == 1 else K.affine(batch.x, fx, 0, np.uint16)
        y = batch.y if fy == 1 else K.affine(batch.y, fy, 0, np.uint16)
        out = batch.replace(x=x, y=y, t=t)
        if self.target_size is not None:
            out.sensor_size = (int(self.target_size[0]), int(self.target_size[1]), self.sensor_size[2])
        else:
            out.sensor_size = None
        return out


def _crop(batch, x0, y0, w, h):
    """Keep events with ``x0 <= x < x0 + w``, ``y0 <= y < y0 + h`` (per-sample arrays), moved to the box."""
    B = len(batch)
    keep, dx, dy = K.in_boxes(batch.x, batch.y, batch.offsets, x0, y0, np.full(B, w), np.full(B, h))
    out = batch.replace(x=dx, y=dy).take(keep)
    out.sensor_size = (int(w), int(h), (batch.sensor_size or (0, 0, 2))[2])
    return out


def _wh(size):
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


@dataclass
class CenterCrop(EventTransform):
    """Keep the centred ``size = (width, height)`` window (an int for a square).

    A size larger than the sensor pads instead (coordinates shift right/down),
    as in tonic.
    """

    sensor_size: tuple = (34, 34, 2)
    size: int | tuple = 32

    def _apply(self, batch, rng):
        w, h = _wh(self.size)
        ox = (self.sensor_size[0] - w) // 2
        oy = (self.sensor_size[1] - h) // 2
        B = len(batch)
        keep, dx, dy = K.in_boxes(batch.x, batch.y, batch.offsets, np.full(B, max(ox, 0)),
                                  np.full(B, max(oy, 0)), np.full(B, w), np.full(B, h))
        out = batch.replace(x=dx, y=dy).take(keep)
        if ox < 0:  # a window wider than the sensor pads: events move right
            out.x = out.x + np.uint16(-ox)
        if oy < 0:
            out.y = out.y + np.uint16(-oy)
        out.sensor_size = (w, h, self.sensor_size[2])
        return out


@dataclass
class RandomCrop(RandomMixin, EventTransform):
    """Keep a ``target_size = (width, height)`` window at a random place, drawn per sample."""

    sensor_size: tuple = (34, 34, 2)
    target_size: tuple = (32, 32)
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        W, H = self.sensor_size[0], self.sensor_size[1]
        w, h = _wh(self.target_size)
        if w > W or h > H:
            raise ValueError("target_size must fit inside sensor_size")
        B = len(batch)
        x0 = (rng.random(B) * (W - w)).astype(np.int64)
        y0 = (rng.random(B) * (H - h)).astype(np.int64)
        out = _crop(batch, x0, y0, w, h)
        out.sensor_size = (w, h, self.sensor_size[2])
        return out


@dataclass
class CropTime(EventTransform):
    """Keep events with ``min <= t <= max`` (``None``: no bound on that side)."""

    min: float | None = 0
    max: float | None = None

    def _apply(self, batch, rng):
        if self.min is None and self.max is None:
            return batch.replace()
        lo, hi = _whole_us(self.min, up=True), _whole_us(self.max, up=False)
        B = len(batch)
        return batch.take(K.in_intervals(batch.t, batch.offsets, np.full(B, lo), np.full(B, hi)))


def _whole_us(bound, up):
    """A time bound as the int64 that integer times compare against the same way
    (``t >= b`` is ``t >= ceil(b)``, ``t <= b`` is ``t <= floor(b)``); None is no bound."""
    info = np.iinfo(np.int64)
    if bound is None:
        return info.min if up else info.max
    if math.isnan(bound):  # compares false with every time: an empty interval
        return info.max if up else info.min
    if math.isinf(bound):
        return info.min if bound < 0 else info.max
    b = math.ceil(bound) if up else math.floor(bound)
    return min(max(b, info.min), info.max)


@dataclass
class MergePolarities(EventTransform):
    """Set every polarity to 0 (one-channel sensors)."""

    def _apply(self, batch, rng):
        out = batch.replace(p=np.zeros(batch.n_events, np.uint8))
        if out.sensor_size is not None:
            out.sensor_size = (out.sensor_size[0], out.sensor_size[1], 1)
        return out
