"""Random augmentations of event samples.

Every transform takes ``seed`` (int, :class:`numpy.random.Generator` or None):
the same seed gives the same outputs. On a batch, per-sample choices (flip or
not, crop box, drop ratio) are drawn for all samples at once. Samples stay
time-sorted where the transform could break the order only if asked
(``TimeJitter(sort_timestamps=True)``) or where it must (``UniformNoise``,
``EventMix``, ``RandomTimeReversal``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurodata.transforms import _kernels as K
from neurodata.transforms._base import EventTransform, RandomMixin, per_sample, resolve_sensor
from neurodata.transforms._batch import EventBatch


def _sort_within_samples(batch: EventBatch) -> EventBatch:
    """Stable sort of events by time inside each sample."""
    if batch.n_events < 2:
        return batch
    t = batch.t
    seg = K.segment_ids(batch.offsets)
    span = int(t.max()) - int(t.min()) + 1
    order = np.argsort(seg * span + (t - t.min()), kind="stable")
    return batch.replace(batch.x[order], batch.y[order], t[order], batch.p[order])


def _chosen(rng, B, p, counts):
    """Per-sample Bernoulli(p) choice and its per-event expansion."""
    pick = rng.random(B) < p
    return pick, np.repeat(pick, counts)


@dataclass
class RandomFlipLR(RandomMixin, EventTransform):
    """Mirror ``x -> W - 1 - x`` with probability ``p`` per sample."""

    sensor_size: tuple = (34, 34, 2)
    p: float = 0.5
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        _, ev = _chosen(rng, len(batch), self.p, batch.counts)
        W = np.uint16(self.sensor_size[0] - 1)
        return batch.replace(x=np.where(ev, W - batch.x, batch.x).astype(np.uint16))


@dataclass
class RandomFlipUD(RandomMixin, EventTransform):
    """Mirror ``y -> H - 1 - y`` with probability ``p`` per sample."""

    sensor_size: tuple = (34, 34, 2)
    p: float = 0.5
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        _, ev = _chosen(rng, len(batch), self.p, batch.counts)
        H = np.uint16(self.sensor_size[1] - 1)
        return batch.replace(y=np.where(ev, H - batch.y, batch.y).astype(np.uint16))


@dataclass
class RandomFlipPolarity(RandomMixin, EventTransform):
    """Swap ON and OFF for the whole sample with probability ``p``."""

    p: float = 0.5
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        _, ev = _chosen(rng, len(batch), self.p, batch.counts)
        return batch.replace(p=np.where(ev, 1 - np.minimum(batch.p, 1), batch.p).astype(np.uint8))


@dataclass
class RandomTimeReversal(RandomMixin, EventTransform):
    """Play the sample backwards with probability ``p``: ``t -> max(t) - t``, order reversed.

    With ``flip_polarities`` ON and OFF swap too (a brightening played
    backwards is a darkening).
    """

    p: float = 0.5
    flip_polarities: bool = True
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        pick = rng.random(len(batch)) < self.p
        if not pick.any() or batch.n_events == 0:
            return batch.replace()
        x, y, t, p = K.reverse_samples(batch.x, batch.y, batch.t, batch.p, batch.offsets,
                                       pick, bool(self.flip_polarities))
        return batch.replace(x, y, t, p)


@dataclass
class DropEvent(RandomMixin, EventTransform):
    """Drop ``round(p * n)`` events of each sample, chosen uniformly without replacement.

    ``p`` may be a ``(low, high)`` range drawn per sample. Each event gets a
    random 32-bit key and a sample loses its events with the smallest keys
    (ties by position), so both kernel backends drop the same events.
    """

    p: float | tuple = 0.1
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        B, counts = len(batch), batch.counts
        ratio = per_sample(self.p, B, rng)
        n_drop = (ratio * counts + 0.5).astype(np.int64)
        if batch.n_events == 0 or not n_drop.any():
            return batch.replace()
        return batch.take(K.drop_exact(K.random_keys(rng, batch.n_events), batch.offsets, n_drop))


@dataclass
class DropByTime(RandomMixin, EventTransform):
    """Drop the events of a random interval covering ``duration_ratio`` of the sample's span.

    The interval lies inside ``[t_first, t_last]`` of the sample (tonic places
    it in ``[0, t_last]``, so recordings not starting near 0 rarely lose events).
    ``duration_ratio`` may be a ``(low, high)`` range.
    """

    duration_ratio: float | tuple = 0.2
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        B, counts = len(batch), batch.counts
        ratio = per_sample(self.duration_ratio, B, rng)
        ne = counts > 0
        t0 = np.zeros(B)
        t1 = np.zeros(B)
        t0[ne] = batch.t[batch.offsets[:-1][ne]]
        t1[ne] = batch.t[batch.offsets[1:][ne] - 1]
        dur = (t1 - t0) * ratio
        start = t0 + rng.random(B) * (t1 - t0 - dur)
        # integer times: t >= start and t <= start + dur as whole-us bounds
        lo = np.ceil(start).astype(np.int64)
        hi = np.floor(start + dur).astype(np.int64)
        return batch.take(~K.in_intervals(batch.t, batch.offsets, lo, hi))


@dataclass
class DropByArea(RandomMixin, EventTransform):
    """Drop events inside a random box of ``area_ratio`` times the sensor's width and height."""

    sensor_size: tuple = (34, 34, 2)
    area_ratio: float | tuple = 0.2
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        B = len(batch)
        W, H = self.sensor_size[0], self.sensor_size[1]
        ratio = per_sample(self.area_ratio, B, rng)
        cw = (W * ratio).astype(np.int64)
        ch = (H * ratio).astype(np.int64)
        x0 = (rng.random(B) * (W - cw + 1)).astype(np.int64)
        y0 = (rng.random(B) * (H - ch + 1)).astype(np.int64)
        x0 = np.minimum(x0, W - cw)
        y0 = np.minimum(y0, H - ch)
        inside, _, _ = K.in_boxes(batch.x, batch.y, batch.offsets, x0, y0, cw, ch)
        return batch.take(~inside)


