"""Hot loops of the transforms: numba kernels, each with a vectorised numpy twin.

Every public function here dispatches on the backend: ``"numba"`` when numba
imports (the default) or ``"numpy"`` when numba is absent, when the
environment variable ``NEURODATA_NO_NUMBA`` is set to a non-empty value other
than ``0``, or after :func:`set_backend("numpy")`. Both backends give the same
results (tests check this); the numpy twins avoid per-event Python loops by
sorting and searching instead of keeping per-pixel state.

Batches are passed as columns plus ``offsets`` (``B + 1`` positions); pixel
memories are shared between samples and told apart with an owner stamp, so a
batch costs one pass over its events and no per-sample reset of the sensor.
"""
from __future__ import annotations

import os

import numpy as np

try:  # numba is optional (the ``fast`` extra)
    import numba as _numba
except ImportError:  # pragma: no cover - exercised via the env var instead
    _numba = None

_BACKEND = "numba" if _numba is not None and os.environ.get("NEURODATA_NO_NUMBA", "") in ("", "0") else "numpy"


def set_backend(name: str) -> None:
    """Choose ``"numba"`` or ``"numpy"`` kernels (``"numba"`` needs numba installed)."""
    global _BACKEND
    if name not in ("numba", "numpy"):
        raise ValueError(f"backend must be 'numba' or 'numpy', not {name!r}")
    if name == "numba" and _numba is None:
        raise ImportError("numba is not installed; only the numpy backend is available")
    _BACKEND = name


def get_backend() -> str:
    """The backend in use: ``"numba"`` or ``"numpy"``."""
    return _BACKEND


def _jit(fn):
    if _numba is None:
        return None
    return _numba.njit(cache=True, nogil=True)(fn)


def _nb() -> bool:
    return _BACKEND == "numba"


# ---------------------------------------------------------------------------
# helpers shared by the numpy twins
# ---------------------------------------------------------------------------
def ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for every pair, without a Python loop."""
    lengths = np.maximum(ends - starts, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, np.int64)
    csum = np.cumsum(lengths)
    shift = np.repeat(starts - (csum - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift


def frame_histogram(out, frame, local, cells, weights=None) -> None:
    """``out[frame * cells + local] += weights`` for ``frame`` non-decreasing.

    Dense histograms of a few frames at a time, so that the int64/float64
    counts stay in cache and the output is written once.
    """
    if len(frame) == 0:
        return
    n_frames = len(out) // cells
    per = max(1, (1 << 16) // cells)
    edges = np.arange(0, n_frames + per, per)
    bounds = np.searchsorted(frame, edges)
    for c in range(len(edges) - 1):  # a few dozen chunks, each vectorised
        e0, e1 = bounds[c], bounds[c + 1]
        if e1 <= e0:
            continue
        f0 = edges[c]
        nf = min(per, n_frames - f0)
        sub = (frame[e0:e1] - f0) * cells + local[e0:e1]
        w = None if weights is None else weights[e0:e1]
        out[f0 * cells:(f0 + nf) * cells] += np.bincount(sub, weights=w, minlength=nf * cells).astype(
            out.dtype, copy=False)


def scatter_add(out: np.ndarray, idx: np.ndarray, weights=None) -> None:
    """``out[idx] += weights`` (or 1) with repeated indices accumulating.

    A dense histogram (``bincount``) when the output is small next to the
    events, an unbuffered ``add.at`` when it is large (frames of many pixels).
    """
    if len(out) > 2 * len(idx):
        np.add.at(out, idx, 1 if weights is None else weights.astype(out.dtype, copy=False))
    else:
        out += np.bincount(idx, weights=weights, minlength=len(out)).astype(out.dtype, copy=False)


def segment_ids(offsets: np.ndarray) -> np.ndarray:
    """Sample index of each event."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


# ---------------------------------------------------------------------------
# keeping a subset of events (every filter ends here)
# ---------------------------------------------------------------------------
def _compact_nb(x, y, t, p, keep, offsets, nx, ny, nt, np_, new_offsets):
    j = 0
    for s in range(len(offsets) - 1):
        new_offsets[s] = j
        for i in range(offsets[s], offsets[s + 1]):
            if keep[i]:
                nx[j] = x[i]
                ny[j] = y[i]
                nt[j] = t[i]
                np_[j] = p[i]
                j += 1
    new_offsets[len(offsets) - 1] = j


_compact_jit = _jit(_compact_nb)


