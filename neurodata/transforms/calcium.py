"""Calcium-imaging trace transforms: neuropil, dF/F, OASIS deconvolution, resampling, alignment.

All functions take ``(roi, time)`` arrays (any leading shape, time last) and
work on every trace at once; the OASIS solver is sequential per trace by
nature and runs as a numba kernel parallel over traces (a plain Python twin
runs when numba is absent or ``NEURODATA_NO_NUMBA=1``).

References: Friedrich, Zhou & Paninski 2017, "Fast online deconvolution of
calcium imaging data" (OASIS), PLoS Comput Biol 13:e1005423; Pachitariu et al.
2017 (suite2p neuropil coefficient 0.7, maximin baseline).
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Sequence

import numpy as np

from neurodata.errors import TransformError

try:  # numba is optional (the ``fast`` extra)
    import numba as _numba
except ImportError:  # pragma: no cover
    _numba = None

_USE_NUMBA = _numba is not None and os.environ.get("NEURODATA_NO_NUMBA", "") in ("", "0")

__all__ = [
    "neuropil_subtract", "rolling_baseline", "dff", "noise_level", "ar1_coefficient",
    "oasis_ar1", "deconvolve", "resample", "resample_to_times", "align_neurons",
    "downsample_movie", "crop_movie", "threshold_spikes", "poisson_spikes",
]


# ---- neuropil and baseline ------------------------------------------------------------------
def neuropil_subtract(F: np.ndarray, Fneu: np.ndarray, coefficient: float = 0.7) -> np.ndarray:
    """``F - coefficient * Fneu`` (suite2p's default coefficient is 0.7), as float32."""
    F = np.asarray(F, np.float32)
    Fneu = np.asarray(Fneu, np.float32)
    if F.shape != Fneu.shape:
        raise TransformError(f"neuropil_subtract: F {F.shape} and Fneu {Fneu.shape} differ")
    return F - np.float32(coefficient) * Fneu


def rolling_baseline(x: np.ndarray, window: int, method: str = "percentile", percentile: float = 8.0,
                     hop: int | None = None, sigma: float | None = None,
                     block_bytes: int = 64 << 20) -> np.ndarray:
    """Slowly varying baseline F0 of each trace (time on the last axis).

    Parameters
    ----------
    x : array, ``(..., time)``
    window : int
        Window length in samples (centred; edges mirror the trace, repeating the edge sample).
    method : {"percentile", "median", "maximin"}
        ``percentile``: the ``percentile``-th value in the window;
        ``median``: the windowed median; ``maximin``: suite2p's baseline
        (Gaussian smoothing by ``sigma`` samples, then a running minimum and a
        running maximum over ``window``).
    hop : int, optional
        Percentile/median are evaluated every ``hop`` samples and linearly
        interpolated in between (default ``window // 20``; 1 is exact).
    block_bytes : int
        Memory bound for the window stack (traces are processed in blocks).

    Returns
    -------
    float32 array of the shape of ``x``.
    """
    x = np.asarray(x, np.float32)
    T = x.shape[-1]
    window = int(max(1, min(window, T)))
    if method == "maximin":
        from scipy.ndimage import gaussian_filter1d, maximum_filter1d, minimum_filter1d

        s = gaussian_filter1d(x, sigma if sigma is not None else max(1.0, window / 60), axis=-1,
                              mode="reflect")
        s = minimum_filter1d(s, window, axis=-1, mode="reflect")
        return maximum_filter1d(s, window, axis=-1, mode="reflect").astype(np.float32)
    if method not in ("percentile", "median"):
        raise TransformError(f"rolling_baseline: unknown method {method!r}")
    q = 50.0 if method == "median" else float(percentile)
    hop = int(max(1, hop if hop is not None else window // 20))
    lead = x.shape[:-1]
    flat = x.reshape(-1, T)
    half = window // 2
    pad_mode = "symmetric"  # edge sample repeated, as scipy.ndimage's mode="reflect"
    centres = np.arange(0, T + hop - 1, hop)
    centres = np.minimum(centres, T - 1)
    if centres[-1] != T - 1:
        centres = np.append(centres, T - 1)
    rows_per_block = max(1, block_bytes // max(1, len(centres) * window * 4))
    out = np.empty_like(flat)
    pos = np.arange(T)
    seg = np.searchsorted(centres, pos, side="right") - 1
    seg = np.clip(seg, 0, max(len(centres) - 2, 0))
    if len(centres) > 1:
        frac = ((pos - centres[seg]) / np.maximum(centres[seg + 1] - centres[seg], 1)).astype(np.float32)
    else:
        frac = np.zeros(T, np.float32)
    for r0 in range(0, flat.shape[0], rows_per_block):
        blk = flat[r0:r0 + rows_per_block]
        padded = np.pad(blk, ((0, 0), (half, window - 1 - half)), mode=pad_mode)
        wins = np.lib.stride_tricks.sliding_window_view(padded, window, axis=-1)[:, centres]
        b = np.percentile(wins, q, axis=-1).astype(np.float32)
        if len(centres) > 1:
            out[r0:r0 + rows_per_block] = b[:, seg] * (1 - frac) + b[:, seg + 1] * frac
        else:
            out[r0:r0 + rows_per_block] = b[:, :1]
    return out.reshape(*lead, T)


def dff(F: np.ndarray, fs: float, Fneu: np.ndarray | None = None, neuropil_coefficient: float = 0.7,
        method: str = "percentile", window_s: float = 60.0, percentile: float = 8.0,
        hop: int | None = None, min_baseline: float | None = None) -> tuple[np.ndarray, dict]:
    """dF/F = (Fc - F0) / F0 with Fc the neuropil-corrected trace and F0 its rolling baseline.

    Parameters
    ----------
    F : array ``(roi, time)``
    fs : float
        Sampling rate (Hz); the window is ``window_s`` seconds.
    Fneu : array, optional
        Neuropil traces; subtracted with ``neuropil_coefficient`` when given.
    method, percentile, hop
        See :func:`rolling_baseline`.
    min_baseline : float, optional
        F0 is clipped from below to this (default: 1e-3 of each trace's
        median absolute F) so dim or over-subtracted ROIs do not divide by ~0.

    Returns
    -------
    (dff float32 array, info dict) - ``info`` records the method and its
    parameters, ready to store as the ``dff`` trace's provenance attributes.
    """
    Fc = neuropil_subtract(F, Fneu, neuropil_coefficient) if Fneu is not None else np.asarray(F, np.float32)
    window = max(1, int(round(window_s * fs)))
    F0 = rolling_baseline(Fc, window, method=method, percentile=percentile, hop=hop)
    if min_baseline is None:
        floor = (1e-3 * np.median(np.abs(np.asarray(F, np.float32)), axis=-1, keepdims=True)).astype(np.float32)
        floor = np.maximum(floor, np.float32(1e-6))
    else:
        floor = np.float32(min_baseline)
    clipped = int(np.count_nonzero(F0 < floor))
    F0 = np.maximum(F0, floor)
    out = ((Fc - F0) / F0).astype(np.float32)
    info = {"method": f"dff/{method}", "baseline": method, "window_s": float(window_s),
            "percentile": float(percentile) if method == "percentile" else None,
            "neuropil_coefficient": float(neuropil_coefficient) if Fneu is not None else None,
            "baseline_samples_clipped": clipped}
    return out, info


# ---- noise and AR(1) parameters -------------------------------------------------------------
def noise_level(y: np.ndarray, range_ff: tuple[float, float] = (0.25, 0.5)) -> np.ndarray:
    """Noise standard deviation of each trace from its high-frequency power spectrum.

    White noise of variance s^2 has a flat one-sided density 2 s^2 (for a unit
    sampling rate); calcium transients put little power above a quarter of the
    sampling rate, so the mean density in ``range_ff`` (fractions of fs)
    estimates ``2 s^2``.
    """
    from scipy.signal import welch

    y = np.asarray(y, np.float64)
    nper = min(y.shape[-1], 256)
    f, p = welch(y, fs=1.0, nperseg=nper, axis=-1, detrend="constant")
    sel = (f > range_ff[0]) & (f <= range_ff[1])
    return np.sqrt(p[..., sel].mean(axis=-1) / 2.0)


def ar1_coefficient(y: np.ndarray, sn: np.ndarray | None = None, max_lag: int = 3) -> np.ndarray:
    """AR(1) decay ``g`` per trace from the autocovariance at lags 1..``max_lag``.

    For c_t = g c_{t-1} + s_t observed in white noise, acov(k) = var(c) g^k for
    k >= 1; ``g`` is the least-squares slope of log acov(k) on k.
    """
    y = np.asarray(y, np.float64)
    y = y - y.mean(axis=-1, keepdims=True)
    T = y.shape[-1]
    ac = np.stack([(y[..., k:] * y[..., :T - k]).sum(-1) / T for k in range(1, max_lag + 1)], axis=-1)
    ac = np.maximum(ac, 1e-12 * np.maximum(ac[..., :1], 1e-30))
    k = np.arange(1, max_lag + 1, dtype=np.float64)
    kc = k - k.mean()
    slope = (np.log(ac) * kc).sum(-1) / (kc ** 2).sum()
    return np.clip(np.exp(slope), 0.0, 0.9999)


# ---- OASIS AR(1) ----------------------------------------------------------------------------
def _oasis_core(y, g, lam, s_min, c):
    """Pool-adjacent-violators for min 1/2|c-y|^2 + lam|s|_1, s_t = c_t - g c_{t-1} >= s_min or 0.

    Pools are kept on stacks: ``val`` holds sum_k g^k y'_{t+k}, ``wt`` holds
    sum_k g^2k, so the pool's first value is val/wt and merging adds the later
    pool scaled by g^len. ``y'`` is ``y`` minus the penalty's linear term.
    """
    T = y.shape[0]
    val = np.empty(T)
    wt = np.empty(T)
    start = np.empty(T, np.int64)
    length = np.empty(T, np.int64)
    glen = np.empty(T)  # g ** length, updated by products on merge (no pow in the loop)
    n = 0
    for t in range(T):
        val[n] = y[t] - lam * (1.0 if t == T - 1 else (1.0 - g))
        wt[n] = 1.0
        start[n] = t
        length[n] = 1
        glen[n] = g
        n += 1
        while n > 1:
            gl = glen[n - 2]
            if val[n - 2] / wt[n - 2] * gl + s_min > val[n - 1] / wt[n - 1]:
                val[n - 2] += val[n - 1] * gl
                wt[n - 2] += wt[n - 1] * gl * gl
                length[n - 2] += length[n - 1]
                glen[n - 2] = gl * glen[n - 1]
                n -= 1
            else:
                break
    for j in range(n):
        v = val[j] / wt[j]
        if (j == 0 and v < 0.0) or (j > 0 and v < s_min):
            v = 0.0
        for k in range(length[j]):
            c[start[j] + k] = v
            v *= g


def _oasis_batch(Y, g, lam, s_min, C):
    for i in range(Y.shape[0]):
        _oasis_core(Y[i], g[i], lam[i], s_min[i], C[i])


if _numba is not None:
    _oasis_core_nb = _numba.njit(cache=True, nogil=True)(_oasis_core)

    @_numba.njit(cache=True, nogil=True, parallel=True)
    def _oasis_batch_nb(Y, g, lam, s_min, C):  # pragma: no cover - compiled
        for i in _numba.prange(Y.shape[0]):
            _oasis_core_nb(Y[i], g[i], lam[i], s_min[i], C[i])
else:  # pragma: no cover
    _oasis_batch_nb = None


def _per_trace(v, n: int, name: str) -> np.ndarray:
    a = np.broadcast_to(np.asarray(v, np.float64), (n,)).copy() if np.ndim(v) <= 1 else None
    if a is None or a.shape != (n,):
        raise TransformError(f"deconvolve: {name} must be a scalar or one value per trace")
    return a


def oasis_ar1(y: np.ndarray, g, lam=0.0, s_min=0.0, backend: str | None = None):
    """Solve the AR(1) non-negative deconvolution exactly (OASIS) for every trace.

    Parameters
    ----------
    y : array ``(..., time)``
        Baseline-subtracted fluorescence.
    g : float or array of one per trace
        AR(1) decay per frame, ``exp(-1 / (tau * fs))``.
    lam : float or array
        L1 sparsity penalty.
    s_min : float or array
        Minimum spike size: each spike is 0 or at least ``s_min``.
    backend : {"numba", "python"}, optional

    Returns
    -------
    (c, s): denoised calcium and spike amplitudes, float64, shape of ``y``
    (``s[..., 0]`` is 0: the first frame's calcium is the initial condition).
    """
    y = np.asarray(y, np.float64)
    lead, T = y.shape[:-1], y.shape[-1]
    Y = np.ascontiguousarray(y.reshape(-1, T))
    n = Y.shape[0]
    if np.isnan(Y).any():
        raise TransformError("oasis_ar1: traces contain NaN; fill or drop them first")
    gs = _per_trace(g, n, "g")
    if np.any((gs <= 0) | (gs >= 1)):
        raise TransformError("oasis_ar1: g must lie in (0, 1)")
    C = np.empty_like(Y)
    use_nb = (backend or ("numba" if _USE_NUMBA else "python")) == "numba" and _oasis_batch_nb is not None
    (_oasis_batch_nb if use_nb else _oasis_batch)(Y, gs, _per_trace(lam, n, "lam"),
                                                   _per_trace(s_min, n, "s_min"), C)
    S = np.empty_like(C)
    S[:, 0] = 0.0
    S[:, 1:] = C[:, 1:] - gs[:, None] * C[:, :-1]
    return C.reshape(*lead, T), S.reshape(*lead, T)


def deconvolve(traces: np.ndarray, fs: float | None = None, tau: float | None = None, g=None,
               sn=None, baseline="auto", lam=0.0, s_min=None, s_min_sn: float = 0.0,
               refine_baseline: bool = True, backend: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Infer spikes of every trace with OASIS AR(1), estimating what is not given.

    Parameters
    ----------
    traces : array ``(roi, time)``
        Fluorescence or dF/F (the baseline need not be zero).
    fs, tau : float, optional
        Sampling rate (Hz) and indicator decay time (s); ``g = exp(-1/(tau fs))``.
        Without them ``g`` is estimated per trace from the autocovariance.
    g : float or array, optional
        AR(1) coefficient(s), overriding ``tau``.
    sn : float or array, optional
        Noise level(s); estimated from the power spectrum when absent.
    baseline : "auto", float or array
        Subtracted before deconvolution. ``"auto"``: the 10th percentile
        shifted up by 1.2816 sn (the 10th percentile of baseline noise), valid
        when at least a tenth of the samples are at rest.
    refine_baseline : bool
        With ``baseline="auto"``: after a first solve, set the baseline to the
        mean residual (its least-squares value given the fitted calcium) and
        solve again.
    lam : float
        L1 penalty.
    s_min : float or array, optional
        Minimum spike size; default ``s_min_sn * sn``.

    Returns
    -------
    (spikes float32, calcium float32, info) where ``info`` holds the
    per-trace ``g``, ``sn``, ``baseline`` and ``s_min`` used.
    """
    y = np.asarray(traces, np.float64)
    squeeze = y.ndim == 1
    Y = y.reshape(-1, y.shape[-1])
    n = Y.shape[0]
    sn_v = noise_level(Y) if sn is None else _per_trace(sn, n, "sn")
    if isinstance(baseline, str):
        if baseline != "auto":
            raise TransformError(f"deconvolve: unknown baseline {baseline!r}")
        b = np.minimum(np.percentile(Y, 10, axis=-1) + 1.2816 * sn_v, np.median(Y, axis=-1))
    else:
        b = _per_trace(baseline, n, "baseline")
    Yb = Y - b[:, None]
    if g is not None:
        g_v = _per_trace(g, n, "g")
    elif tau is not None and fs:
        g_v = np.full(n, math.exp(-1.0 / (tau * fs)))
    else:
        g_v = ar1_coefficient(Yb)
    g_v = np.clip(g_v, 1e-3, 0.9999)
    smin_v = (s_min_sn * sn_v) if s_min is None else _per_trace(s_min, n, "s_min")
    C, S = oasis_ar1(Yb, g_v, lam, smin_v, backend=backend)
    if refine_baseline and isinstance(baseline, str):
        # the least-squares baseline given the fitted calcium, then one more solve
        b = b + (Yb - C).mean(axis=-1)
        Yb = Y - b[:, None]
        C, S = oasis_ar1(Yb, g_v, lam, smin_v, backend=backend)
    shape = y.shape
    info = {"method": "OASIS AR(1)", "g": g_v, "sn": sn_v, "baseline": b, "s_min": smin_v,
            "lam": float(lam)}
    S = S.astype(np.float32).reshape(shape)
    C = C.astype(np.float32).reshape(shape)
    if squeeze:
        info = {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in info.items()}
    return S, C, info


# ---- resampling -----------------------------------------------------------------------------
def resample(traces: np.ndarray, fs_in: float, fs_out: float, method: str = "polyphase",
             max_denominator: int = 1000) -> np.ndarray:
    """Resample traces (time last) from ``fs_in`` to ``fs_out`` Hz.

    ``polyphase`` filters against aliasing (scipy ``resample_poly`` with the
    rate ratio as a fraction); ``linear`` interpolates sample times
    ``k / fs`` (no filtering; use it for upsampling or smooth traces).
    The output has ``floor(T * fs_out / fs_in)`` samples for ``linear`` and
    ``ceil(T * up / down)`` for ``polyphase``.
    """
    x = np.asarray(traces, np.float32)
    if fs_in <= 0 or fs_out <= 0:
        raise TransformError("resample: rates must be positive")
    if method == "polyphase":
        from scipy.signal import resample_poly

        frac = Fraction(fs_out / fs_in).limit_denominator(max_denominator)
        if frac.numerator == frac.denominator:
            return x.copy()
        return resample_poly(x, frac.numerator, frac.denominator, axis=-1, padtype="line").astype(np.float32)
    if method == "linear":
        T = x.shape[-1]
        t_out = np.arange(int(math.floor((T - 1) * fs_out / fs_in)) + 1) / fs_out
        return resample_to_times(x, np.arange(T) / fs_in, t_out)
    raise TransformError(f"resample: unknown method {method!r}")


def resample_to_times(traces: np.ndarray, t_in: np.ndarray, t_out: np.ndarray) -> np.ndarray:
    """Linear interpolation of every trace from times ``t_in`` to ``t_out`` (NaN outside)."""
    x = np.asarray(traces, np.float32)
    t_in = np.asarray(t_in, np.float64)
    t_out = np.asarray(t_out, np.float64)
    if t_in.shape != x.shape[-1:]:
        raise TransformError(f"resample_to_times: {t_in.shape[0]} times for {x.shape[-1]} samples")
    if np.any(np.diff(t_in) <= 0):
        raise TransformError("resample_to_times: input times must increase")
    j = np.clip(np.searchsorted(t_in, t_out, side="right") - 1, 0, len(t_in) - 2)
    w = ((t_out - t_in[j]) / (t_in[j + 1] - t_in[j])).astype(np.float32)
    out = x[..., j] * (1 - w) + x[..., j + 1] * w
    outside = (t_out < t_in[0]) | (t_out > t_in[-1])
    out[..., outside] = np.nan
    return out.astype(np.float32)


# ---- canonical neuron ordering --------------------------------------------------------------
def align_neurons(traces: Sequence[np.ndarray], names: Sequence[Sequence[str]],
                  canonical: Sequence[str] | None = None, fill: float = np.nan):
    """Put recordings' neurons into one canonical order with a missing-neuron mask.

    Different animals identify different subsets of neurons (whole-brain
    C. elegans imaging names each identified neuron); models want one
    ``(recording, neuron, time)`` array where neuron ``k`` is the same cell
    everywhere.

    Parameters
    ----------
    traces : sequence of arrays ``(roi_i, time_i)``
    names : sequence of name lists, one name per row of each array
        Unidentified ROIs may be named ``""`` or ``None``; they are dropped.
    canonical : sequence of str, optional
        The neuron order (default: sorted union of all names). Names not in it are dropped.
    fill : float
        Value for missing neurons and for time beyond a recording's end.

    Returns
    -------
    (canonical_names, data, present): ``data`` float32 ``(n_rec, n_neuron, max_time)``,
    ``present`` bool ``(n_rec, n_neuron)``.
    """
    if len(traces) != len(names):
        raise TransformError("align_neurons: one name list per recording is needed")
    clean = []
    for i, (tr, nm) in enumerate(zip(traces, names)):
        nm = ["" if v is None else str(v) for v in nm]
        if np.shape(tr)[0] != len(nm):
            raise TransformError(f"align_neurons: recording {i} has {np.shape(tr)[0]} rows and "
                                 f"{len(nm)} names")
        named = [v for v in nm if v]
        if len(set(named)) != len(named):
            dup = sorted({v for v in named if named.count(v) > 1})
            raise TransformError(f"align_neurons: recording {i} repeats neuron names {dup[:5]}")
        clean.append(nm)
    if canonical is None:
        canonical = sorted({v for nm in clean for v in nm if v})
    canonical = list(canonical)
    index = {v: k for k, v in enumerate(canonical)}
    n_t = max((np.shape(t)[1] for t in traces), default=0)
    data = np.full((len(traces), len(canonical), n_t), fill, np.float32)
    present = np.zeros((len(traces), len(canonical)), bool)
    for i, (tr, nm) in enumerate(zip(traces, clean)):
        rows = np.array([r for r, v in enumerate(nm) if v in index], np.int64)
        cols = np.array([index[nm[r]] for r in rows], np.int64)
        if len(rows):
            tr = np.asarray(tr, np.float32)
            data[i, cols, :tr.shape[1]] = tr[rows]
            present[i, cols] = True
    return canonical, data, present


# ---- spike encoding -------------------------------------------------------------------------
def threshold_spikes(traces: np.ndarray, threshold) -> np.ndarray:
    """Binary spikes where each trace crosses ``threshold`` upwards (time last).

    ``threshold`` is a scalar or one value per trace (e.g. ``3 * noise_level(x)``);
    a trace starting above it spikes at sample 0.
    """
    x = np.asarray(traces, np.float32)
    th = np.asarray(threshold, np.float32)
    if th.ndim >= 1:
        th = th[..., None]
    above = x > th
    out = np.empty(x.shape, bool)
    out[..., 0] = above[..., 0]
    out[..., 1:] = above[..., 1:] & ~above[..., :-1]
    return out


def poisson_spikes(rates: np.ndarray, fs: float, rng: np.random.Generator | int,
                   max_rate: float | None = None) -> np.ndarray:
    """Bernoulli spike trains with probability ``rate / fs`` per sample (rate coding).

    ``rates`` (Hz, time last) are clipped at 0 and at ``max_rate`` (default
    ``fs``, one spike per sample). ``rng`` is a Generator or seed.
    """
    rng = np.random.default_rng(rng)
    r = np.clip(np.asarray(rates, np.float64), 0.0, fs if max_rate is None else max_rate)
    return rng.random(r.shape) < (r / fs)


# ---- movies ---------------------------------------------------------------------------------
def downsample_movie(movie: np.ndarray, factor: int | tuple[int, int]) -> np.ndarray:
    """Spatial block-mean downsampling of ``(..., y, x)`` by integer factors (edges cropped)."""
    fy, fx = (factor, factor) if np.isscalar(factor) else factor
    m = np.asarray(movie)
    Y, X = m.shape[-2] // fy * fy, m.shape[-1] // fx * fx
    m = m[..., :Y, :X]
    r = m.reshape(*m.shape[:-2], Y // fy, fy, X // fx, fx)
    return r.mean(axis=(-3, -1), dtype=np.float32)


def crop_movie(movie: np.ndarray, y: tuple[int, int], x: tuple[int, int]) -> np.ndarray:
    """Spatial crop ``[y0:y1, x0:x1]`` of ``(..., y, x)`` (a view)."""
    return np.asarray(movie)[..., y[0]:y[1], x[0]:x[1]]