@dataclass
class DropPixel(EventTransform):
    """Drop all events of given pixels, or of hot pixels.

    ``coordinates``: ``(x, y)`` pairs to drop. ``hot_pixel_frequency`` (Hz):
    per sample, drop pixels with more than ``frequency * duration`` events,
    duration from the sample's first to last event (as tonic).
    """

    coordinates: list | None = None
    hot_pixel_frequency: float | None = None
    sensor_size: tuple | None = None

    def _apply(self, batch, rng):
        if batch.n_events == 0:
            return batch.replace()
        W, H, _ = resolve_sensor(self.sensor_size, batch)
        W = max(W, int(batch.x.max()) + 1)
        H = max(H, int(batch.y.max()) + 1)
        drop = None
        if self.coordinates is not None and len(self.coordinates):
            c = np.asarray(self.coordinates, np.int64).reshape(-1, 2)
            c = c[(c[:, 0] >= 0) & (c[:, 0] < W) & (c[:, 1] >= 0) & (c[:, 1] < H)]
            table = np.zeros(W * H, bool)
            table[c[:, 1] * W + c[:, 0]] = True
            drop = K.pixel_lookup(batch.x, batch.y, table, W)
        if self.hot_pixel_frequency is not None:
            B, counts = len(batch), batch.counts
            ne = counts > 0
            dur = np.zeros(B)
            dur[ne] = batch.t[batch.offsets[1:][ne] - 1] - batch.t[batch.offsets[:-1][ne]]
            limit = self.hot_pixel_frequency * dur * 1e-6
            hot = K.hot_pixel_events(batch.x, batch.y, batch.offsets, W, H, limit)
            drop = hot if drop is None else drop | hot
        if drop is None:
            return batch.replace()
        return batch.take(~drop)


@dataclass
class TimeJitter(RandomMixin, EventTransform):
    """Add Gaussian noise of ``std`` us to each timestamp (rounded to whole us).

    ``clip_negative`` drops events pushed below 0; ``sort_timestamps``
    re-sorts each sample by time.
    """

    std: float = 1.0
    clip_negative: bool = True
    sort_timestamps: bool = False
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        noise = rng.standard_normal(batch.n_events, dtype=np.float32)
        t, negative = K.jitter_times(batch.t, noise, self.std)
        out = batch.replace(t=t)
        if self.clip_negative and negative:
            out = out.take(t >= 0)
        return _sort_within_samples(out) if self.sort_timestamps else out