def compact(x, y, t, p, keep, offsets):
    """The events where ``keep`` is true, as new columns plus updated offsets (one pass)."""
    if _nb():
        m = int(np.count_nonzero(keep))
        out = (np.empty(m, x.dtype), np.empty(m, y.dtype), np.empty(m, t.dtype), np.empty(m, p.dtype))
        new_offsets = np.empty(len(offsets), np.int64)
        _compact_jit(x, y, t, p, keep, offsets, *out, new_offsets)
        return out + (new_offsets,)
    idx = np.flatnonzero(keep)
    new_offsets = np.searchsorted(idx, offsets, side="left").astype(np.int64)
    return x.take(idx), y.take(idx), t.take(idx), p.take(idx), new_offsets


# ---------------------------------------------------------------------------
# searchsorted inside samples
# ---------------------------------------------------------------------------
def _searchsorted_segments_nb(t, lo, hi, q, out):
    for k in range(len(q)):
        a = lo[k]
        b = hi[k]
        v = q[k]
        while a < b:
            m = (a + b) >> 1
            if t[m] < v:
                a = m + 1
            else:
                b = m
        out[k] = a


_searchsorted_segments_jit = _jit(_searchsorted_segments_nb)


def searchsorted_segments(t, offsets, qsample, q) -> np.ndarray:
    """Left insertion points of integer times ``q`` inside their own sample.

    ``t`` must be non-decreasing within each sample. Returns absolute event
    positions (``offsets[s] <= pos <= offsets[s+1]``).
    """
    q = np.asarray(q, np.int64)
    qsample = np.asarray(qsample, np.int64)
    lo = offsets[qsample]
    hi = offsets[qsample + 1]
    out = np.empty(len(q), np.int64)
    if len(q) == 0:
        return out
    if _nb():
        _searchsorted_segments_jit(t, lo, hi, q, out)
        return out
    if len(t) == 0:
        return lo.copy()
    if len(offsets) * 64 <= len(t) and np.all(qsample[1:] >= qsample[:-1]):
        # few long samples: one searchsorted per sample on its own slice of t
        cuts = np.flatnonzero(qsample[1:] != qsample[:-1]) + 1
        first = np.concatenate(([0], cuts)).tolist()
        last = np.concatenate((cuts, [len(q)])).tolist()
        for k0, k1 in zip(first, last):
            a, b = int(lo[k0]), int(hi[k0])
            out[k0:k1] = np.searchsorted(t[a:b], q[k0:k1], side="left")
            out[k0:k1] += a
        return out
    # many short samples: composite key: sample-major, then time; queries clipped into their sample's range
    nonempty = hi > lo
    first = np.where(nonempty, t[np.minimum(lo, len(t) - 1)], 0)
    last = np.where(nonempty, t[np.maximum(hi - 1, 0)], 0)
    tmin = int(t.min())
    span = int(t.max()) - tmin + 2
    key = segment_ids(offsets) * span + (t - tmin)
    qc = np.clip(q, first, last + 1)
    pos = np.searchsorted(key, qsample * span + (qc - tmin), side="left")
    return np.where(nonempty, pos, lo)


# ---------------------------------------------------------------------------
# ToFrame: accumulate event windows into frames
# ---------------------------------------------------------------------------
_CHUNK = 1024  # events packed per step: the index buffer stays in L1


