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


def bisect_left(t, lo, hi, q):
    """Left insertion points of ``q`` in ``t[lo:hi]`` (absolute; ``t`` non-decreasing in
    each range), for many ranges at once: one bisection of all queries together,
    log2(longest range) vectorised steps on arrays of the queries' size, no pass over ``t``."""
    base = np.asarray(lo, np.int64).copy()
    size = np.asarray(hi, np.int64) - base
    if len(t) == 0 or len(base) == 0:
        return base
    last = len(t) - 1
    for _ in range(int(size.max()).bit_length()):
        half = size >> 1
        mid = base + half
        below = t[np.minimum(mid, last)] < q  # size 0: mid may sit past the end; not taken
        below &= size > 0
        base += np.where(below, half + 1, 0)
        size = np.where(below, size - half - 1, half)
    return base


# ---------------------------------------------------------------------------
# keeping a subset of events (every filter ends here)
# ---------------------------------------------------------------------------
_TAKE_BLOCK = 1 << 18


def compact(x, y, t, p, keep, offsets):
    """The events where ``keep`` is true, as new columns plus updated offsets.

    The same code for both backends: the kept positions (``flatnonzero``, a
    vectorised scan) and one gather per column, faster than a one-pass numba
    loop writing four columns (1.5 vs 3.3 ms per million events). Many kept
    events go block by block straight into the outputs: freeing a large
    index array made the allocator return memory to the system and fault it
    back in on every call (8.5 vs 3.9 ms measured).
    """
    n = len(keep)
    m = int(np.count_nonzero(keep))
    cols = (x, y, t, p)
    if m <= _TAKE_BLOCK:  # a small index: one block
        idx = np.flatnonzero(keep)
        return tuple(c.take(idx) for c in cols) + (np.searchsorted(idx, offsets).astype(np.int64),)
    out = tuple(np.empty(m, c.dtype) for c in cols)
    new_offsets = np.empty(len(offsets), np.int64)
    o = 0  # kept so far
    j = 0  # offsets filled so far
    for a in range(0, n, _TAKE_BLOCK):
        b = min(a + _TAKE_BLOCK, n)
        idx = np.flatnonzero(keep[a:b])
        j1 = int(np.searchsorted(offsets, b, side="left"))
        new_offsets[j:j1] = o + np.searchsorted(idx, offsets[j:j1] - a, side="left")
        j = j1
        idx += a
        k = len(idx)
        for dst, src in zip(out, cols):
            np.take(src, idx, out=dst[o:o + k], mode="wrap")  # "raise" would buffer the output
        o += k
    new_offsets[j:] = m
    return out + (new_offsets,)


# ---------------------------------------------------------------------------
# searchsorted inside samples
# ---------------------------------------------------------------------------
_SEARCH_GROUP = 16


def _searchsorted_segments_nb(t, lo, hi, q, out):
    # Branch-free binary searches, 16 queries in lockstep: the loads of one
    # step are independent, so their cache misses overlap (a query at a time
    # waits for each miss in turn, and mispredicts half of its branches).
    # A query equal to the one before it (a window's end that is the next
    # window's start) takes that answer instead of a search.
    todo = np.empty(len(q), np.int64)
    n = 0
    for k in range(len(q)):
        if k == 0 or q[k] != q[k - 1] or lo[k] != lo[k - 1] or hi[k] != hi[k - 1]:
            todo[n] = k
            n += 1
    base = np.empty(_SEARCH_GROUP, np.int64)
    size = np.empty(_SEARCH_GROUP, np.int64)
    last = len(t) - 1
    for g0 in range(0, n, _SEARCH_GROUP):
        g = min(_SEARCH_GROUP, n - g0)
        longest = 0
        for k in range(g):
            j = todo[g0 + k]
            base[k] = lo[j]
            size[k] = hi[j] - lo[j]
            longest = max(longest, size[k])
        while longest > 1:
            for k in range(g):
                half = size[k] >> 1
                nxt = base[k] + half
                base[k] = nxt if t[min(nxt, last)] < q[todo[g0 + k]] else base[k]
                size[k] -= half
            longest -= longest >> 1
        for k in range(g):
            b = base[k]
            j = todo[g0 + k]
            out[j] = b + 1 if size[k] == 1 and t[b] < q[j] else b
    for k in range(1, len(q)):
        if q[k] == q[k - 1] and lo[k] == lo[k - 1] and hi[k] == hi[k - 1]:
            out[k] = out[k - 1]


_searchsorted_segments_jit = _jit(_searchsorted_segments_nb)


_SEARCH_LOOP = 17  # offsets up to which searchsorted_segments searches sample by sample


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
    if len(offsets) <= _SEARCH_LOOP and np.all(qsample[1:] >= qsample[:-1]):
        # a few samples: one searchsorted per sample on its own slice of t
        cuts = np.flatnonzero(qsample[1:] != qsample[:-1]) + 1
        first = np.concatenate(([0], cuts))
        last = np.concatenate((cuts, [len(q)]))
        for k0, k1, a, b in zip(first.tolist(), last.tolist(), lo[first].tolist(), hi[first].tolist()):
            out[k0:k1] = np.searchsorted(t[a:b], q[k0:k1], side="left")
        out += lo
        return out
    # many samples: all queries bisected together, cheaper than a Python loop per sample
    # (0.40 vs 0.54 ms for 5,000 queries over 256 N-MNIST samples) or a composite
    # sample-major search key built over all events (1.2 vs 2.9 ms, 5,000 samples of ~50)
    return bisect_left(t, lo, hi, q)


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
    """Output for :func:`accumulate_windows` with ``zero=True``: uninitialised (each frame
    is cleared when it is first filled, while in cache, or written whole)."""
    return np.empty(size, dtype)


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


def _pixel_type(n_pixels):
    """Narrowest type for packing pixel indices: uint16 arithmetic runs twice the lanes
    of int32 (events off the sensor may wrap; callers drop them)."""
    return np.uint16 if n_pixels <= 1 << 16 else np.int32 if n_pixels < 1 << 31 else np.int64


def _segment_lengths(ends, c0, c1):
    """Events of ``[c0, c1)`` in consecutive segments ending at ``ends`` (sorted; the
    first ends after ``c0``, the last at or after ``c1``)."""
    lengths = np.empty(len(ends), np.int64)
    lengths[0] = min(int(ends[0]), c1) - c0
    if len(ends) > 1:
        np.subtract(ends[1:], ends[:-1], out=lengths[1:])
        lengths[-1] = c1 - ends[-2]
    return lengths


# cells of the frames scattered into at a time (measured best): add.at groups make
# fewer numpy calls (1 MiB of int16 frames), bincount's int64 histogram stays in cache
_ACC_GROUP_SPARSE = 1 << 19
_ACC_GROUP_DENSE = 1 << 17