@dataclass
class SpatialJitter(RandomMixin, EventTransform):
    """Move events by a 2-D Gaussian ``[[var_x, sigma_xy], [sigma_xy, var_y]]`` (rounded).

    Events moved off the sensor are dropped (``clip_outliers=True``) or
    clamped to its border (``False``): coordinates are unsigned, so unlike
    tonic they cannot leave the sensor.
    """

    sensor_size: tuple = (34, 34, 2)
    var_x: float = 1.0
    var_y: float = 1.0
    sigma_xy: float = 0.0
    clip_outliers: bool = True
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        n = batch.n_events
        cov = np.array([[self.var_x, self.sigma_xy], [self.sigma_xy, self.var_y]], float)
        # Cholesky factor (semi-definite covariances allowed)
        w, v = np.linalg.eigh(cov)
        L = v * np.sqrt(np.maximum(w, 0))
        g = rng.standard_normal((n, 2))  # moves are rint(g @ L.T)
        W, H = self.sensor_size[0], self.sensor_size[1]
        x, y, inside = K.spatial_jitter(batch.x, batch.y, g, L, int(W), int(H))
        out = batch.replace(x=x, y=y)
        if self.clip_outliers and inside is not None:
            return out.take(inside)
        return out


@dataclass
class TimeSkew(RandomMixin, EventTransform):
    """``t -> coefficient * t + offset``, truncated to whole us (ranges drawn per sample)."""

    coefficient: float | tuple = 1.0
    offset: float | tuple = 0
    seed: int | np.random.Generator | None = None

    @property
    def deterministic(self):
        return not isinstance(self.coefficient, (tuple, list)) and not isinstance(self.offset, (tuple, list))

    def _apply(self, batch, rng):
        B, counts = len(batch), batch.counts
        if self.deterministic:  # one linear map for all samples
            c, o = float(self.coefficient), self.offset
            if c == 1.0 and float(o) == int(o):
                return batch.replace(t=batch.t + int(o))
            return batch.replace(t=K.affine(batch.t, c, o, np.int64))  # truncates toward 0
        c = per_sample(self.coefficient, B, rng)
        o = per_sample(self.offset, B, rng)
        if B == 1:
            t = np.trunc(batch.t * c[0] + o[0])
        else:
            t = np.trunc(batch.t * np.repeat(c, counts) + np.repeat(o, counts))
        return batch.replace(t=t.astype(np.int64))


@dataclass
class UniformNoise(RandomMixin, EventTransform):
    """Add ``n`` events uniform over the sensor and the sample's time span, then sort by time.

    ``n`` may be a ``(low, high)`` range drawn per sample; empty samples stay empty.
    """

    sensor_size: tuple = (34, 34, 2)
    n: int | tuple = 1000
    seed: int | np.random.Generator | None = None

    def _apply(self, batch, rng):
        B, counts = len(batch), batch.counts
        n_add = per_sample(self.n, B, rng, integer=True)
        n_add[counts == 0] = 0
        total = int(n_add.sum())
        if total == 0:
            return batch.replace()
        W, H, P = self.sensor_size
        ne = counts > 0
        t0 = np.zeros(B, np.int64)
        t1 = np.zeros(B, np.int64)
        t0[ne] = batch.t[batch.offsets[:-1][ne]]
        t1[ne] = batch.t[batch.offsets[1:][ne] - 1]
        # noise events: sample-major, then merged into the samples and sorted
        ts0, ts1 = np.repeat(t0, n_add), np.repeat(t1, n_add)
        nt = (ts0 + rng.random(total) * (ts1 - ts0)).astype(np.int64)
        nx = rng.integers(0, W, total).astype(np.uint16)
        ny = rng.integers(0, H, total).astype(np.uint16)
        npol = rng.integers(0, P, total).astype(np.uint8)
        offsets = np.zeros(B + 1, np.int64)
        np.cumsum(counts + n_add, out=offsets[1:])
        noise_offsets = np.zeros(B + 1, np.int64)
        np.cumsum(n_add, out=noise_offsets[1:])
        seg_noise = np.repeat(np.arange(B), n_add)
        span = int(t1.max()) - int(t0.min()) + 1
        by_time = np.argsort(seg_noise * span + (nt - t0.min()), kind="stable")  # the few noise events
        noise = (nx[by_time], ny[by_time], nt[by_time], npol[by_time])
        if K.sorted_within_samples(batch.t, batch.offsets):  # the usual case: one merge pass
            cols = K.merge_sorted((batch.x, batch.y, batch.t, batch.p), batch.offsets, noise, noise_offsets)
            return batch.replace(*cols, offsets)
        seg = np.concatenate([K.segment_ids(batch.offsets), seg_noise])
        t = np.concatenate([batch.t, nt])
        span = int(t.max()) - int(t.min()) + 1
        order = np.argsort(seg * span + (t - t.min()), kind="stable")
        return batch.replace(np.concatenate([batch.x, nx])[order], np.concatenate([batch.y, ny])[order],
                             t[order], np.concatenate([batch.p, npol])[order], offsets)


