"""Filters and geometry: transforms that drop, move or relabel events.

All take a structured event array or an :class:`EventBatch`, return the same
kind, never modify their input, and keep events in their input order.
"""
from __future__ import annotations

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
        t = batch.t if self.time_factor == 1 else np.trunc(batch.t * float(self.time_factor)).astype(np.int64)
        x = batch.x if fx == 1 else (batch.x * float(fx)).astype(np.uint16)
        y = batch.y if fy == 1 else (batch.y * float(fy)).astype(np.uint16)
        out = batch.replace(x=x, y=y, t=t)
        if self.target_size is not None:
            out.sensor_size = (int(self.target_size[0]), int(self.target_size[1]), self.sensor_size[2])
        else:
            out.sensor_size = None
        return out


def _crop(batch, x0, y0, w, h, shift_x=None, shift_y=None):
    """Keep events with ``x0 <= x < x0 + w`` and ``y0 <= y < y0 + h`` (per-sample arrays), shifted."""
    counts = batch.counts
    x0e, y0e = np.repeat(x0, counts), np.repeat(y0, counts)
    xi, yi = batch.x.astype(np.int64), batch.y.astype(np.int64)
    keep = (xi >= x0e) & (xi < x0e + w) & (yi >= y0e) & (yi < y0e + h)
    sx = x0e if shift_x is None else np.repeat(shift_x, counts)
    sy = y0e if shift_y is None else np.repeat(shift_y, counts)
    kept = batch.take(keep)
    nx = (xi[keep] - sx[keep]).astype(np.uint16)
    ny = (yi[keep] - sy[keep]).astype(np.uint16)
    out = kept.replace(x=nx, y=ny)
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
        x0, y0 = max(ox, 0), max(oy, 0)
        x, y = batch.x, batch.y
        keep = (x < x0 + w) & (y < y0 + h)  # one box for all samples: compare in uint16
        if x0:
            keep &= x >= x0
        if y0:
            keep &= y >= y0
        out = batch.take(keep)
        out.x = (out.x.astype(np.int32) - ox).astype(np.uint16) if ox else out.x
        out.y = (out.y.astype(np.int32) - oy).astype(np.uint16) if oy else out.y
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
        keep = np.ones(batch.n_events, bool)
        if self.min is not None:
            keep &= batch.t >= self.min
        if self.max is not None:
            keep &= batch.t <= self.max
        return batch.take(keep)


@dataclass
class MergePolarities(EventTransform):
    """Set every polarity to 0 (one-channel sensors)."""

    def _apply(self, batch, rng):
        out = batch.replace(p=np.zeros(batch.n_events, np.uint8))
        if out.sensor_size is not None:
            out.sensor_size = (out.sensor_size[0], out.sensor_size[1], 1)
        return out