def _accumulate_disjoint_np(x, y, p, starts, ends, slots, out, W, H, P, fresh) -> None:
    """Windows in event order, not overlapping, into increasing slots: one scatter per
    group of frames on a packed ``(frame, pixel)`` index (groups keep the frames in cache).

    Frames with more cells than events (small sensors sliced finely: N-MNIST
    in 20 windows has 12 per event) and large frames take an ``add.at``
    straight into the output, whose gap events (between windows) and events
    off the sensor add 0 at a pixel of the group. Small dense frames take a
    ``bincount``, cheaper per event but clearing, scanning and casting an
    int64 histogram (out of cache for large frames: 1.1-1.2x slower there),
    whose gap and off-sensor events go to an extra "trash" frame that is dropped.
    Either way each group is one contiguous slice of the columns (no gather).
    ``fresh``: ``out`` is uninitialised: the frames are cleared or written group
    by group while in cache (int16 sums wrap as the numba kernel's do).
    """
    phw = P * H * W
    cleared = 0  # fresh: out[:cleared] is written
    n_out = len(out) // phw
    # bincount only where its histogram stays in cache and there are fewer than 2 cells per event
    sparse = phw > _ACC_GROUP_DENSE or n_out * phw >= 2 * int(np.maximum(ends - starts, 0).sum())
    per = max(1, (_ACC_GROUP_SPARSE if sparse else _ACC_GROUP_DENSE) // phw)
    add_buf = None
    one = out.dtype.type(1)
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
        block = out[f0 * phw:f0 * phw + trash]
        dense = not sparse and trash < 2 * (b - a)
        if fresh:
            out[cleared:f0 * phw] = 0
            if not dense:
                block.fill(0)
            cleared = f0 * phw + trash
        # pixels in the narrowest type, widened once by adding the frames: add.at wants
        # intp indices (int32 ones cost it 1.7x); bincount widens int32 once
        pix = _pixel_index(x, y, p, a, b, W, H, P, _pixel_type(phw))
        itype = np.int32 if dense and trash < 2**31 - phw else np.intp
        s, e, sl = starts[g0:g1], ends[g0:g1], slots[g0:g1]
        gaps = s[1:] - e[:-1]
        has_gap = bool(np.any(gaps > 0))
        vals = None
        if g1 - g0 == 1:
            if pix.dtype == itype:
                idx = pix
                if sl[0] != f0:
                    idx += (int(sl[0]) - f0) * phw
            else:
                idx = np.add(pix, (int(sl[0]) - f0) * phw, dtype=itype)
        else:
            lengths = np.empty(2 * len(s) - 1, np.int64)
            lengths[0::2] = e - s
            lengths[1::2] = gaps
            shift = np.empty(len(lengths), itype)
            shift[0::2] = (sl - f0) * phw
            shift[1::2] = trash if dense else 0
            idx = np.repeat(shift, lengths)
            idx += pix
            if has_gap and dense:  # a gap event lands in [trash, trash + phw): into the trash frame
                np.minimum(idx, trash, out=idx)
            elif has_gap:
                weight = np.zeros(len(lengths), out.dtype)
                weight[0::2] = 1
                vals = np.repeat(weight, lengths)
        bad = _outside(x, y, p, a, b, W, H, P)
        if not dense:
            if bad is not None:
                if vals is None:
                    vals = np.ones(b - a, out.dtype)
                vals[bad] = 0
                idx[bad] = 0
            np.add.at(block, idx, one if vals is None else vals)
            continue
        if bad is not None:
            idx[bad] = trash
        counts = np.bincount(idx, minlength=trash + 1)
        if fresh:  # cast straight into the output
            np.copyto(block, counts[:trash], casting="unsafe")
        else:
            if add_buf is None:
                add_buf = np.empty(per * phw, out.dtype)
            part = add_buf[:trash]  # same-type add (a mixed-type one casts through buffers)
            np.copyto(part, counts[:trash], casting="unsafe")
            block += part
    if fresh:
        out[cleared:] = 0


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
    if len(starts) and np.all(ends >= starts) and np.all(slots[1:] > slots[:-1]):
        # windows in event order that overlap by less than k - 1 neighbours (overlapping
        # slicing): every k-th window is disjoint from the next, so k disjoint passes
        # (the first writes every frame, the others add)
        for k in range(1, 9):
            if np.all(starts[k:] >= ends[:-k]):
                for r in range(k):
                    _accumulate_disjoint_np(x, y, p, starts[r::k], ends[r::k], slots[r::k], out,
                                            W, H, P, zero and r == 0)
                return
    # overlapping or reordered windows: gather their events
    if zero:
        out[:] = 0
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
    # Per chunk of a sample's events: one branch-free loop (vectorised; the
    # polarity is a number, not a branch) giving each event's flat position
    # and its two weights while taking the extremes of pixels and bins, then
    # the scatter, unchecked when the chunk's pixels and bins are all inside
    # (the usual case; a sample's last chunk reaches the last bin). Columns
    # are sliced per chunk so that indices are known to be non-negative.
    hw = H * W
    vol = n_bins * hw
    w_u = np.uint64(W)
    pos = np.empty(_CHUNK, np.int64)
    w_left = np.empty(_CHUNK, np.float32)
    w_right = np.empty(_CHUNK, np.float32)
    for s in range(len(offsets) - 1):
        a = offsets[s]
        b = offsets[s + 1]
        o = out[s * vol:(s + 1) * vol]
        o[:] = 0  # cleared here, while in cache
        if b <= a:
            continue
        t0 = t[a]
        dur = t[b - 1] - t0
        scale = n_bins / dur if dur != 0 else 0.0
        while a < b:
            m = min(_CHUNK, b - a)
            xs = x[a:a + m]
            ys = y[a:a + m]
            ts_ = t[a:a + m]
            ps = p[a:a + m]
            mx = np.uint64(0)
            my = np.uint64(0)
            lo = n_bins
            hi = -1
            for i in range(m):
                xi = np.uint64(xs[i])
                yi = np.uint64(ys[i])
                mx = max(mx, xi)
                my = max(my, yi)
                tb = (ts_[i] - t0) * scale
                ti = np.int64(tb)
                frac = tb - ti
                v = 2.0 * (ps[i] > 0) - 1.0
                w_left[i] = v * (1.0 - frac)
                w_right[i] = v * frac
                pos[i] = ti * hw + np.int64(yi * w_u + xi)
                lo = min(lo, ti)
                hi = max(hi, ti)
            if mx < W and my < H and lo >= 0 and hi + 1 < n_bins:
                for i in range(m):
                    k = pos[i]
                    o[k] += w_left[i]
                    o[k + hw] += w_right[i]
            else:
                for i in range(m):
                    if xs[i] < W and ys[i] < H:
                        ti = np.int64((ts_[i] - t0) * scale)
                        k = pos[i]
                        if 0 <= ti < n_bins:
                            o[k] += w_left[i]
                        if 0 <= ti + 1 < n_bins:
                            o[k + hw] += w_right[i]
            a += m


_voxel_jit = _jit(_voxel_nb)


def voxel_grid(x, y, t, p, offsets, n_bins, out, W, H) -> None:
    """Event volume of Zhu et al. 2019 into flat ``out`` (``B * n_bins * H * W``).

    ``out`` may be uninitialised (:func:`frames_buffer`): it is cleared here.
    """
    if _nb():
        _voxel_jit(x, y, t, p, offsets, n_bins, out, W, H)
        return
    _voxel_np(x, y, t, p, offsets, n_bins, out, W, H)


_VOX_STEP = 1 << 16  # events per step: temporaries stay in cache


def _voxel_np(x, y, t, p, offsets, n_bins, out, W, H) -> None:
    # Each sample's bins are ranges of its events, found by binary searches
    # of the bins' start times (the samples are time-sorted), so an event's bin
    # and its sample's constants come from repeats over ranges and its weights
    # are float32: +-frac at the right bin and +-(1 - frac) at the left, with
    # frac = (t - bin start) * scale + (bin start's rounding) (exact integers
    # before the float). Two scatters (add.at: a bincount would build, clear
    # and scan a histogram of its own, 30% slower) straight into the output,
    # whose samples are cleared as the steps reach them. The last bin's right
    # weights are set to 0 and land harmlessly on the next sample's first bin
    # (the batch's last sample stops its right scatter before them), which
    # saves a work volume with a spare bin per sample and its copy (1.05-1.1x).
    # A step with events off the sensor, or out of place in time (unsorted
    # samples: frac outside [0, 1]), takes the per-event path with masks.
    n = len(t)
    B = len(offsets) - 1
    hw = H * W
    vol = n_bins * hw
    if n == 0 or B == 0:
        out[:] = 0
        return
    counts = np.diff(offsets)
    ne = counts > 0
    t0 = np.zeros(B, np.int64)
    t0[ne] = t[offsets[:-1][ne]]
    dur = np.zeros(B, np.int64)
    dur[ne] = t[offsets[1:][ne] - 1] - t0[ne]
    scale = np.divide(float(n_bins), dur, out=np.zeros(B), where=dur != 0)
    # start time of bin k: the first integer at or after t0 + k * dur / n_bins (one
    # timestamp: everything in bin 0)
    k = np.arange(n_bins, dtype=np.int64)
    q = t0[:, None] + np.where(dur[:, None] > 0, -((-k * dur[:, None]) // n_bins), (k > 0).astype(np.int64))
    pos = np.empty((B, n_bins + 1), np.int64)  # events of bin k: [pos[k], pos[k + 1])
    pos[:, 0] = offsets[:-1]
    pos[:, n_bins] = offsets[1:]
    if n_bins > 1:
        found = bisect_left(t, np.repeat(offsets[:-1], n_bins - 1), np.repeat(offsets[1:], n_bins - 1),
                            q[:, 1:].ravel())
        pos[:, 1:n_bins] = found.reshape(B, n_bins - 1)
    seg_end = np.maximum.accumulate(pos[:, 1:].ravel())  # segments (sample, bin) in event order
    seg_q = q.ravel()
    seg_scale = np.repeat(scale.astype(np.float32), n_bins)
    seg_c = ((q - t0[:, None]) * scale[:, None] - k).astype(np.float32).ravel()
    seg_base = (np.arange(B, dtype=np.int64)[:, None] * vol + k * hw).ravel()
    # first event of the last sample's last bin: its right weights would fall off the end
    right_end = int(seg_end[B * n_bins - 2]) if n_bins > 1 else int(offsets[B - 1])
    cleared = 0  # out[:cleared * vol] is zeroed
    for c0 in range(0, n, _VOX_STEP):
        c1 = min(n, c0 + _VOX_STEP)
        s1 = int(np.searchsorted(offsets, c1 - 1, side="right"))  # samples of the step end before s1
        if s1 > cleared:
            out[cleared * vol:s1 * vol] = 0
            cleared = s1
        g0 = int(np.searchsorted(seg_end, c0, side="right"))
        g1 = int(np.searchsorted(seg_end, c1, side="left")) + 1
        if not _voxel_step(x, y, t, p, c0, c1, g0, seg_end[g0:g1], seg_q[g0:g1], seg_scale[g0:g1],
                           seg_c[g0:g1], seg_base[g0:g1], out, hw, n_bins, W, H, right_end):
            _voxel_step_checked(x, y, t, p, c0, c1, offsets, 0, t0, scale, out, vol, n_bins, hw, W, H)
    out[cleared * vol:] = 0


_FRAC_TOL = np.float32(2e-6)  # float32 rounding of frac is below 5e-7


def _voxel_step(x, y, t, p, c0, c1, g0, ends, q, scale, c, base, out, hw, n_bins, W, H, right_end):
    """Events ``[c0, c1)`` of time-sorted samples inside the sensor, into ``out``
    (segments ``g0, g0 + 1, ...``); False (nothing added) when some are not."""
    xs, ys = x[c0:c1], y[c0:c1]
    if xs.max() >= W or ys.max() >= H:
        return False
    if len(ends) == 1:
        lengths = np.array([c1 - c0])
        rel = t[c0:c1] - q[0]
        frac = rel.astype(np.float32)
        frac *= scale[0]
        frac += c[0]
    else:
        lengths = _segment_lengths(ends, c0, c1)
        rel = t[c0:c1] - np.repeat(q, lengths)
        frac = rel.astype(np.float32)
        frac *= np.repeat(scale, lengths)
        frac += np.repeat(c, lengths)
    if frac.min() < -_FRAC_TOL or frac.max() > 1 + _FRAC_TOL:
        return False
    pix = _pixel_index(x, y, p, c0, c1, W, H, 1, _pixel_type(hw))
    if len(ends) == 1:
        idx = np.add(pix, int(base[0]), dtype=np.int64)
    else:
        idx = np.repeat(base, lengths)
        idx += pix
    sign = (p[c0:c1] > 0).astype(np.float32)
    sign *= 2
    sign -= 1
    frac *= sign  # right weights
    sign -= frac  # left weights
    np.add.at(out, idx, sign)
    # no right weights from a sample's last bin (they would land on the next sample)
    stop = np.cumsum(lengths)
    for j in range((n_bins - 1 - g0) % n_bins, len(lengths), n_bins):
        frac[stop[j] - lengths[j]:stop[j]] = 0
    m = min(max(right_end - c0, 0), len(idx))
    if m:
        np.add.at(out[hw:], idx[:m], frac[:m])
    return True


def _voxel_step_checked(x, y, t, p, c0, c1, offsets, s0, t0, scale, work, stride, n_bins, hw, W, H):
    """Events ``[c0, c1)`` one by one (vectorised): float bins, masks for events off the
    sensor and for bins outside ``[0, n_bins)``."""
    s_a = int(np.searchsorted(offsets, c0, side="right")) - 1
    s_b = int(np.searchsorted(offsets, c1 - 1, side="right"))
    cnt = np.diff(np.clip(offsets[s_a:s_b + 1], c0, c1))
    xs, ys = x[c0:c1], y[c0:c1]
    tb = (t[c0:c1] - np.repeat(t0[s_a:s_b], cnt)) * np.repeat(scale[s_a:s_b], cnt)
    ti = np.trunc(tb)  # as int(): toward zero, as the definition
    frac = tb - ti
    ti = np.clip(ti, -2, n_bins + 1).astype(np.int64)
    sign = np.where(p[c0:c1] > 0, 1.0, -1.0)
    inside = (xs < W) & (ys < H)
    w_left = np.where(inside & (ti >= 0) & (ti < n_bins), sign * (1.0 - frac), 0.0).astype(np.float32)
    w_right = np.where(inside & (ti >= -1) & (ti < n_bins - 1), sign * frac, 0.0).astype(np.float32)
    base = np.repeat((np.arange(s_a, s_b, dtype=np.int64) - s0) * stride, cnt)
    base += np.where(inside, ys.astype(np.int64) * W + xs, 0)
    np.add.at(work, base + np.clip(ti, 0, n_bins - 1) * hw, w_left)
    np.add.at(work, base + np.clip(ti + 1, 0, n_bins - 1) * hw, w_right)


# ---------------------------------------------------------------------------
# ToTimeSurface: exponentially decayed last-event times at frame boundaries
# ---------------------------------------------------------------------------
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with 9 bits: n * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)
_ROUND = np.float32(12582912.0)  # 1.5 * 2**23: adding it rounds a float32 to an integer
_ROUND_BITS = np.int32(_ROUND.view(np.int32))
_E0, _E1, _E2, _E3, _E4, _E5, _E6 = (np.float32(1.0 / c) for c in (1, 1, 2, 6, 24, 120, 720))
_Z_MIN = np.float32(-127.0)  # 2**-127 is built as 0.0: exp of arguments below -88 is exactly 0
_A_MIN = np.float32(-100.0)
_A_MAX = np.float32(88.0)


def _exp_nb(arg, out, scale_buf, m):
    # float32 exp(arg[:m]) as 2**n * poly(r), r = arg - n ln2 in two parts (Cody-Waite,
    # so that large |arg| keep their precision), |r| <= ln2 / 2, degree-6 Taylor:
    # relative error ~3e-7. Three loops without calls or branches, so they
    # vectorise (16 float32 lanes), where a libm exp per element does not (~8x faster).
    bits = scale_buf.view(np.int32)
    for i in range(m):
        a = min(max(arg[i], _A_MIN), _A_MAX)  # keeps poly(r) finite (inf * 0 would be NaN)
        z = max(a * _LOG2E, _Z_MIN)
        rz = z + _ROUND
        n = rz - _ROUND
        r = (a - n * _LN2_HI) - n * _LN2_LO
        out[i] = _E0 + r * (_E1 + r * (_E2 + r * (_E3 + r * (_E4 + r * (_E5 + r * _E6)))))
        scale_buf[i] = rz
    for i in range(m):  # the integer n sits in the low bits of rz: make 2**n
        bits[i] = (bits[i] - _ROUND_BITS + 127) << 23
    for i in range(m):
        out[i] *= scale_buf[i]


_exp_jit = _jit(_exp_nb)


_TS_CHUNK = 4096  # events per step: longer streams of the columns than _CHUNK (6% faster here)


def _time_surface_nb(x, y, t, p, offsets, f_sample, f_end, f_ref, tau, out, W, H, P):
    # The surface decays by one factor between frames, so a frame is the
    # previous one times that factor (a vectorised multiply over the output);
    # then each new event of the window writes exp((t - ref) / tau) at its
    # pixel, in time order so that a pixel keeps its latest event. Events go
    # by chunks: pixels (with maxima), then a vectorised exp of all their
    # times (cheaper than finding each pixel's latest event first, whose
    # read-after-write on a per-pixel stamp stalls), then the scatter,
    # unchecked when the chunk is inside the sensor.
    hw = H * W
    phw = P * hw
    w_u = np.uint64(W)
    hw_u = np.uint64(hw)
    pix = np.empty(_TS_CHUNK, np.uint64)
    arg = np.empty(_TS_CHUNK, np.float32)
    val = np.empty(_TS_CHUNK, np.float32)
    scale_buf = np.empty(_TS_CHUNK, np.float32)
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
            cur = out[base:base + phw]
            if first:
                cur[:] = 0.0
                first = False
            else:
                prev = out[base - phw:base]
                decay = np.float32(np.exp(-(ref - prev_ref) * inv_tau))
                for k in range(phw):
                    cur[k] = prev[k] * decay
            e = f_end[f]
            a = i
            while a < e:
                m = min(_TS_CHUNK, e - a)
                xs = x[a:a + m]
                ys = y[a:a + m]
                ps = p[a:a + m]
                ts_ = t[a:a + m]
                mx = np.uint64(0)
                my = np.uint64(0)
                mp = np.uint64(0)
                for j in range(m):
                    xi = np.uint64(xs[j])
                    yi = np.uint64(ys[j])
                    pi = np.uint64(ps[j]) if P > 1 else np.uint64(0)
                    mx = max(mx, xi)
                    my = max(my, yi)
                    mp = max(mp, pi)
                    pix[j] = pi * hw_u + yi * w_u + xi
                    arg[j] = np.float32((ts_[j] - ref) * inv_tau)
                _exp_jit(arg, val, scale_buf, m)
                if mx < W and my < H and (P == 1 or mp < P):
                    for j in range(m):
                        cur[pix[j]] = val[j]
                else:
                    for j in range(m):
                        if xs[j] < W and ys[j] < H and (P == 1 or ps[j] < P):
                            cur[pix[j]] = val[j]
                a += m
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
    _time_surface_np(x, y, t, p, offsets, f_sample, f_end, f_ref, tau, out, W, H, P)


_TS_WORK = 1 << 19  # floats of the work buffer of packed samples' frames (2 MB: fewer calls, still cached)
_TS_STEP = 1 << 16  # events per step of the scatter: temporaries stay in cache
_TS_BLOCK = 1 << 15  # pixels per block of a recurrence; frames this large are built one by one


def _time_surface_np(x, y, t, p, offsets, f_sample, f_end, f_ref, tau, out, W, H, P) -> None:
    # A frame is the previous frame of its sample times the decay between
    # them, overwritten with exp((t - ref) / tau) at the pixels of its new
    # events (the numba kernel's recurrence: no exp per output element).
    # Frames of at least _TS_BLOCK pixels are built so, one at a time, in the
    # output. Smaller frames would make numpy's per-call costs dominate, so
    # they start as zeros plus one scatter of all their new events' values
    # (in event order: a pixel keeps its latest event), then ``max(frame,
    # previous * decay)`` runs over frames (a maximum, not an overwrite: in a
    # time-sorted sample, as window slicing needs, a newer event never gives
    # less; out of order, it may keep an older pixel value than the numba
    # kernel's last-event rule). Short samples are
    # packed into a work buffer laid out (rank, sample, pixel), so that one
    # contiguous ufunc call covers the k-th frames of many samples, then
    # taken to their places; a longer sample is worked in the output, by
    # blocks of pixels that stay in cache.
    F = len(f_sample)
    if F == 0:
        return
    phw = P * H * W
    first = np.ones(F, bool)
    first[1:] = f_sample[1:] != f_sample[:-1]
    run_start = np.flatnonzero(first)  # frames of one sample form a run
    n_run = np.diff(np.append(run_start, F))
    rank = np.arange(F, dtype=np.int64) - np.repeat(run_start, n_run)
    lo = offsets[f_sample].astype(np.int64)  # a frame's new events: [lo, f_end)
    lo[~first] = f_end[:-1][~first[1:]]
    lo = np.minimum(lo, f_end)
    decay = np.zeros(F, np.float32)
    decay[~first] = np.exp(-(f_ref[1:] - f_ref[:-1])[~first[1:]] / tau)
    ref_int = np.floor(f_ref).astype(np.int64)  # arguments from exact integer differences
    ref_frac = (f_ref - ref_int).astype(np.float32)
    ev = (x, y, t, p, ref_int, ref_frac, np.float32(1.0 / tau), W, H, P)
    out2 = out[:F * phw].reshape(F, phw)
    with np.errstate(over="ignore", invalid="ignore"):  # events between windows go to a trash row
        if phw >= _TS_BLOCK:
            for f in range(F):
                if first[f]:
                    out2[f].fill(0.0)
                else:
                    np.multiply(out2[f - 1], decay[f], out=out2[f])
                _ts_scatter(out2[f], np.zeros(1, np.int64), -1, lo[f:f + 1], f_end[f:f + 1], f, ev)
            return
        R = len(run_start)
        per = max(1, _TS_WORK // phw)  # frames in the work buffer
        buf = None
        r0 = 0
        while r0 < R:  # groups of whole samples, padded to their longest
            S = max(1, per // int(n_run[r0]))
            K = int(n_run[r0:r0 + S].max())
            if S > 1 and S * K > per:
                S = max(1, per // K)
                K = int(n_run[r0:r0 + S].max())
            r1 = min(R, r0 + S)
            F0, F1 = int(run_start[r0]), int(run_start[r1]) if r1 < R else F
            if r1 - r0 == 1:
                _ts_sample_blocks(out2[F0:F1], lo, f_end, decay, F0, F1, ev)
            else:
                if buf is None:
                    buf = np.empty((per + 1) * phw, np.float32)
                _ts_packed(buf, out2, rank, n_run[r0:r1], lo, f_end, decay, F0, F1, K, ev)
            r0 = r1


def _ts_sample_blocks(frames, lo, f_end, decay, F0, F1, ev):
    """Frames ``[F0, F1)`` of one sample, in place: a scatter, then the recurrence by blocks of pixels."""
    g, phw = frames.shape
    frames.fill(0.0)
    _ts_scatter(frames.reshape(-1), np.arange(g, dtype=np.int64) * phw, -1, lo[F0:F1], f_end[F0:F1],
                F0, ev)
    tmp = np.empty(min(phw, _TS_BLOCK), np.float32)
    dk = decay[F0:F1].tolist()
    for b0 in range(0, phw, _TS_BLOCK):
        b1 = min(phw, b0 + _TS_BLOCK)
        tb = tmp[:b1 - b0]
        for k in range(1, g):
            np.multiply(frames[k - 1, b0:b1], dk[k], out=tb)
            np.maximum(frames[k, b0:b1], tb, out=frames[k, b0:b1])


def _ts_packed(buf, out2, rank, n_run, lo, f_end, decay, F0, F1, K, ev):
    """Frames ``[F0, F1)`` of ``S = len(n_run)`` samples through a work buffer ``(K, S, phw)``
    plus a trash row; the recurrence covers the k-th frames of all samples per call."""
    S = len(n_run)
    g, phw = F1 - F0, out2.shape[1]
    work = buf[:(K * S + 1) * phw]
    work.fill(0.0)
    slot = rank[F0:F1] * S + np.repeat(np.arange(S), n_run)
    _ts_scatter(work, slot * phw, K * S * phw, lo[F0:F1], f_end[F0:F1], F0, ev)
    w3 = work[:K * S * phw].reshape(K, S, phw)
    tmp = np.empty((S, phw), np.float32)
    d = decay[F0:F1][rank[F0:F1] > 0]
    if len(d) == 0 or (d == d[0]).all():  # one decay (windows every dt): a scalar
        dk = [d[0] if len(d) else np.float32(0)] * K
    else:
        dpad = np.zeros(K * S, np.float32)
        dpad[slot] = decay[F0:F1]
        dk = dpad.reshape(K, S, 1)
    for k in range(1, K):
        np.multiply(w3[k - 1], dk[k], out=tmp)
        np.maximum(w3[k], tmp, out=w3[k])
    # mode="clip": "raise" would buffer the output
    np.take(work.reshape(-1, phw), slot, axis=0, out=out2[F0:F1], mode="clip")


def _ts_scatter(work, rows, trash, lo, end, F0, ev) -> None:
    """``work[rows[f] + pixel] = exp((t - ref[F0 + f]) / tau)`` for the new events
    ``[lo[f], end[f])`` of each frame, in event order. Events between frames go to
    ``trash`` (``trash < 0``: there are none); events off the sensor are dropped."""
    x, y, t, p, ref_int, ref_frac, inv_tau, W, H, P = ev
    g = len(rows)
    e0, e1 = int(lo[0]), int(end[-1])
    if e1 <= e0:
        return
    # frames' new events alternate with events between frames
    seg_end = np.empty(2 * g - 1, np.int64)
    seg_end[0::2] = end
    seg_end[1::2] = lo[1:]
    seg_row = np.full(2 * g - 1, max(trash, 0), np.int64)
    seg_row[0::2] = rows
    seg_ref = np.zeros(2 * g - 1, np.int64)
    seg_ref[0::2] = ref_int[F0:F0 + g]
    seg_frac = np.zeros(2 * g - 1, np.float32)
    seg_frac[0::2] = ref_frac[F0:F0 + g]
    whole = not seg_frac.any()  # integer references (integer dt and times): no fraction to take
    ptype = _pixel_type(P * H * W)
    for c0 in range(e0, e1, _TS_STEP):
        c1 = min(e1, c0 + _TS_STEP)
        k0 = int(np.searchsorted(seg_end, c0, side="right"))
        k1 = int(np.searchsorted(seg_end, c1, side="left")) + 1
        pix = _pixel_index(x, y, p, c0, c1, W, H, P, ptype)
        if k1 - k0 == 1:  # the step lies in one segment: scalars, no repeat
            idx = np.add(pix, int(seg_row[k0]), dtype=np.int64)
            rel = np.subtract(t[c0:c1], seg_ref[k0])
            frac = seg_frac[k0]
        else:
            lengths = _segment_lengths(seg_end[k0:k1], c0, c1)
            idx = np.repeat(seg_row[k0:k1], lengths)
            idx += pix
            rel = np.subtract(t[c0:c1], np.repeat(seg_ref[k0:k1], lengths))
            frac = None if whole else np.repeat(seg_frac[k0:k1], lengths)
        arg = rel.astype(np.float32)
        if not whole:
            arg -= frac
        arg *= inv_tau
        val = np.exp(arg, out=arg)
        bad = _outside(x, y, p, c0, c1, W, H, P)
        if bad is not None:
            if trash >= 0:
                idx[bad] = trash
            else:
                keep = np.flatnonzero(~bad)
                idx, val = idx[keep], val[keep]
        work[idx] = val


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
    gs = group[order]
    gstart = np.searchsorted(gs, np.arange(n_groups + 1))
    lin = decay == "lin"
    # time-sorted within every group (a batch of time-sorted samples is, though its
    # concatenated times are not): looking back stops at the window's start
    ts_all = t[order]
    sorted_t = bool(len(t) < 2 or np.all((ts_all[1:] >= ts_all[:-1]) | (gs[1:] != gs[:-1])))
    if _nb():
        _hats_jit(x, y, t, group, order, gstart, int(rho), float(time_window), float(tau),
                  lin, sorted_t, out)
        return
    _hats_np(x, y, ts_all, gs, order, gstart, int(rho), float(time_window), float(tau), lin,
             sorted_t, out)


_HATS_PAIRS = 1 << 20  # (event, earlier event) pairs per numpy step


def _hats_np(x, y, ts_all, gs, order, gstart, rho, time_window, tau, lin, sorted_t, out):
    # Every event's earlier events in its group and window form a range of
    # positions (found by one vectorised bisection when the groups are
    # time-sorted, else the whole group before it, masked by time), so the
    # (event, earlier event) pairs are built by steps of ranges and kept where
    # they are within rho pixels.
    S = 2 * rho + 1
    ss = S * S
    n = len(order)
    if n == 0:
        return
    ts = ts_all.astype(np.float32)  # the definition's float32 times
    xs = x[order].astype(np.int64)
    ys = y[order].astype(np.int64)
    np.add.at(out, gs * ss + rho * S + rho, np.float32(1.0))
    t_start = np.maximum(np.float32(0), ts - np.float32(time_window))
    k = np.arange(n, dtype=np.int64)
    lo = gstart[gs]  # the event's group starts here
    if sorted_t:
        lo = bisect_left(ts, lo, k, t_start)
    csum = np.cumsum(k - lo)
    k0 = 0
    while k0 < n:
        done = int(csum[k0 - 1]) if k0 else 0
        k1 = max(k0 + 1, int(np.searchsorted(csum, done + _HATS_PAIRS, side="right")))
        cur = np.repeat(k[k0:k1], k[k0:k1] - lo[k0:k1])
        j = ranges(lo[k0:k1], k[k0:k1])
        k0 = k1
        if not len(j):
            continue
        dx = xs[j] - xs[cur]
        dy = ys[j] - ys[cur]
        hit = (np.abs(dx) <= rho) & (np.abs(dy) <= rho)
        if not sorted_t:
            hit &= ts[j] >= t_start[cur]
        cur, j, dx, dy = cur[hit], j[hit], dx[hit], dy[hit]
        dt = ts[cur] - ts[j]
        val = (-dt / np.float32(3.0 * tau) + 1.0) if lin else np.exp(-dt / np.float32(tau))
        np.add.at(out, gs[cur] * ss + (dy + rho) * S + dx + rho, val.astype(out.dtype))


# ---------------------------------------------------------------------------
# per-pixel memories: Denoise, RefractoryPeriod, Decimation
# ---------------------------------------------------------------------------
_NEVER = np.iinfo(np.int64).min // 4  # "no event yet": far enough from overflow


def _forget(mem, x, y, a, b, W, pad, value):
    # Clear a sample's pixel memory before the next sample: the touched pixels
    # when the sample is short, the whole table (a vectorised fill) when not.
    if 4 * (b - a) > len(mem):
        mem[:] = value
    else:
        for i in range(a, b):
            mem[(np.uint64(y[i]) + np.uint64(pad)) * np.uint64(W) + np.uint64(x[i]) + np.uint64(pad)] = value


_forget_jit = _jit(_forget)


def _denoise_nb(x, y, t, offsets, W, H, filter_time, keep):
    # One int64 per pixel with a border of never-firing pixels around the
    # sensor, so the four neighbour reads need no bounds checks and the
    # decision is a branch-free max (a data-dependent branch per event costs
    # more than the reads).
    # Indices are unsigned: numba then skips its negative-index wrap-around.
    W2 = np.uint64(W + 2)
    one = np.uint64(1)
    last = np.full((W + 2) * (H + 2), _NEVER, np.int64)
    B = len(offsets) - 1
    for s in range(B):
        a = offsets[s]
        b = offsets[s + 1]
        for i in range(a, b):
            k = (np.uint64(y[i]) + one) * W2 + np.uint64(x[i]) + one
            ti = t[i]
            last[k] = ti
            m = max(max(last[k - one], last[k + one]), max(last[k - W2], last[k + W2]))
            keep[i] = m > ti - filter_time
        if s < B - 1:
            _forget_jit(last, x, y, a, b, W + 2, 1, _NEVER)


_denoise_jit = _jit(_denoise_nb)


def _stable_argsort(keys, n_keys):
    """Stable argsort of int64 ``0 <= keys < n_keys`` by 16-bit digits, least significant first.

    numpy sorts uint16 stably with a radix sort: two such passes (keys up to
    2**32) cost about a seventh of its int64 stable (merge) sort.
    """
    order = None
    shift = 0
    while True:
        k = keys if order is None else keys[order]
        digit = (k >> shift if shift else k).astype(np.uint16)  # wraps modulo 2**16
        o = np.argsort(digit, kind="stable")
        order = o if order is None else order[o]
        shift += 16
        if (int(n_keys) - 1) >> shift <= 0:
            return order


def _pixel_runs(x, y, offsets, W, H):
    """Events grouped by (sample, pixel), in input order inside a group.

    Returns ``order`` (event positions) and the sorted group keys
    ``sample * W * H + y * W + x``.
    """
    gpix = segment_ids(offsets) * (W * H)
    gpix += y.astype(np.int64) * W
    gpix += x
    order = _stable_argsort(gpix, (len(offsets) - 1) * W * H)
    return order, gpix[order]


_CHUNK_EVENTS = 1 << 16


def _sample_chunks(offsets, size):
    """``(first, stop)`` sample ranges holding about ``size`` events each; a longer sample alone.

    The numpy twins run chunk by chunk: their sorts and searches then stay in
    cache, about twice as fast as one pass over a whole batch of N-MNIST
    samples, and the Python loop is over chunks, not samples.
    """
    B = len(offsets) - 1
    counts = np.diff(offsets)
    long = np.flatnonzero(counts > size)
    cuts = np.searchsorted(offsets, np.arange(size, int(offsets[-1]), size), side="left")
    cuts = np.unique(np.concatenate(([0], cuts, long, long + 1, [B])))
    return list(zip(cuts[:-1].tolist(), cuts[1:].tolist()))


def _chunked_mask(fn, offsets, n, t=None, lookback=None):
    """Concatenated ``fn(a, b, local_offsets, first, stop, decide_from)`` keep masks over sample chunks.

    With ``lookback``, a long time-sorted sample is cut into pieces too, each
    run with the events of the ``lookback`` us before it (``fn``'s decision for
    an event must depend only on earlier events less than ``lookback`` older);
    ``fn`` needs to decide only for the events from local position ``decide_from`` on.
    """
    size = _CHUNK_EVENTS
    chunks = _sample_chunks(offsets, size)
    keep = np.empty(n, np.bool_)
    for c0, c1 in chunks:
        a, b = int(offsets[c0]), int(offsets[c1])
        if b <= a:
            continue
        if lookback is None or c1 - c0 > 1 or b - a <= 2 * size or np.any(t[a + 1:b] < t[a:b - 1]):
            keep[a:b] = fn(a, b, offsets[c0:c1 + 1] - a, c0, c1, 0)
            continue
        p0 = a
        while p0 < b:  # pieces at least twice their look-back (measured best)
            l0 = a + int(np.searchsorted(t[a:p0], t[p0] - lookback, side="right"))
            p1 = min(p0 + max(size, 2 * (p0 - l0)), b)
            keep[p0:p1] = fn(l0, p1, np.array([0, p1 - l0], np.int64), c0, c1, p0 - l0)[p0 - l0:]
            p0 = p1
    return keep


def _denoise_np(x, y, t, offsets, W, H, filter_time, decide_from=0):
    # Events grouped by (sample, pixel) then position: the last event of a
    # neighbour pixel before an event is a predecessor search in that order,
    # and the queries of one direction come in sorted order too (the key
    # shifted by a constant), which keeps the binary searches in cache.
    n = len(t)
    order, gs = _pixel_runs(x, y, offsets, W, H)
    if (len(offsets) - 1) * W * H >= (2**62) // max(n, 1):  # composite key would overflow
        keep = np.zeros(n, np.bool_)
        for s in range(len(offsets) - 1):  # gigantic batches only
            a, b = int(offsets[s]), int(offsets[s + 1])
            keep[a:b] = _denoise_np(x[a:b], y[a:b], t[a:b], np.array([0, b - a]), W, H, filter_time)
        return keep
    # position 0 holds a sentinel that precedes every query and matches no pixel,
    # so a predecessor always exists and needs no bounds check
    key = np.empty(n + 1, np.int64)
    key[0] = -1
    np.multiply(gs, n, out=key[1:])
    key[1:] += order
    group = np.empty(n + 1, np.int64)
    group[0] = -1
    group[1:] = gs
    ts = np.empty(n + 1, np.int64)
    np.take(t, order, out=ts[1:])
    ts[0] = 0
    recent = ts[1:] - filter_time  # a neighbour event after this counts
    xs, ys = x[order], y[order]
    keep_s = order < decide_from  # look-back events are only neighbours: never queried
    for d, ok in ((-1, xs > 0), (1, xs < W - 1), (-W, ys > 0), (W, ys < H - 1)):
        ok &= ~keep_s
        cand = np.flatnonzero(ok)
        pos = np.searchsorted(key, key[cand + 1] + d * n, side="left") - 1
        hit = group[pos] == gs[cand] + d
        hit &= ts[pos] > recent[cand]
        keep_s[cand] = hit
    keep = np.empty(n, np.bool_)
    keep[order] = keep_s
    return keep


def denoise(x, y, t, offsets, W, H, filter_time) -> np.ndarray:
    """Keep mask: an event survives if a 4-neighbour pixel fired less than ``filter_time`` before it.

    Every ``x < W`` and ``y < H``; samples are independent.
    """
    n = len(t)
    if n == 0:
        return np.zeros(0, np.bool_)
    if _nb():
        keep = np.empty(n, dtype=np.bool_)
        _denoise_jit(x, y, t, offsets, W, H, np.int64(filter_time), keep)
        return keep
    ft = int(filter_time)
    return _chunked_mask(
        lambda a, b, off, c0, c1, d0: _denoise_np(x[a:b], y[a:b], t[a:b], off, W, H, ft, d0),
        offsets, n, t, max(ft, 0))


def _refractory_nb(x, y, t, offsets, W, H, period, keep):
    last = np.full(W * H, _NEVER, np.int64)
    Wu = np.uint64(W)
    B = len(offsets) - 1
    for s in range(B):
        a = offsets[s]
        b = offsets[s + 1]
        ps = period[s]
        for i in range(a, b):
            k = np.uint64(y[i]) * Wu + np.uint64(x[i])  # unsigned: no wrap-around checks
            ti = t[i]
            prev = last[k]
            keep[i] = (prev == _NEVER) | (ti - prev > ps)
            last[k] = ti
        if s < B - 1:
            _forget_jit(last, x, y, a, b, W, 0, _NEVER)


_refractory_jit = _jit(_refractory_nb)


def _previous_same_pixel(x, y, offsets, W, H):
    order, gs = _pixel_runs(x, y, offsets, W, H)
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
    return _chunked_mask(lambda a, b, off, c0, c1, d0: _refractory_np(x[a:b], y[a:b], t[a:b], off, W, H,
                                                                     period[c0:c1]),
                         offsets, n, t, max(int(period.max()), 0) + 1)


def _refractory_np(x, y, t, offsets, W, H, period):
    order, gs, first = _previous_same_pixel(x, y, offsets, W, H)
    ts = t[order]
    ok = first
    if np.all(period == period[0]):
        ok[1:] |= (ts[1:] - ts[:-1]) > period[0]
    else:
        ok[1:] |= (ts[1:] - ts[:-1]) > period[gs[1:] // (W * H)]
    keep = np.empty(len(t), np.bool_)
    keep[order] = ok
    return keep


def _decimate_nb(x, y, offsets, W, H, n, keep):
    count = np.zeros(W * H, np.int64)
    Wu = np.uint64(W)
    B = len(offsets) - 1
    for s in range(B):
        a = offsets[s]
        b = offsets[s + 1]
        for i in range(a, b):
            k = np.uint64(y[i]) * Wu + np.uint64(x[i])  # unsigned: no wrap-around checks
            c = count[k] + 1
            hit = c >= n
            keep[i] = hit
            count[k] = 0 if hit else c
        if s < B - 1:
            _forget_jit(count, x, y, a, b, W, 0, 0)


_decimate_jit = _jit(_decimate_nb)


def decimate(x, y, offsets, W, H, n) -> np.ndarray:
    """Keep mask: every ``n``-th event of each pixel."""
    keep = np.zeros(len(x), dtype=np.bool_)
    if len(x) == 0:
        return keep
    if _nb():
        _decimate_jit(x, y, offsets, W, H, np.int64(n), keep)
        return keep
    return _chunked_mask(lambda a, b, off, c0, c1, d0: _decimate_np(x[a:b], y[a:b], off, W, H, n),
                         offsets, len(x))


def _decimate_np(x, y, offsets, W, H, n):
    order, gs, first = _previous_same_pixel(x, y, offsets, W, H)
    start = np.flatnonzero(first)
    rank = np.arange(len(order)) - np.repeat(start, np.diff(np.append(start, len(order))))
    keep = np.empty(len(x), np.bool_)
    keep[order] = (rank + 1) % n == 0
    return keep


# ---------------------------------------------------------------------------
# RandomTimeReversal
# ---------------------------------------------------------------------------
def _reverse_nb(x, y, t, p, offsets, pick, flip_p, nx, ny, nt, np_):
    # Column by column, with unsigned indices: a signed ``b - 1 - i`` makes
    # numba check for negative (wrap-around) indices, which keeps the loop
    # from vectorising (5x slower measured).
    for s in range(len(offsets) - 1):
        a = offsets[s]
        b = offsets[s + 1]
        if not pick[s] or b <= a:
            nx[a:b] = x[a:b]
            ny[a:b] = y[a:b]
            nt[a:b] = t[a:b]
            np_[a:b] = p[a:b]
            continue
        m = np.uint64(b - a)
        ua = np.uint64(a)
        ul = np.uint64(b - 1)
        tmax = t[a]
        for i in range(ua, ua + m):
            tmax = max(tmax, t[i])
        for i in range(m):
            nx[ua + i] = x[ul - i]
        for i in range(m):
            ny[ua + i] = y[ul - i]
        for i in range(m):
            nt[ua + i] = tmax - t[ul - i]
        if flip_p:
            for i in range(m):
                np_[ua + i] = p[ul - i] == 0
        else:
            for i in range(m):
                np_[ua + i] = p[ul - i]


_reverse_jit = _jit(_reverse_nb)


def _reverse_np(x, y, t, p, offsets, pick, flip_p, nx, ny, nt, np_):
    counts = np.diff(offsets)
    B = len(counts)
    picked = np.flatnonzero(pick & (counts > 0))
    if len(picked) * 256 > int(offsets[-1]):
        # many short samples: one gather through a mirrored index
        a, b = offsets[:-1], offsets[1:]
        ev = np.repeat(pick, counts)
        idx = np.arange(len(t), dtype=np.int64)
        src = np.where(ev, np.repeat(a + b - 1, counts) - idx, idx)
        tmax = np.zeros(B, np.int64)
        ne = counts > 0
        tmax[ne] = np.maximum.reduceat(t, a[ne])  # nonempty starts are distinct
        np.take(x, src, out=nx)
        np.take(y, src, out=ny)
        np.take(t, src, out=nt)
        np.subtract(np.repeat(tmax, counts), nt, out=nt, where=ev)
        np.take(p, src, out=np_)
        if flip_p:
            np_[ev] = np_[ev] == 0
        return
    # long samples: reversed slices (a loop over the picked samples, each step one block copy)
    if len(picked) < B:
        nx[:], ny[:], nt[:], np_[:] = x, y, t, p
    nonempty = counts > 0
    tmax = np.zeros(B, np.int64)
    tmax[nonempty] = np.maximum.reduceat(t, offsets[:-1][nonempty])  # nonempty starts are distinct
    for s, tm in zip(picked.tolist(), tmax[picked].tolist()):
        a, b = int(offsets[s]), int(offsets[s + 1])
        r = slice(b - 1, a - 1 if a else None, -1)
        nx[a:b] = x[r]
        ny[a:b] = y[r]
        np.subtract(tm, t[r], out=nt[a:b])
        if flip_p:
            np.equal(p[r], 0, out=np_[a:b], casting="unsafe")
        else:
            np_[a:b] = p[r]


def reverse_samples(x, y, t, p, offsets, pick, flip_p):
    """Columns with the picked samples played backwards: order reversed, ``t -> max(t) - t``.

    ``flip_p`` also swaps ON and OFF (``p -> p == 0``) in the picked samples.
    """
    out = (np.empty_like(x), np.empty_like(y), np.empty_like(t), np.empty_like(p))
    pick = np.asarray(pick, np.bool_)
    if _nb():
        _reverse_jit(x, y, t, p, offsets, pick, flip_p, *out)
    else:
        _reverse_np(x, y, t, p, offsets, pick, flip_p, *out)
    return out


# ---------------------------------------------------------------------------
# DropEvent: an exact number of events per sample, uniformly
# ---------------------------------------------------------------------------
# Definition shared by both backends (so they agree event for event): every
# event carries a random 32-bit key, and a sample drops its ``n_drop`` events
# with the smallest (key, position). Finding them needs no sort of the sample:
# the ``n_drop``-th smallest of ``c`` uniform keys lies near ``n_drop / c`` of the
# key range, so events below a band around it are dropped, events above it
# kept, and only the few inside the band (a binomial margin: a few per cent of
# the events) are ranked. A sample whose band misses (rare) ranks all its events.
_BAND_SIGMAS = 4.0


def _drop_band(counts, n_drop):
    """Per-sample key band ``[lo, hi]`` (uint32, inclusive) expected to hold the ``n_drop``-th key."""
    c = np.maximum(counts, 1).astype(np.float64)
    q = n_drop / c
    half = _BAND_SIGMAS * np.sqrt(q * (1 - q) / c) + 2.0 / c
    lo = np.clip(np.floor((q - half) * 2.0**32), 0, 2.0**32 - 1)
    hi = np.clip(np.ceil((q + half) * 2.0**32), 0, 2.0**32 - 1)
    return lo.astype(np.uint32), hi.astype(np.uint32)


def _drop_exact_nb(key, offsets, n_drop, lo, hi, keep, band_key, band_pos):
    for s in range(len(offsets) - 1):
        a = offsets[s]
        b = offsets[s + 1]
        k = n_drop[s]
        if k <= 0:
            keep[a:b] = True
            continue
        if k >= b - a:
            keep[a:b] = False
            continue
        low = lo[s]
        high = hi[s]
        below = 0
        mu = np.uint64(0)  # unsigned: no wrap-around checks on the band writes
        for i in range(a, b):  # branch-free: the three cases are unpredictable
            v = key[i]
            below += v < low
            band_key[mu] = v
            band_pos[mu] = i
            mu += np.uint64((v >= low) & (v <= high))
        m = np.int64(mu)
        if below > k or below + m < k:  # the band missed: rank the whole sample
            low = np.uint32(0)
            below = 0
            m = 0
            for i in range(a, b):
                band_key[m] = key[i]
                band_pos[m] = i
                m += 1
        for i in range(np.uint64(a), np.uint64(b)):
            keep[i] = key[i] >= low
        need = k - below
        if need <= 0:
            continue
        # the need-th smallest band key, then drop the keys under it and the first ties
        cut = np.partition(band_key[:m], need - 1)[need - 1]
        ties = need
        for j in range(m):
            ties -= band_key[j] < cut
        for j in range(m):
            v = band_key[j]
            if v < cut:
                keep[band_pos[j]] = False
            elif v == cut and ties > 0:
                keep[band_pos[j]] = False
                ties -= 1


_drop_exact_jit = _jit(_drop_exact_nb)


def _drop_exact_np(key, offsets, n_drop, lo, hi):
    counts = np.diff(offsets)
    B = len(counts)
    full = (n_drop <= 0) | (n_drop >= counts)  # keep all / drop all: no ranking
    part = ~full
    if not part.any():
        return np.repeat(n_drop <= 0, counts)
    # one band for all samples when the per-sample bands nearly coincide (a fixed ratio)
    lo_p, hi_p = lo[part].astype(np.int64), hi[part].astype(np.int64)
    if hi_p.max() - lo_p.min() <= 2 * (hi_p - lo_p).max() + 2**24:
        lo_e, hi_e = np.uint32(lo_p.min()), np.uint32(hi_p.max())
    else:
        lo_e, hi_e = np.repeat(lo, counts), np.repeat(hi, counts)
    below = key < lo_e
    inband = key <= hi_e
    inband &= ~below
    n_below = np.diff(np.searchsorted(np.flatnonzero(below), offsets))
    band = np.flatnonzero(inband)
    n_band = np.diff(np.searchsorted(band, offsets))
    missed = part & ((n_below > n_drop) | (n_below + n_band < n_drop))
    if missed.any():  # rank every event of those samples
        whole = ranges(offsets[:-1][missed], offsets[1:][missed])
        below[whole] = False
        n_below[missed] = 0
        band = np.union1d(band, whole)
        n_band = np.diff(np.searchsorted(band, offsets))
    keep = ~below
    if len(band):
        seg = np.repeat(np.arange(B, dtype=np.int64), n_band)
        order = _stable_argsort((seg << 32) | key[band], B << 32)  # by sample, key, position
        rank = np.arange(len(band)) - np.repeat(np.cumsum(n_band) - n_band, n_band)
        drop = rank < (n_drop - n_below)[seg]
        keep[band[order[drop]]] = False
    if full.any():
        keep[ranges(offsets[:-1][full], offsets[1:][full])] = np.repeat(n_drop[full] <= 0, counts[full])
    return keep


def drop_exact(key, offsets, n_drop) -> np.ndarray:
    """Keep mask dropping the ``n_drop[s]`` events of sample ``s`` with the smallest (key, position).

    ``key`` holds uniform random uint32, one per event: the dropped subset
    of each sample is uniform, and both backends drop the same events.
    """
    n = len(key)
    if n == 0:
        return np.ones(0, np.bool_)
    counts = np.diff(offsets)
    n_drop = np.clip(np.asarray(n_drop, np.int64), 0, counts)
    lo, hi = _drop_band(counts, n_drop)
    if _nb():
        keep = np.empty(n, np.bool_)
        m = int(counts.max()) + 1
        _drop_exact_jit(key, offsets, n_drop, lo, hi, keep, np.empty(m, np.uint32), np.empty(m, np.int64))
        return keep
    return _drop_exact_np(key, offsets, n_drop, lo, hi)


def random_keys(rng, n) -> np.ndarray:
    """``n`` uniform uint32 from ``rng`` (each raw 64-bit output split in two when it has 64 bits)."""
    bg = rng.bit_generator
    if isinstance(bg, (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)):
        return bg.random_raw((n + 1) // 2).view(np.uint32)[:n]
    return rng.integers(0, 2**32, n, dtype=np.uint32)


# ---------------------------------------------------------------------------
# per-event arithmetic: Downsample, TimeSkew, TimeJitter; merging: UniformNoise
# ---------------------------------------------------------------------------
_BLOCK = 1 << 15  # events per step of the numpy twins: their float temporaries stay in cache


def _affine_nb(src, factor, offset, out):
    for i in range(len(src)):
        out[i] = np.int64(src[i] * factor + offset)  # truncated toward 0, then wrapped into out's dtype


_affine_jit = _jit(_affine_nb)


def affine(src, factor, offset, dtype) -> np.ndarray:
    """``src * factor + offset`` in float64, truncated toward zero, as ``dtype`` (what ``astype`` gives)."""
    out = np.empty(len(src), dtype)
    factor, offset = float(factor), float(offset)
    if _nb():
        _affine_jit(src, factor, offset, out)
        return out
    buf = np.empty(min(len(src), _BLOCK), np.float64)
    for a in range(0, len(src), _BLOCK):
        b = min(a + _BLOCK, len(src))
        step = buf[:b - a]
        np.multiply(src[a:b], factor, out=step)
        if offset:
            step += offset
        np.copyto(out[a:b], step, casting="unsafe")
    return out


def _jitter_nb(t, noise, std, out):
    lowest = np.int64(0)
    for i in range(len(t)):
        v = t[i] + np.int64(np.rint(noise[i] * std))
        out[i] = v
        lowest = min(lowest, v)  # a min reduction vectorises, an "any" flag does not
    return lowest < 0


_jitter_jit = _jit(_jitter_nb)


def jitter_times(t, noise, std):
    """``t + rint(noise * std)`` (float32 noise and product) and whether any result is negative."""
    out = np.empty(len(t), np.int64)
    std = np.float32(std)
    if _nb():
        return out, bool(_jitter_jit(t, noise, std, out))
    buf = np.empty(min(len(t), _BLOCK), np.float32)
    negative = False
    for a in range(0, len(t), _BLOCK):
        b = min(a + _BLOCK, len(t))
        step = buf[:b - a]
        np.multiply(noise[a:b], std, out=step)
        np.rint(step, out=step)
        np.add(t[a:b], step.astype(np.int64), out=out[a:b])
        negative = negative or bool(out[a:b].min() < 0)
    return out, negative


def _spatial_jitter_nb(x, y, g, l00, l01, l10, l11, W, H, nx, ny, inside):
    outside = 0
    for i in range(len(x)):
        g0 = g[i, 0]
        g1 = g[i, 1]
        xi = np.int64(x[i]) + np.int64(np.rint(g0 * l00 + g1 * l01))
        yi = np.int64(y[i]) + np.int64(np.rint(g0 * l10 + g1 * l11))
        ok = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        inside[i] = ok
        outside += not ok
        nx[i] = min(max(xi, 0), W - 1)
        ny[i] = min(max(yi, 0), H - 1)
    return outside


_spatial_jitter_jit = _jit(_spatial_jitter_nb)


def spatial_jitter(x, y, g, L, W, H):
    """Coordinates moved by ``rint(g @ L.T)`` and clamped to the sensor, plus the mask of
    events that stayed on it (None when all did). ``g`` is ``(n, 2)`` float64."""
    n = len(x)
    nx, ny = np.empty(n, np.uint16), np.empty(n, np.uint16)
    inside = np.empty(n, np.bool_)
    (l00, l01), (l10, l11) = (float(v) for v in L[0]), (float(v) for v in L[1])
    if _nb():
        outside = _spatial_jitter_jit(x, y, g, l00, l01, l10, l11, W, H, nx, ny, inside)
        return nx, ny, (inside if outside else None)
    # in float64 blocks: integer coordinates plus rounded moves are exact there
    outside = False
    z = np.empty(min(n, _BLOCK))
    zz = np.empty(min(n, _BLOCK))
    for a in range(0, n, _BLOCK):
        b = min(a + _BLOCK, n)
        m = b - a
        g0, g1 = g[a:b, 0], g[a:b, 1]
        ok = inside[a:b]
        for col, src, c0, c1, size in ((nx, x, l00, l01, W), (ny, y, l10, l11, H)):
            v, w = z[:m], zz[:m]
            np.multiply(g0, c0, out=v)
            np.multiply(g1, c1, out=w)
            v += w
            np.rint(v, out=v)
            v += src[a:b]
            if col is nx:
                np.greater_equal(v, 0, out=ok)
            else:
                ok &= v >= 0
            ok &= v < size
            np.maximum(v, 0, out=v)
            np.minimum(v, size - 1, out=v)
            np.copyto(col[a:b], v, casting="unsafe")
        outside = outside or not ok.all()
    return nx, ny, (inside if outside else None)


def _boxes_nb(x, y, offsets, x0, y0, w, h, inside, dx, dy):
    # uint16 differences wrap below the box: one comparison per axis
    for s in range(len(offsets) - 1):
        bx = np.uint16(x0[s])
        by = np.uint16(y0[s])
        bw = np.uint16(w[s])
        bh = np.uint16(h[s])
        for i in range(np.uint64(offsets[s]), np.uint64(offsets[s + 1])):  # unsigned: no wrap checks
            u = np.uint16(x[i] - bx)
            v = np.uint16(y[i] - by)
            dx[i] = u
            dy[i] = v
            inside[i] = (u < bw) & (v < bh)


_boxes_jit = _jit(_boxes_nb)


def in_boxes(x, y, offsets, x0, y0, w, h):
    """Per-sample boxes ``x0 <= x < x0 + w``, ``y0 <= y < y0 + h`` (per-sample int arrays, boxes on uint16).

    Returns the inside mask and the coordinates relative to the box corner
    (``x - x0``, ``y - y0`` as uint16, wrapped for events left of or above it).
    """
    n = len(x)
    counts = np.diff(offsets)
    box = [np.asarray(v, np.int64).astype(np.uint16) for v in (x0, y0, w, h)]
    if _nb():
        inside = np.empty(n, np.bool_)
        dx, dy = np.empty(n, np.uint16), np.empty(n, np.uint16)
        _boxes_jit(x, y, offsets, *box, inside, dx, dy)
        return inside, dx, dy
    # a value shared by all samples stays a scalar (no per-event copy)
    ex, ey, ew, eh = (v[0] if len(v) and np.all(v == v[0]) else np.repeat(v, counts) for v in box)
    dx = np.subtract(x, ex, dtype=np.uint16)
    dy = np.subtract(y, ey, dtype=np.uint16)
    inside = dx < ew
    inside &= dy < eh
    return inside, dx, dy


def _in_intervals_nb(t, offsets, lo, hi, inside):
    for s in range(len(offsets) - 1):
        a = lo[s]
        b = hi[s]
        for i in range(np.uint64(offsets[s]), np.uint64(offsets[s + 1])):
            inside[i] = (t[i] >= a) & (t[i] <= b)


_in_intervals_jit = _jit(_in_intervals_nb)


def in_intervals(t, offsets, lo, hi) -> np.ndarray:
    """Mask of events with ``lo[s] <= t <= hi[s]`` in their sample ``s`` (int64 bounds)."""
    lo = np.asarray(lo, np.int64)
    hi = np.asarray(hi, np.int64)
    if _nb():
        inside = np.empty(len(t), np.bool_)
        _in_intervals_jit(t, offsets, lo, hi, inside)
        return inside
    counts = np.diff(offsets)
    # a bound shared by all samples stays a scalar (no per-event copy)
    lo_e, hi_e = (v[0] if len(v) and np.all(v == v[0]) else np.repeat(v, counts) for v in (lo, hi))
    inside = t >= lo_e
    inside &= t <= hi_e
    return inside


def _pixel_lookup_nb(x, y, table, W, out):
    Wu = np.uint64(W)
    for i in range(len(x)):
        out[i] = table[np.uint64(y[i]) * Wu + np.uint64(x[i])]


_pixel_lookup_jit = _jit(_pixel_lookup_nb)


def pixel_lookup(x, y, table, W) -> np.ndarray:
    """``table[y * W + x]`` for every event (``table`` a flat boolean pixel map)."""
    if _nb():
        out = np.empty(len(x), np.bool_)
        _pixel_lookup_jit(x, y, table, W, out)
        return out
    pix = y.astype(np.intp) * W
    pix += x
    return table[pix]


def _hot_nb(x, y, offsets, W, limit, count, hot):
    Wu = np.uint64(W)
    B = len(offsets) - 1
    for s in range(B):
        a = offsets[s]
        b = offsets[s + 1]
        for i in range(a, b):
            count[np.uint64(y[i]) * Wu + np.uint64(x[i])] += 1
        lim = limit[s]
        for i in range(a, b):
            hot[i] = count[np.uint64(y[i]) * Wu + np.uint64(x[i])] > lim
        if s < B - 1:
            _forget_jit(count, x, y, a, b, W, 0, 0)


_hot_jit = _jit(_hot_nb)


def hot_pixel_events(x, y, offsets, W, H, limit) -> np.ndarray:
    """Mask of events at pixels with more than ``limit[s]`` events in their sample ``s``."""
    n = len(x)
    limit = np.asarray(limit, np.float64)
    if _nb():
        hot = np.empty(n, np.bool_)
        _hot_jit(x, y, offsets, W, limit, np.zeros(W * H, np.int64), hot)
        return hot
    hot = np.empty(n, np.bool_)
    counts = np.diff(offsets)
    per = max(1, (1 << 22) // max(W * H, 1))  # samples per bincount: bounded memory
    for c0 in range(0, len(counts), per):
        c1 = min(c0 + per, len(counts))
        a, b = int(offsets[c0]), int(offsets[c1])
        if b <= a:
            continue
        local = np.repeat(np.arange(c1 - c0, dtype=np.intp), counts[c0:c1]) * (W * H)
        local += y[a:b].astype(np.intp) * W
        local += x[a:b]
        n_at = np.bincount(local, minlength=(c1 - c0) * W * H)
        hot_pixel = n_at > np.repeat(limit[c0:c1], W * H)  # per (sample, pixel), then per event
        hot[a:b] = hot_pixel[local]
    return hot


def sorted_within_samples(t, offsets) -> bool:
    """Whether ``t`` is non-decreasing inside every sample."""
    n = len(t)
    if n < 2:
        return True
    drop = t[1:] < t[:-1]
    cuts = offsets[1:-1]
    cuts = cuts[(cuts > 0) & (cuts < n)]
    drop[cuts - 1] = False  # a new sample may start earlier
    return not drop.any()


def _copy_run(src, dst, i, o, m):
    # unsigned indices: a plain loop numba vectorises
    for k in range(np.uint64(m)):
        dst[np.uint64(o) + k] = src[np.uint64(i) + k]


_copy_run_jit = _jit(_copy_run)


def _merge_nb(x, y, t, p, offsets, nx, ny, nt, np_, noffsets, ox, oy, ot, op):
    # per noise event: binary search of its place, then one block copy of the events before it
    o = 0
    for s in range(len(offsets) - 1):
        i = offsets[s]
        b = offsets[s + 1]
        for j in range(noffsets[s], noffsets[s + 1]):
            v = nt[j]
            lo = i
            hi = b
            while lo < hi:  # first event after v: at equal times the original comes first
                mid = (lo + hi) >> 1
                if t[mid] <= v:
                    lo = mid + 1
                else:
                    hi = mid
            m = lo - i
            _copy_run_jit(x, ox, i, o, m)
            _copy_run_jit(y, oy, i, o, m)
            _copy_run_jit(t, ot, i, o, m)
            _copy_run_jit(p, op, i, o, m)
            o += m
            i = lo
            ox[o] = nx[j]
            oy[o] = ny[j]
            ot[o] = v
            op[o] = np_[j]
            o += 1
        m = b - i
        _copy_run_jit(x, ox, i, o, m)
        _copy_run_jit(y, oy, i, o, m)
        _copy_run_jit(t, ot, i, o, m)
        _copy_run_jit(p, op, i, o, m)
        o += m


_merge_jit = _jit(_merge_nb)


def merge_sorted(cols, offsets, new_cols, new_offsets):
    """Merge time-sorted samples with time-sorted new events, sample by sample.

    ``cols`` and ``new_cols`` are ``(x, y, t, p)``; at equal times the
    original events come first. Returns the merged columns.
    """
    x, y, t, p = cols
    nx, ny, nt, np_ = new_cols
    total = len(t) + len(nt)
    out = tuple(np.empty(total, c.dtype) for c in cols)
    if _nb():
        _merge_jit(x, y, t, p, offsets, nx, ny, nt, np_, new_offsets, *out)
        return out
    counts = np.diff(new_offsets)
    sample = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    before = searchsorted_segments(t, offsets, sample, nt + 1)  # original events at or before
    is_new = np.zeros(total, np.bool_)
    is_new[before + np.arange(len(nt))] = True
    is_old = ~is_new
    for o, c, nc in zip(out, cols, new_cols):
        o[is_new] = nc
        o[is_old] = c
    return out


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