@dataclass
class EventMix(RandomMixin, EventTransform):
    """Mix each sample with a random partner of the batch (EventMix, Shen et al. 2021, box variant).

    Per sample, ``lam ~ Beta(alpha, alpha)``; a random box covering
    ``1 - lam`` of the sensor area takes its events from the partner, the rest
    from the sample itself; events are merged in time order. The label weight
    of the sample is the fraction of output events that came from it.
    ``batch.meta["mix_partner"]`` and ``["mix_weight"]`` record the mix; with
    ``n_classes`` and integer labels, ``labels`` become soft ``(B, n_classes)``
    float32 labels. Needs an :class:`EventBatch`.
    """

    sensor_size: tuple = (34, 34, 2)
    alpha: float = 1.0
    n_classes: int | None = None
    seed: int | np.random.Generator | None = None

    def __call__(self, events):
        if not isinstance(events, EventBatch):
            raise TypeError("EventMix mixes samples of a batch: pass an EventBatch")
        return self._apply(events, self._rng)

    def _apply(self, batch, rng):
        B, counts = len(batch), batch.counts
        W, H = self.sensor_size[0], self.sensor_size[1]
        partner = rng.permutation(B)
        lam = rng.beta(self.alpha, self.alpha, B)
        side = np.sqrt(1.0 - lam)
        bw = np.round(W * side).astype(np.int64)
        bh = np.round(H * side).astype(np.int64)
        bx = (rng.random(B) * (W - bw + 1)).astype(np.int64)
        by = (rng.random(B) * (H - bh + 1)).astype(np.int64)
        seg = K.segment_ids(batch.offsets)
        xi, yi = batch.x.astype(np.int64), batch.y.astype(np.int64)

        def in_box(owner):  # events inside the box of sample `owner[event]`
            return (xi >= bx[owner]) & (xi < bx[owner] + bw[owner]) & \
                   (yi >= by[owner]) & (yi < by[owner] + bh[owner])

        own_keep = ~in_box(seg)
        # events of sample j go to the sample i whose partner is j, if inside i's box
        receiver = np.empty(B, np.int64)
        receiver[partner] = np.arange(B)
        recv = receiver[seg]
        from_partner = in_box(recv)
        dest = np.concatenate([seg[own_keep], recv[from_partner]])
        src = np.concatenate([np.flatnonzero(own_keep), np.flatnonzero(from_partner)])
        t = batch.t[src]
        span = (int(t.max()) - int(t.min()) + 1) if len(t) else 1
        order = np.argsort(dest * span + (t - (t.min() if len(t) else 0)), kind="stable")
        src, dest = src[order], dest[order]
        n_new = np.bincount(dest, minlength=B)
        offsets = np.zeros(B + 1, np.int64)
        np.cumsum(n_new, out=offsets[1:])
        n_own = np.bincount(seg[own_keep], minlength=B)
        weight = np.divide(n_own, n_new, out=lam.copy(), where=n_new > 0)
        out = batch.replace(batch.x[src], batch.y[src], batch.t[src], batch.p[src], offsets)
        out.meta["mix_partner"] = partner
        out.meta["mix_weight"] = weight
        if self.n_classes is not None and batch.labels is not None and batch.labels.ndim == 1:
            lab = batch.labels.astype(np.int64)
            soft = np.zeros((B, self.n_classes), np.float32)
            soft[np.arange(B), lab] += weight.astype(np.float32)
            soft[np.arange(B), lab[partner]] += (1 - weight).astype(np.float32)
            out.labels = soft
        return out