def _accumulate_nb(x, y, p, starts, ends, slots, out, W, H, P, zero):
    # Two tight loops per chunk of a window: pack (p, y, x) into one pixel index
    # while taking the chunk's maxima (a loop the compiler can vectorise), then increment the
    # frame at those indices. Unsigned indices from 0 keep numba's negative-index
    # handling out of both loops; a chunk with an event outside the sensor (rare)
    # takes a checked loop instead. With ``zero``, each frame is cleared right
    # before it is first filled (while in cache) instead of a separate pass.
    hw = H * W
    phw = P * hw
    hw_u = np.uint64(hw)
    w_u = np.uint64(W)
    buf = np.empty(_CHUNK, np.uint64)
    if zero:
        done = np.zeros(len(out) // phw, np.bool_)
    for w in range(len(starts)):
        s = slots[w]
        frame = out[s * phw:(s + 1) * phw]
        if zero and not done[s]:
            frame[:] = 0
            done[s] = True
        a = starts[w]
        b = ends[w]
        while a < b:
            m = min(_CHUNK, b - a)
            xs = x[a:a + m]
            ys = y[a:a + m]
            ps = p[a:a + m]
            mx = xs[0]
            my = ys[0]
            if P > 1:
                mp = ps[0]
                for i in range(m):
                    xi = xs[i]
                    yi = ys[i]
                    pi = ps[i]
                    mx = max(mx, xi)
                    my = max(my, yi)
                    mp = max(mp, pi)
                    buf[i] = np.uint64(pi) * hw_u + np.uint64(yi) * w_u + np.uint64(xi)
                inside = mx < W and my < H and mp < P
            else:
                for i in range(m):
                    xi = xs[i]
                    yi = ys[i]
                    mx = max(mx, xi)
                    my = max(my, yi)
                    buf[i] = np.uint64(yi) * w_u + np.uint64(xi)
                inside = mx < W and my < H
            if inside:
                for i in range(m):
                    frame[buf[i]] += 1
            else:
                for i in range(m):
                    if xs[i] < W and ys[i] < H and (P == 1 or ps[i] < P):
                        frame[buf[i]] += 1
            a += m
    if zero:
        for f in range(len(done)):
            if not done[f]:
                out[f * phw:(f + 1) * phw] = 0


_accumulate_jit = _jit(_accumulate_nb)


def frames_buffer(size, dtype) -> np.ndarray:
    """Output for :func:`accumulate_windows` with ``zero=True``: uninitialised for numba
    (the kernel clears each frame when it first fills it), zeros for numpy."""
    return np.empty(size, dtype) if _nb() else np.zeros(size, dtype)


def _pixel_index(x, y, p, a, b, W, H, P, itype):
    """Packed ``(p * H + y) * W + x`` (``itype``) of events ``[a, b)``; ``p`` ignored when ``P == 1``."""
    if P > 1:
        idx = np.multiply(p[a:b], H, dtype=itype)
        idx += y[a:b]
    else:
        idx = y[a:b].astype(itype)
    idx *= W
    idx += x[a:b]
    return idx


def _outside(x, y, p, a, b, W, H, P):
    """Mask of events ``[a, b)`` outside the sensor, or None when all are inside (the usual case)."""
    if b <= a:
        return None
    xs, ys = x[a:b], y[a:b]
    if xs.max() < W and ys.max() < H and (P == 1 or p[a:b].max() < P):
        return None
    bad = (xs >= W) | (ys >= H)
    if P > 1:
        bad |= p[a:b] >= P
    return bad


def _accumulate_disjoint_np(x, y, p, starts, ends, slots, out, W, H, P, fresh) -> None:
    """Windows in event order, not overlapping, into increasing slots: one bincount per
    group of frames on a packed ``(frame, pixel)`` index (groups keep the counts in cache).

    Events between windows and outside the sensor go to an extra "trash" frame that is
    dropped, so every group is one contiguous slice of the columns (no gather).
    ``fresh``: ``out`` holds zeros, so the counts are written instead of added.
    """
    phw = P * H * W
    n_out = len(out) // phw
    per = max(1, (1 << 18) // phw)
    # int32 indices halve the memory traffic of building them (bincount widens once)
    itype = np.int32 if (per + 1) * phw < 2**31 else np.intp
    group = slots // per
    cuts = np.flatnonzero(group[1:] != group[:-1]) + 1
    bounds = np.concatenate(([0], cuts, [len(slots)]))
    for g0, g1 in zip(bounds[:-1], bounds[1:]):  # a few dozen groups, each vectorised
        a, b = int(starts[g0]), int(ends[g1 - 1])
        if b <= a:
            continue
        f0 = int(group[g0]) * per
        nf = min(per, n_out - f0)
        trash = nf * phw
        idx = _pixel_index(x, y, p, a, b, W, H, P, itype)
        s, e, sl = starts[g0:g1], ends[g0:g1], slots[g0:g1]
        gaps = s[1:] - e[:-1]
        if g1 - g0 == 1:
            if sl[0] != f0:
                idx += (int(sl[0]) - f0) * phw
        else:
            # window, gap, window, ... with the gaps sent to the trash frame
            lengths = np.empty(2 * len(s) - 1, np.int64)
            lengths[0::2] = e - s
            lengths[1::2] = gaps
            shift = np.empty(len(lengths), itype)
            shift[0::2] = (sl - f0) * phw
            shift[1::2] = trash
            idx += np.repeat(shift, lengths)
        has_gap = bool(np.any(gaps > 0))
        if has_gap:  # a gap event's index lands in [trash, trash + phw): wrap it into the trash frame
            np.minimum(idx, trash, out=idx)
        bad = _outside(x, y, p, a, b, W, H, P)
        if bad is not None:
            idx[bad] = trash
        counts = np.bincount(idx, minlength=trash + (1 if has_gap or bad is not None else 0))
        block = out[f0 * phw:f0 * phw + trash]
        if fresh:  # cast straight into the output (int16 wraps as the numba kernel's sums do)
            np.copyto(block, counts[:trash], casting="unsafe")
        else:
            np.add(block, counts[:trash], out=block, casting="unsafe")


def accumulate_windows(x, y, p, starts, ends, slots, out, W, H, P, zero=False) -> None:
    """Add 1 at ``(slot, p, y, x)`` of flat ``out`` for events ``[starts[w], ends[w])``.

    Events outside the sensor are skipped; with ``P == 1`` polarities merge.
    ``zero=True``: ``out`` comes from :func:`frames_buffer` and is cleared here.
    """
    starts = np.asarray(starts, np.int64)
    ends = np.asarray(ends, np.int64)
    slots = np.asarray(slots, np.int64)
    if _nb():
        _accumulate_jit(x, y, p, starts, ends, slots, out, W, H, P, zero)
        return
    if len(starts) and np.all(ends >= starts) and np.all(starts[1:] >= ends[:-1]) \
            and np.all(slots[1:] > slots[:-1]):
        _accumulate_disjoint_np(x, y, p, starts, ends, slots, out, W, H, P, zero)
        return
    # overlapping or reordered windows: gather their events
    hw, phw = H * W, P * H * W
    lengths = np.maximum(ends - starts, 0)
    idx = ranges(starts, ends)
    xs, ys = x[idx], y[idx]
    local = ys.astype(np.int64) * W
    local += xs
    if P > 1:
        ps = p[idx]
        local += ps.astype(np.int64) * hw
        valid = (xs < W) & (ys < H) & (ps < P)
    else:
        valid = (xs < W) & (ys < H)
    frame = np.repeat(slots, lengths)
    if not valid.all():
        frame, local = frame[valid], local[valid]
    if len(frame) < 2 or np.all(frame[1:] >= frame[:-1]):
        frame_histogram(out, frame, local, phw)
    else:
        scatter_add(out, frame * phw + local)


# ---------------------------------------------------------------------------
# ToVoxelGrid: bilinear interpolation in time
# ---------------------------------------------------------------------------
def _voxel_nb(x, y, t, p, offsets, n_bins, out, W, H):
    hw = H * W
    for s in range(len(offsets) - 1):
        a = offsets[s]
        b = offsets[s + 1]
        out[s * n_bins * hw:(s + 1) * n_bins * hw] = 0  # cleared here, while in cache
        if b <= a:
            continue
        t0 = t[a]
        dur = t[b - 1] - t0
        scale = n_bins / dur if dur != 0 else 0.0
        base = s * n_bins * hw
        for i in range(a, b):
            xi = np.int64(x[i])
            yi = np.int64(y[i])
            if xi >= W or yi >= H:
                continue
            ts = (t[i] - t0) * scale
            ti = np.int64(ts)
            frac = ts - ti
            v = 1.0 if p[i] > 0 else -1.0
            pix = base + yi * W + xi
            if 0 <= ti < n_bins:
                out[pix + ti * hw] += v * (1.0 - frac)
            if 0 <= ti + 1 < n_bins:
                out[pix + (ti + 1) * hw] += v * frac


_voxel_jit = _jit(_voxel_nb)


def voxel_grid(x, y, t, p, offsets, n_bins, out, W, H) -> None:
    """Event volume of Zhu et al. 2019 into flat ``out`` (``B * n_bins * H * W``).

    ``out`` may be uninitialised (:func:`frames_buffer`): it is cleared here.
    """
    if _nb():
        _voxel_jit(x, y, t, p, offsets, n_bins, out, W, H)
        return
    out[:] = 0
    if len(t) == 0:
        return
    seg = segment_ids(offsets)
    counts = np.diff(offsets)
    ne = counts > 0
    t0 = np.zeros(len(counts), np.int64)
    t0[ne] = t[offsets[:-1][ne]]
    dur = np.zeros(len(counts), np.int64)
    dur[ne] = t[offsets[1:][ne] - 1] - t0[ne]
    scale = np.divide(float(n_bins), dur, out=np.zeros(len(dur)), where=dur != 0)
    ts = (t - np.repeat(t0, counts)).astype(np.float64)
    ts *= np.repeat(scale, counts)
    ti = ts.astype(np.int64)
    frac = ts - ti
    v = np.where(p > 0, 1.0, -1.0)
    hw = H * W
    inside = (x < W) & (y < H)
    all_inside = bool(inside.all())
    local = y.astype(np.int64) * W + x
    base = seg * n_bins
    sorted_t = len(t) < 2 or bool(np.all(t[1:] >= t[:-1]) or np.all(np.diff(base + ti) >= 0))
    for shift in (0, 1):
        w = v * (frac if shift else 1.0 - frac)
        tb = ti + shift
        ok = (tb >= 0) & (tb < n_bins)
        if not all_inside:
            ok &= inside
        # out-of-range bins get weight 0 instead of a gather: frames stay in order
        w[~ok] = 0.0
        frame = base + np.clip(tb, 0, n_bins - 1)
        lc = np.where(ok, local, 0) if not all_inside else local
        if sorted_t:
            frame_histogram(out, frame, lc, hw, w)
        else:
            scatter_add(out, frame * hw + lc, w)


# ---------------------------------------------------------------------------
# ToTimeSurface: exponentially decayed last-event times at frame boundaries
# ---------------------------------------------------------------------------
def _time_surface_nb(x, y, t, p, offsets, f_sample, f_end, f_ref, tau, out, W, H, P):
    # The surface decays by one factor between frames, so a frame is the
    # previous one times that factor (a vectorised multiply over the output),
    # and only pixels with new events need an exp (once per pixel and frame).
    hw = H * W
    phw = P * hw
    stamp = np.full(phw, -1, np.int64)  # frame that last refreshed the pixel
    f = 0
    nf = len(f_sample)
    inv_tau = 1.0 / tau
    for s in range(len(offsets) - 1):
        if f >= nf or f_sample[f] != s:
            continue
        i = offsets[s]
        first = True
        prev_ref = f_ref[f]
        while f < nf and f_sample[f] == s:
            ref = f_ref[f]
            base = f * phw
            if first:
                out[base:base + phw] = 0.0
                first = False
            else:
                decay = np.float32(np.exp(-(ref - prev_ref) * inv_tau))
                for k in range(phw):
                    out[base + k] = out[base - phw + k] * decay
            # newest event of each pixel first: walking the window backwards,
            # the first visit of a pixel is its latest event
            e = f_end[f]
            for j in range(e - 1, i - 1, -1):
                xi = np.int64(x[j])
                yi = np.int64(y[j])
                pi = np.int64(p[j]) if P > 1 else 0
                if xi < W and yi < H and pi < P:
                    k = pi * hw + yi * W + xi
                    if stamp[k] != f:
                        stamp[k] = f
                        out[base + k] = np.exp((t[j] - ref) * inv_tau)
            i = max(i, e)
            prev_ref = ref
            f += 1


_time_surface_jit = _jit(_time_surface_nb)


def time_surface(x, y, t, p, offsets, f_sample, f_end, f_ref, tau, out, W, H, P) -> None:
    """Global time surfaces: frame ``f`` sees events before ``f_end[f]`` of its sample.

    ``out`` is flat ``(F, P, H, W)`` float; frames are grouped by sample in order.
    """
    if _nb():
        _time_surface_jit(x, y, t, p, offsets, f_sample, f_end, f_ref, float(tau), out, W, H, P)
        return
    F = len(f_sample)
    phw = P * H * W
    if F == 0:
        return
    seg = segment_ids(offsets)
    ev = np.arange(len(t), dtype=np.int64)
    chunk = np.searchsorted(f_end, ev, side="right")
    pol = p.astype(np.int64) if P > 1 else np.zeros(len(p), np.int64)
    ok = (chunk < F) & (x < W) & (y < H) & (pol < P)
    ok[ok] &= f_sample[chunk[ok]] == seg[ok]
    tmin = int(t.min()) if len(t) else 0
    span = (int(t.max()) - tmin + 2) if len(t) else 2
    sentinel = f_sample * span - 1
    mem = np.repeat(sentinel, phw)
    idx = chunk[ok] * phw + pol[ok] * (H * W) + y[ok].astype(np.int64) * W + x[ok]
    mem[idx] = (t[ok] - tmin) + seg[ok] * span  # last assignment wins, as in time order
    mem = mem.reshape(F, phw)
    np.maximum.accumulate(mem, axis=0, out=mem)
    empty = mem == sentinel[:, None]
    real_t = (mem - (f_sample * span)[:, None] + tmin).astype(np.float64)
    val = np.exp((real_t - f_ref[:, None]) / tau)
    val[empty] = 0.0
    out[:] = val.ravel()


# ---------------------------------------------------------------------------
# ToAveragedTimeSurface (HATS)
# ---------------------------------------------------------------------------
def _hats_nb(x, y, t, group, order, gstart, rho, time_window, tau, lin, sorted_t, out):
    S = 2 * rho + 1
    ss = S * S
    for g in range(len(gstart) - 1):
        a = gstart[g]
        b = gstart[g + 1]
        base = g * ss
        for k in range(a, b):
            i = order[k]
            ti = np.float32(t[i])
            t_start = max(np.float32(0.0), ti - np.float32(time_window))
            out[base + rho * S + rho] += 1.0
            xi = np.int64(x[i])
            yi = np.int64(y[i])
            for kk in range(k - 1, a - 1, -1):
                j = order[kk]
                tj = np.float32(t[j])
                if tj < t_start:
                    if sorted_t:
                        break
                    continue
                dx = np.int64(x[j]) - xi
                dy = np.int64(y[j]) - yi
                if abs(dx) <= rho and abs(dy) <= rho:
                    if lin:
                        val = -(ti - tj) / (3.0 * tau) + 1.0
                    else:
                        val = np.exp(-(ti - tj) / tau)
                    out[base + (dy + rho) * S + dx + rho] += val


_hats_jit = _jit(_hats_nb)


def averaged_time_surface(x, y, t, group, n_groups, rho, time_window, tau, decay, out) -> None:
    """Sum of local time surfaces per group (sample x cell x polarity) into flat ``out``.

    ``out`` is ``(n_groups, S, S)`` float32 flattened; the caller divides by the
    group counts. Within a group, earlier events (by position) within
    ``time_window`` and ``rho`` pixels contribute, as in Sironi et al. 2018.
    """
    order = np.argsort(group, kind="stable")
    gstart = np.searchsorted(group[order], np.arange(n_groups + 1))
    lin = decay == "lin"
    if _nb():
        sorted_t = bool(len(t) < 2 or np.all(np.diff(t) >= 0))
        _hats_jit(x, y, t, group, order, gstart, int(rho), float(time_window), float(tau),
                  lin, sorted_t, out)
        return
    S = 2 * rho + 1
    ss = S * S
    gs = group[order]
    ts = t[order].astype(np.float32)
    xs = x[order].astype(np.int64)
    ys = y[order].astype(np.int64)
    np.add.at(out, gs * ss + rho * S + rho, 1.0)
    t_start = np.maximum(np.float32(0), ts - np.float32(time_window))
    cur = np.arange(len(order), dtype=np.int64)  # positions still looking back
    sorted_t = bool(len(t) < 2 or np.all(np.diff(t) >= 0))
    lag = 1
    while len(cur):
        j = cur - lag
        ok = j >= 0
        cur, j = cur[ok], j[ok]
        same = gs[j] == gs[cur]
        cur, j = cur[same], j[same]
        if not len(cur):
            break
        inwin = ts[j] >= t_start[cur]
        # events sorted in time: once out of the window, stop looking back
        cur_keep = inwin if sorted_t else np.ones(len(cur), bool)
        dx = xs[j] - xs[cur]
        dy = ys[j] - ys[cur]
        hit = inwin & (np.abs(dx) <= rho) & (np.abs(dy) <= rho)
        dt = (ts[cur[hit]] - ts[j[hit]])
        val = (-dt / np.float32(3.0 * tau) + 1.0) if lin else np.exp(-dt / np.float32(tau))
        np.add.at(out, gs[cur[hit]] * ss + (dy[hit] + rho) * S + dx[hit] + rho, val.astype(out.dtype))
        cur = cur[cur_keep]
        lag += 1


# ---------------------------------------------------------------------------
# per-pixel memories: Denoise, RefractoryPeriod, Decimation
# ---------------------------------------------------------------------------
_NEVER = np.iinfo(np.int64).min // 4  # "no event yet": far enough from overflow


def _denoise_nb(x, y, t, offsets, W, H, filter_time, keep):
    # one int64 per pixel; after each sample only its touched pixels are reset
    last = np.full(W * H, _NEVER, np.int64)
    for s in range(len(offsets) - 1):
        a = offsets[s]
        b = offsets[s + 1]
        for i in range(a, b):
            xi = np.int64(x[i])
            yi = np.int64(y[i])
            ti = t[i] - filter_time
            k = yi * W + xi
            last[k] = t[i]
            ok = False
            if xi > 0 and last[k - 1] > ti:
                ok = True
            elif xi < W - 1 and last[k + 1] > ti:
                ok = True
            elif yi > 0 and last[k - W] > ti:
                ok = True
            elif yi < H - 1 and last[k + W] > ti:
                ok = True
            keep[i] = ok
        for i in range(a, b):
            last[np.int64(y[i]) * W + np.int64(x[i])] = _NEVER


_denoise_jit = _jit(_denoise_nb)


def _last_before(gpix_sorted, order, n, query_pix, query_pos):
    """Position (in ``order``) of the last event at ``query_pix`` before ``query_pos``; -1 if none."""
    keys = gpix_sorted * n + order
    pos = np.searchsorted(keys, query_pix * n + query_pos, side="left") - 1
    found = pos >= 0
    found[found] &= gpix_sorted[pos[found]] == query_pix[found]
    return np.where(found, pos, -1)


def denoise(x, y, t, offsets, W, H, filter_time) -> np.ndarray:
    """Keep mask: an event survives if a 4-neighbour pixel fired less than ``filter_time`` before it."""
    n = len(t)
    keep = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return keep
    if _nb():
        _denoise_jit(x, y, t, offsets, W, H, np.int64(filter_time), keep)
        return keep
    xi = x.astype(np.int64)
    yi = y.astype(np.int64)
    gpix = segment_ids(offsets) * (W * H) + yi * W + xi
    order = np.argsort(gpix, kind="stable")
    gs = gpix[order]
    ev = np.arange(n, dtype=np.int64)
    for dx, dy, ok in ((-1, 0, xi > 0), (1, 0, xi < W - 1), (0, -1, yi > 0), (0, 1, yi < H - 1)):
        cand = np.flatnonzero(ok & ~keep)
        pos = _last_before(gs, order, n, gpix[cand] + dy * W + dx, ev[cand])
        hit = pos >= 0
        tp = t[order[pos[hit]]]
        keep[cand[hit]] = tp + filter_time > t[cand[hit]]
    return keep


def _refractory_nb(x, y, t, offsets, W, H, period, keep):
    last = np.full(W * H, _NEVER, np.int64)
    for s in range(len(offsets) - 1):
        a = offsets[s]
        b = offsets[s + 1]
        ps = period[s]
        for i in range(a, b):
            k = np.int64(y[i]) * W + np.int64(x[i])
            ti = t[i]
            keep[i] = last[k] == _NEVER or ti - last[k] > ps
            last[k] = ti
        for i in range(a, b):
            last[np.int64(y[i]) * W + np.int64(x[i])] = _NEVER


_refractory_jit = _jit(_refractory_nb)


def _previous_same_pixel(x, y, offsets, W, H):
    gpix = segment_ids(offsets) * (W * H) + y.astype(np.int64) * W + x
    order = np.argsort(gpix, kind="stable")
    gs = gpix[order]
    first = np.ones(len(order), bool)
    first[1:] = gs[1:] != gs[:-1]
    return order, gs, first


def refractory(x, y, t, offsets, W, H, period) -> np.ndarray:
    """Keep mask: drop events at most ``period[sample]`` after the pixel's previous event."""
    n = len(t)
    period = np.asarray(period, np.int64)
    keep = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return keep
    if _nb():
        _refractory_jit(x, y, t, offsets, W, H, period, keep)
        return keep
    order, gs, first = _previous_same_pixel(x, y, offsets, W, H)
    ts = t[order]
    ok = first.copy()
    ok[1:] |= (ts[1:] - ts[:-1]) > np.repeat(period, np.diff(offsets))[order][1:]
    keep[order] = ok
    return keep


def _decimate_nb(x, y, offsets, W, H, n, keep):
    count = np.zeros(W * H, np.int64)
    for s in range(len(offsets) - 1):
        a = offsets[s]
        b = offsets[s + 1]
        for i in range(a, b):
            k = np.int64(y[i]) * W + np.int64(x[i])
            c = count[k] + 1
            if c >= n:
                c = 0
                keep[i] = True
            count[k] = c
        for i in range(a, b):
            count[np.int64(y[i]) * W + np.int64(x[i])] = 0


_decimate_jit = _jit(_decimate_nb)


def decimate(x, y, offsets, W, H, n) -> np.ndarray:
    """Keep mask: every ``n``-th event of each pixel."""
    keep = np.zeros(len(x), dtype=np.bool_)
    if len(x) == 0:
        return keep
    if _nb():
        _decimate_jit(x, y, offsets, W, H, np.int64(n), keep)
        return keep
    order, gs, first = _previous_same_pixel(x, y, offsets, W, H)
    start = np.flatnonzero(first)
    rank = np.arange(len(order)) - np.repeat(start, np.diff(np.append(start, len(order))))
    keep[order] = (rank + 1) % n == 0
    return keep


# ---------------------------------------------------------------------------
# RandomTimeReversal
# ---------------------------------------------------------------------------
def _reverse_nb(x, y, t, p, offsets, pick, flip_p, nx, ny, nt, np_):
    for s in range(len(offsets) - 1):
        a = offsets[s]
        b = offsets[s + 1]
        if not pick[s] or b <= a:
            nx[a:b] = x[a:b]
            ny[a:b] = y[a:b]
            nt[a:b] = t[a:b]
            np_[a:b] = p[a:b]
            continue
        tmax = t[a]
        for i in range(a, b):
            if t[i] > tmax:
                tmax = t[i]
        for i in range(a, b):
            j = a + b - 1 - i
            nx[i] = x[j]
            ny[i] = y[j]
            nt[i] = tmax - t[j]
            if flip_p:
                np_[i] = 0 if p[j] > 0 else 1
            else:
                np_[i] = p[j]


_reverse_jit = _jit(_reverse_nb)


def reverse_samples(x, y, t, p, offsets, pick, flip_p):
    """Columns with the picked samples played backwards (``t -> max(t) - t``); numba only."""
    out = (np.empty_like(x), np.empty_like(y), np.empty_like(t), np.empty_like(p))
    _reverse_jit(x, y, t, p, offsets, pick, flip_p, *out)
    return out


# ---------------------------------------------------------------------------
# DropEvent: an exact number of events per sample, uniformly
# ---------------------------------------------------------------------------
def _drop_exact_nb(u, offsets, n_drop, keep):
    # selection sampling (Knuth's algorithm S): one pass, exact count, uniform subsets
    for s in range(len(offsets) - 1):
        need = n_drop[s]
        remaining = offsets[s + 1] - offsets[s]
        for i in range(offsets[s], offsets[s + 1]):
            if u[i] * remaining < need:
                keep[i] = False
                need -= 1
            else:
                keep[i] = True
            remaining -= 1


_drop_exact_jit = _jit(_drop_exact_nb)


def drop_exact(u, offsets, n_drop) -> np.ndarray:
    """Keep mask dropping exactly ``n_drop[s]`` events of sample ``s``, chosen by uniforms ``u``.

    The two backends pick different (equally uniform) subsets from the same ``u``.
    """
    n = len(u)
    n_drop = np.asarray(n_drop, np.int64)
    if _nb():
        keep = np.empty(n, np.bool_)
        _drop_exact_jit(u, offsets, n_drop, keep)
        return keep
    counts = np.diff(offsets)
    order = np.argsort(segment_ids(offsets) + u)  # random order inside each sample
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(offsets[:-1], counts)
    return rank >= np.repeat(n_drop, counts)


# ---------------------------------------------------------------------------
# spike encoders
# ---------------------------------------------------------------------------
def _threshold_crossing_nb(sig, threshold, refractory, follow, out):
    T, C = sig.shape
    for c in range(C):
        ref = sig[0, c]
        quiet = 0
        for k in range(1, T):
            v = sig[k, c]
            if not follow:
                ref = sig[k - 1, c]
            if quiet > 0:
                quiet -= 1
                continue
            d = v - ref
            if d >= threshold:
                out[k, 0, c] = 1
                quiet = refractory
                if follow:
                    ref = v
            elif d <= -threshold:
                out[k, 1, c] = 1
                quiet = refractory
                if follow:
                    ref = v


_threshold_crossing_jit = _jit(_threshold_crossing_nb)


def threshold_crossing(sig, threshold, refractory, follow) -> np.ndarray:
    """ON/OFF spikes ``(T, 2, C)`` uint8 from a signal ``(T, C)``.

    ``follow=True``: the reference moves to the signal at each spike (send-on-delta);
    ``False``: the reference is the previous sample (temporal difference).
    ``refractory`` steps after a spike are silent.
    """
    sig = np.ascontiguousarray(sig, dtype=np.float64)
    T, C = sig.shape
    out = np.zeros((T, 2, C), np.uint8)
    if T < 2 or C == 0:
        return out
    if _nb():
        _threshold_crossing_jit(sig, float(threshold), int(refractory), bool(follow), out)
        return out
    if not follow and refractory == 0:
        d = np.diff(sig, axis=0)
        out[1:, 0] = d >= threshold
        out[1:, 1] = d <= -threshold
        return out
    # a recurrence in time: one vectorised step over channels per time step
    ref = sig[0].copy()
    quiet = np.zeros(C, np.int64)
    for k in range(1, T):
        v = sig[k]
        if not follow:
            ref = sig[k - 1]
        active = quiet == 0
        d = v - ref
        on = active & (d >= threshold)
        off = active & (d <= -threshold)
        out[k, 0] = on
        out[k, 1] = off
        fired = on | off
        quiet = np.where(active, 0, quiet - 1)
        quiet[fired] = refractory
        if follow:
            ref = np.where(fired, v, ref)
    return out
