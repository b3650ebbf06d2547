"""Dense and sparse representations of event samples.

Frames are ``(T, P, H, W)`` for one sample (polarity, then row ``y``, then
column ``x``) and ``(B, T, P, H, W)`` for a batch when ``T`` is fixed by the
parameters (``n_time_bins``/``n_event_bins``); when ``T`` depends on the
sample (``time_window``/``event_count``) a batch gives a list of
``(T_i, P, H, W)`` arrays. Empty samples give the same shapes, filled with
zeros. Events outside the sensor are ignored; with ``P == 1`` polarities are
merged.

Dtypes: :class:`ToFrame`/:class:`ToImage` count in ``int16`` (as tonic) unless
``dtype`` says otherwise (``int16`` wraps above 32767 events per pixel and
frame: pass ``dtype="int32"`` for long windows on busy pixels);
:class:`ToVoxelGrid`, :class:`ToTimeSurface` and
:class:`ToAveragedTimeSurface` give ``float32``.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np

from neurodata.transforms import _kernels as K
from neurodata.transforms._base import Transform, resolve_sensor
from neurodata.transforms._batch import EventBatch


# ---------------------------------------------------------------------------
# slicing samples into windows (the definitions tonic's slicers use)
# ---------------------------------------------------------------------------
@dataclass
class _Windows:
    """Event-index windows of all frames of a batch, frames grouped by sample."""

    starts: np.ndarray  # absolute event positions
    ends: np.ndarray
    sample: np.ndarray  # sample of each frame
    n_frames: np.ndarray  # frames per sample
    win_start_t: np.ndarray | None = None  # window start times (time slicing only)


def _frame_ranks(n_frames):
    """For frames grouped by sample: (sample of each frame, rank within its sample)."""
    B = len(n_frames)
    sample = np.repeat(np.arange(B, dtype=np.int64), n_frames)
    first = np.cumsum(n_frames) - n_frames
    rank = np.arange(int(n_frames.sum()), dtype=np.int64) - np.repeat(first, n_frames)
    return sample, rank


def _ceil_int(v):
    return np.ceil(np.asarray(v, np.float64)).astype(np.int64)


def slice_windows(batch: EventBatch, time_window=None, event_count=None, n_time_bins=None,
                  n_event_bins=None, overlap=0.0, include_incomplete=False,
                  start_time=None, end_time=None) -> _Windows:
    """Windows per sample by time, event count, or a fixed number of time/event bins.

    Same definitions as tonic's slicers (``SliceByTime``, ``SliceByEventCount``,
    ``SliceByTimeBins``, ``SliceByEventBins``), computed for all samples at once.
    Samples must be time-sorted for the time-based methods.
    """
    chosen = [v is not None for v in (time_window, event_count, n_time_bins, n_event_bins)]
    if sum(chosen) != 1:
        raise ValueError("set exactly one of time_window, event_count, n_time_bins, n_event_bins")
    t, off = batch.t, batch.offsets
    a, b = off[:-1], off[1:]
    counts = b - a
    ne = counts > 0
    B = len(counts)
    t_first = np.zeros(B, np.int64)
    t_last = np.zeros(B, np.int64)
    t_first[ne] = t[a[ne]]
    t_last[ne] = t[b[ne] - 1]

    if time_window is not None or n_time_bins is not None:
        if time_window is not None:
            stride = time_window - overlap
            if stride <= 0:
                raise ValueError("time_window - overlap must be positive")
            t0 = t_first.astype(np.float64) if start_time is None else np.full(B, float(start_time))
            t1 = t_last.astype(np.float64) if end_time is None else np.full(B, float(end_time))
            rnd = np.ceil if include_incomplete else np.floor
            n = (rnd((t1 - t0 - time_window) / stride) + 1).astype(np.int64)
            n = np.maximum(n, 1)
            width = np.full(B, float(time_window))
            step = np.full(B, float(stride))
        else:
            if not 0 <= overlap < 1:
                raise ValueError("overlap for n_time_bins is a fraction of a bin in [0, 1)")
            t0 = t_first.astype(np.float64)
            width = ((t_last - t_first) // n_time_bins).astype(np.float64) * (1 + overlap)
            step = width * (1 - overlap)
            n = np.full(B, n_time_bins, np.int64)
        sample, rank = _frame_ranks(n)
        ws = rank * step[sample] + t0[sample]
        we = ws + width[sample]
        # starts and ends of the windows in one search, grouped by sample; an end that is
        # the next window's start (windows tiling time) is not searched again
        qs, qe = _ceil_int(ws), _ceil_int(we)
        own_end = np.ones(len(qe), bool)
        own_end[:-1] = (qe[:-1] != qs[1:]) | (sample[:-1] != sample[1:])
        qsample = np.concatenate((sample, sample[own_end]))
        q = np.concatenate((qs, qe[own_end]))
        order = np.argsort(qsample, kind="stable")
        pos = np.empty(len(q), np.int64)
        pos[order] = K.searchsorted_segments(t, off, qsample[order], q[order])
        starts = pos[:len(qs)]
        ends = np.empty(len(qs), np.int64)
        ends[own_end] = pos[len(qs):]
        ends[:-1][~own_end[:-1]] = starts[1:][~own_end[:-1]]
        return _Windows(starts, ends, sample, n, ws)

    if event_count is not None:
        stride = int(event_count - overlap)
        if stride <= 0:
            raise ValueError("event_count - overlap must be positive")
        ec = np.minimum(event_count, counts)
        rnd = np.ceil if include_incomplete else np.floor
        n = np.maximum((rnd((counts - ec) / stride) + 1).astype(np.int64), 1)
        sample, rank = _frame_ranks(n)
        starts = a[sample] + rank * stride
        ends = np.minimum(starts + ec[sample], b[sample]).astype(np.int64)
        return _Windows(np.minimum(starts, b[sample]).astype(np.int64), ends, sample, n)

    if not 0 <= overlap < 1:
        raise ValueError("overlap for n_event_bins is a fraction of a bin in [0, 1)")
    spikes = (counts // n_event_bins * (1 + overlap)).astype(np.int64)
    stride = (spikes * (1 - overlap)).astype(np.int64)
    n = np.full(B, n_event_bins, np.int64)
    sample, rank = _frame_ranks(n)
    starts = np.minimum(a[sample] + rank * stride[sample], b[sample])
    ends = np.minimum(starts + spikes[sample], b[sample])
    return _Windows(starts, ends, sample, n)


def _split_frames(flat, n_frames, shape, fixed):
    """Stack to ``(B, T, ...)`` when ``T`` is fixed, else a list of per-sample views."""
    frames = flat.reshape((-1,) + shape)
    if fixed:
        return frames.reshape((len(n_frames), -1) + shape)
    ends = np.cumsum(n_frames).tolist()
    # plain slices: np.split costs ~4x more per piece
    return [frames[a:b] for a, b in zip([0] + ends[:-1], ends)]


class Representation(Transform):
    """Events in, arrays out; a single sample gives the first element of the batch result."""

    def _unwrap(self, out):
        return out[0]


@dataclass
class ToFrame(Representation):
    """Count events into frames ``(T, P, H, W)``.

    Exactly one of ``time_window`` (us), ``event_count``, ``n_time_bins`` or
    ``n_event_bins`` chooses the slicing; ``overlap`` is in us, events, or a
    fraction of a bin respectively. ``include_incomplete`` keeps the last
    partial window (time/count slicing). ``start_time``/``end_time`` fix the
    time-slicing range (else the first/last event of the sample).

    Parameters
    ----------
    sensor_size : tuple, optional
        ``(width, height, polarities)``; else the batch's, else inferred.
    dtype : str
        Count dtype, ``"int16"`` by default (as tonic).

    Returns
    -------
    numpy.ndarray or list
        ``(T, P, H, W)`` for a sample; ``(B, T, P, H, W)`` for a batch with
        ``n_time_bins``/``n_event_bins``; else a list of ``(T_i, P, H, W)``.
    """

    sensor_size: tuple | None = None
    time_window: float | None = None
    event_count: int | None = None
    n_time_bins: int | None = None
    n_event_bins: int | None = None
    overlap: float = 0.0
    include_incomplete: bool = False
    start_time: float | None = None
    end_time: float | None = None
    dtype: str = "int16"

    def _windows(self, batch):
        return slice_windows(batch, self.time_window, self.event_count, self.n_time_bins,
                             self.n_event_bins, self.overlap, self.include_incomplete,
                             self.start_time, self.end_time)

    def _apply(self, batch, rng):
        W, H, P = resolve_sensor(self.sensor_size, batch)
        win = self._windows(batch)
        total = int(win.n_frames.sum())
        out = K.frames_buffer(total * P * H * W, np.dtype(self.dtype))
        slots = np.arange(total, dtype=np.int64)
        K.accumulate_windows(batch.x, batch.y, batch.p, win.starts, win.ends, slots, out, W, H, P,
                             zero=True)
        fixed = self.n_time_bins is not None or self.n_event_bins is not None
        return _split_frames(out, win.n_frames, (P, H, W), fixed)


@dataclass
class ToImage(Representation):
    """All events of a sample counted into one image ``(P, H, W)`` (batch: ``(B, P, H, W)``)."""

    sensor_size: tuple | None = None
    dtype: str = "int16"

    def _apply(self, batch, rng):
        W, H, P = resolve_sensor(self.sensor_size, batch)
        B = len(batch)
        out = K.frames_buffer(B * P * H * W, np.dtype(self.dtype))
        K.accumulate_windows(batch.x, batch.y, batch.p, batch.offsets[:-1], batch.offsets[1:],
                             np.arange(B, dtype=np.int64), out, W, H, P, zero=True)
        return out.reshape(B, P, H, W)


@dataclass
class ToVoxelGrid(Representation):
    """Event volume with bilinear interpolation in time (Zhu et al. 2019): ``(T, 1, H, W)`` float32.

    Each event adds ``+1`` (ON) or ``-1`` (OFF) split between the two nearest
    of ``n_time_bins`` bins spanning the sample's first to last event. A
    sample whose events share one timestamp puts them all in bin 0 (tonic
    divides by zero there).
    """

    sensor_size: tuple | None = None
    n_time_bins: int = 10

    def _apply(self, batch, rng):
        W, H, _ = resolve_sensor(self.sensor_size, batch)
        B, T = len(batch), int(self.n_time_bins)
        out = np.empty(B * T * H * W, np.float32)
        K.voxel_grid(batch.x, batch.y, batch.t, batch.p, batch.offsets, T, out, W, H)
        return out.reshape(B, T, 1, H, W)


@dataclass
class ToTimeSurface(Representation):
    """Global time surfaces every ``dt`` us (Lagorce et al. 2016): ``(T, P, H, W)`` float32.

    Frame ``i`` holds ``exp(-(t_ref - t_last)/tau)`` per pixel, where
    ``t_last`` is the pixel's latest event up to the end of window ``i`` and
    ``t_ref = t_first + (i + 1) * dt``; pixels without events are 0. ``T``
    depends on the sample's duration, so a batch gives a list.
    """

    sensor_size: tuple | None = None
    dt: float = 1000.0
    tau: float = 5000.0
    overlap: float = 0.0
    include_incomplete: bool = False

    def _apply(self, batch, rng):
        if self.dt <= 0:
            raise ValueError("dt must be positive")
        W, H, P = resolve_sensor(self.sensor_size, batch)
        win = slice_windows(batch, time_window=self.dt, overlap=self.overlap,
                            include_incomplete=self.include_incomplete)
        total = int(win.n_frames.sum())
        sample, rank = _frame_ranks(win.n_frames)
        counts = batch.counts
        t_first = np.zeros(len(batch), np.int64)
        t_first[counts > 0] = batch.t[batch.offsets[:-1][counts > 0]]
        ref = (rank + 1) * float(self.dt) + t_first[sample]
        ends = np.maximum.accumulate(win.ends) if total else win.ends
        out = K.frames_buffer(total * P * H * W, np.float32)  # every frame is written
        K.time_surface(batch.x, batch.y, batch.t, batch.p, batch.offsets, sample,
                       ends.astype(np.int64), ref.astype(np.float64), self.tau, out, W, H, P)
        return _split_frames(out, win.n_frames, (P, H, W), fixed=False)


@dataclass
class ToAveragedTimeSurface(Representation):
    """Histograms of averaged time surfaces (HATS, Sironi et al. 2018).

    The sensor is cut into ``cell_size`` squares; for every event, earlier
    events of the same cell and polarity within ``time_window`` us and
    ``surface_size // 2`` pixels add ``exp(-dt/tau)`` (or ``1 - dt/(3 tau)``
    for ``decay="lin"``) at their relative position, plus 1 at the centre;
    each cell's sum is divided by its event count. Output
    ``(n_cells, P, surface_size, surface_size)`` float32, cells row-major.
    """

    sensor_size: tuple | None = None
    surface_size: int = 5
    cell_size: int = 10
    time_window: float = 1e3
    tau: float = 100.0
    decay: str = "exp"

    def _apply(self, batch, rng):
        if self.surface_size % 2 == 0 or self.surface_size > self.cell_size:
            raise ValueError("surface_size must be odd and not larger than cell_size")
        if self.decay not in ("exp", "lin"):
            raise ValueError("decay must be 'exp' or 'lin'")
        W, H, P = resolve_sensor(self.sensor_size, batch)
        cs = int(self.cell_size)
        gw, gh = ceil(W / cs), ceil(H / cs)
        ncells = gw * gh
        B, S = len(batch), int(self.surface_size)
        x, y = batch.x, batch.y
        pol = batch.p.astype(np.int64) if P > 1 else np.zeros(len(x), np.int64)
        inside = (x < W) & (y < H) & (pol < P)
        cell = (y.astype(np.int64) // cs) * gw + x.astype(np.int64) // cs
        group = (batch.sample_index() * ncells + cell) * P + pol
        n_groups = B * ncells * P
        t = batch.t
        if not inside.all():  # events off the sensor take no part
            x, y, t, group = x[inside], y[inside], t[inside], group[inside]
        out = np.zeros(n_groups * S * S, np.float32)
        K.averaged_time_surface(x, y, t, group, n_groups, S // 2,
                                self.time_window, self.tau, self.decay, out)
        hist = out.reshape(n_groups, S, S)
        n = np.bincount(group, minlength=n_groups)
        hist /= np.maximum(n, 1).astype(np.float32)[:, None, None]
        return hist.reshape(B, ncells, P, S, S)


@dataclass
class SparseFrames:
    """COO frames: ``indices`` (nnz, ndim) int64 over ``shape``, ``values`` counts."""

    indices: np.ndarray
    values: np.ndarray
    shape: tuple

    def to_dense(self) -> np.ndarray:
        """The dense array."""
        out = np.zeros(self.shape, self.values.dtype)
        out[tuple(self.indices.T)] = self.values
        return out

    def to_torch(self):
        """A ``torch.sparse_coo_tensor`` (torch imported here)."""
        import torch

        return torch.sparse_coo_tensor(torch.from_numpy(self.indices.T.copy()),
                                       torch.from_numpy(self.values), self.shape).coalesce()


@dataclass
class ToSparse(ToFrame):
    """:class:`ToFrame` as COO coordinates + counts, without a dense array.

    Returns :class:`SparseFrames` with ``shape (T, P, H, W)`` (a batch with a
    fixed ``T``: one ``(B, T, P, H, W)`` object; otherwise a list).
    """

    def _apply(self, batch, rng):
        W, H, P = resolve_sensor(self.sensor_size, batch)
        win = self._windows(batch)
        total = int(win.n_frames.sum())
        idx = K.ranges(win.starts, win.ends)
        lengths = win.ends - win.starts
        xs, ys = batch.x[idx].astype(np.int64), batch.y[idx].astype(np.int64)
        ps = batch.p[idx].astype(np.int64) if P > 1 else np.zeros(len(idx), np.int64)
        ok = (xs < W) & (ys < H) & (ps < P)
        frame = np.repeat(np.arange(total, dtype=np.int64), lengths)
        flat = ((frame * P + ps) * H + ys) * W + xs
        keys, counts = np.unique(flat[ok], return_counts=True)
        values = counts.astype(np.dtype(self.dtype))
        f, rest = np.divmod(keys, P * H * W)
        pp, rest = np.divmod(rest, H * W)
        yy, xx = np.divmod(rest, W)
        fixed = self.n_time_bins is not None or self.n_event_bins is not None
        first = np.cumsum(win.n_frames) - win.n_frames
        if fixed:
            T = int(win.n_frames[0]) if len(win.n_frames) else int(self.n_time_bins or self.n_event_bins)
            s, tt = np.divmod(f, max(T, 1))
            return SparseFrames(np.stack([s, tt, pp, yy, xx], 1), values,
                                (len(batch), T, P, H, W))
        s = win.sample[f] if len(f) else f
        tt = f - first[s] if len(f) else f
        bounds = np.searchsorted(s, np.arange(len(batch) + 1))
        return [SparseFrames(np.stack([tt[a:b], pp[a:b], yy[a:b], xx[a:b]], 1), values[a:b],
                             (int(win.n_frames[i]), P, H, W))
                for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]


@dataclass
class ToPointCloud(Representation):
    """Events as normalised points ``(N, 4)`` float32: ``x/(W-1), y/(H-1), t in [0, 1], p``.

    Time is scaled per sample from its first to its last event (0 when they
    coincide). A batch gives a list of per-sample arrays.
    """

    sensor_size: tuple | None = None

    def _apply(self, batch, rng):
        W, H, _ = resolve_sensor(self.sensor_size, batch)
        counts = batch.counts
        ne = counts > 0
        t0 = np.zeros(len(batch), np.int64)
        dur = np.zeros(len(batch), np.int64)
        t0[ne] = batch.t[batch.offsets[:-1][ne]]
        dur[ne] = batch.t[batch.offsets[1:][ne] - 1] - t0[ne]
        scale = np.divide(1.0, dur, out=np.zeros(len(dur)), where=dur != 0)
        pts = np.empty((batch.n_events, 4), np.float32)
        pts[:, 0] = batch.x * np.float32(1.0 / max(W - 1, 1))
        pts[:, 1] = batch.y * np.float32(1.0 / max(H - 1, 1))
        pts[:, 2] = (batch.t - np.repeat(t0, counts)) * np.repeat(scale, counts)
        pts[:, 3] = batch.p
        return np.split(pts, batch.offsets[1:-1])
