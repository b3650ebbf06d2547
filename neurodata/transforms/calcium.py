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
    "oasis_ar1", "ar2_coefficients", "ar2_from_tau", "oasis_ar2", "deconvolve", "resample",
    "resample_to_times", "align_neurons", "downsample_movie", "crop_movie", "threshold_spikes",
    "poisson_spikes",
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


# ---- OASIS AR(2) ----------------------------------------------------------------------------
def ar2_coefficients(y: np.ndarray, sn: np.ndarray | None = None, lags: int = 10) -> np.ndarray:
    """AR(2) coefficients ``(g1, g2)`` per trace from the autocovariance (Yule-Walker).

    For c_t = g1 c_{t-1} + g2 c_{t-2} + s_t observed in white noise of variance
    sn^2, the autocovariance obeys acov(k) = g1 acov(k-1) + g2 acov(k-2) for
    k >= 1, where only acov(0) carries the noise (it is corrected by sn^2).
    The equations for k = 1..``lags`` + 2 are solved by least squares. Traces
    whose fit is not a stable decay with real roots fall back to AR(1)
    (``g2 = 0``, ``g1`` from :func:`ar1_coefficient`).

    Returns
    -------
    float64 array ``(..., 2)``.
    """
    y = np.asarray(y, np.float64)
    lead, T = y.shape[:-1], y.shape[-1]
    Y = y.reshape(-1, T)
    Y = Y - Y.mean(axis=-1, keepdims=True)
    sn_v = noise_level(Y) if sn is None else np.broadcast_to(np.asarray(sn, np.float64), (Y.shape[0],))
    K = int(lags) + 2
    ac = np.stack([(Y[:, k:] * Y[:, :T - k]).sum(-1) / T for k in range(K + 1)], axis=-1)
    ac[:, 0] -= sn_v ** 2
    k = np.arange(1, K + 1)
    x1, x2, rhs = ac[:, np.abs(k - 1)], ac[:, np.abs(k - 2)], ac[:, k]
    a11, a12, a22 = (x1 * x1).sum(-1), (x1 * x2).sum(-1), (x2 * x2).sum(-1)
    b1, b2 = (x1 * rhs).sum(-1), (x2 * rhs).sum(-1)
    det = a11 * a22 - a12 * a12
    with np.errstate(divide="ignore", invalid="ignore"):
        g1 = (a22 * b1 - a12 * b2) / det
        g2 = (a11 * b2 - a12 * b1) / det
    disc = g1 * g1 + 4 * g2
    with np.errstate(invalid="ignore"):
        d = (g1 + np.sqrt(disc)) / 2
        r = (g1 - np.sqrt(disc)) / 2
    ok = np.isfinite(g1) & np.isfinite(g2) & (disc >= 0) & (d > 0) & (d < 1) & (np.abs(r) < 1)
    if not ok.all():
        g1 = np.where(ok, g1, ar1_coefficient(Y))
        g2 = np.where(ok, g2, 0.0)
    return np.stack([g1, g2], axis=-1).reshape(*lead, 2)


def ar2_from_tau(tau_decay: float, tau_rise: float, fs: float) -> tuple[float, float]:
    """``(g1, g2)`` of a difference-of-exponentials kernel: roots exp(-1/(tau fs))."""
    d, r = math.exp(-1.0 / (tau_decay * fs)), math.exp(-1.0 / (tau_rise * fs))
    return d + r, -d * r


def _oasis2_core(y, g1, g2, lam, s_min, c, s):
    """Greedy pool-adjacent-violators for AR(2) (Friedrich et al. 2017, OASIS for AR(2)).

    A pool starting at t with first value v continues c_{t+k} = h_k v + g2 h_{k-1} W,
    W the previous pool's last value and h the AR(2) impulse response; v is the
    least-squares value with W held fixed. Each pool keeps A = sum h_k y'_{t+k} and
    B = sum h_{k-1} y'_{t+k}, so merging is O(1) through h_{a+k} = h_a h_k +
    g2 h_{a-1} h_{k-1}. The first pool decays as v d^k (d the larger root), its
    value from D = sum d^k y'_k. A pool merges into its predecessor while its
    spike (its v minus the predecessor's continuation) is below ``s_min``.
    Spikes are written where pools start, exact zeros elsewhere.
    """
    T = y.shape[0]
    d = (g1 + math.sqrt(g1 * g1 + 4.0 * g2)) / 2.0
    h = np.empty(T + 2)  # h[k + 1] = h_k, h[0] = h_{-1} = 0
    h[0] = 0.0
    h[1] = 1.0
    for k in range(2, T + 2):
        h[k] = g1 * h[k - 1] + g2 * h[k - 2]
    hh = np.empty(T + 1)  # hh[l] = sum_{k<l} h_k^2
    hh1 = np.empty(T + 1)  # hh1[l] = sum_{k<l} h_k h_{k-1}
    hh[0] = 0.0
    hh1[0] = 0.0
    for k in range(1, T + 1):
        hh[k] = hh[k - 1] + h[k] * h[k]
        hh1[k] = hh1[k - 1] + h[k] * h[k - 1]
    yp = np.empty(T)  # y minus the penalty's linear term
    for t in range(T):
        yp[t] = y[t] - lam * (1.0 - g1 - g2)
    if T >= 2:
        yp[T - 2] = y[T - 2] - lam * (1.0 - g1)
    yp[T - 1] = y[T - 1] - lam
    start = np.empty(T, np.int64)
    length = np.empty(T, np.int64)
    v = np.empty(T)
    w = np.empty(T)
    A = np.empty(T)
    B = np.empty(T)
    D = np.empty(T)
    dl = np.empty(T)  # d ** length
    start[0] = 0
    length[0] = 1
    A[0] = yp[0]
    B[0] = 0.0
    D[0] = yp[0]
    dl[0] = d
    v[0] = max(0.0, yp[0])
    w[0] = v[0]
    n = 1
    for t in range(1, T):
        start[n] = t
        length[n] = 1
        A[n] = yp[t]
        B[n] = 0.0
        D[n] = yp[t]
        dl[n] = d
        v[n] = yp[t]
        w[n] = yp[t]
        n += 1
        while n > 1:
            i = n - 1
            p = n - 2
            lp = length[p]
            if p >= 1:
                pred = h[lp + 1] * v[p] + g2 * h[lp] * w[p - 1]
            else:
                pred = d * w[0]
            if pred <= v[i] - s_min:
                break
            A[p] += h[lp + 1] * A[i] + g2 * h[lp] * B[i]
            B[p] += h[lp] * A[i] + g2 * h[lp - 1] * B[i]
            D[p] += dl[p] * D[i]
            dl[p] *= dl[i]
            L = lp + length[i]
            length[p] = L
            if p >= 1:
                W = w[p - 1]
                vv = (A[p] - g2 * W * hh1[L]) / hh[L]
                v[p] = vv
                w[p] = h[L] * vv + g2 * h[L - 1] * W
            else:
                vv = max(0.0, D[0] * (1.0 - d * d) / (1.0 - dl[0] * dl[0]))
                v[0] = vv
                w[0] = vv * dl[0] / d
            n -= 1
    val = v[0]
    for k in range(T):
        s[k] = 0.0
    for k in range(length[0]):
        c[k] = val
        val *= d
    for j in range(1, n):
        t0 = start[j]
        L = length[j]
        c[t0] = v[j]
        lq = length[j - 1]
        s[t0] = v[j] - (h[lq + 1] * v[j - 1] + g2 * h[lq] * w[j - 2] if j >= 2 else d * w[0])
        for k in range(t0 + 1, t0 + L - 1):
            c[k] = g1 * c[k - 1] + g2 * c[k - 2]
        if L > 1:
            c[t0 + L - 1] = w[j]


def _oasis2_batch(Y, G, lam, s_min, C, S):
    for i in range(Y.shape[0]):
        _oasis2_core(Y[i], G[i, 0], G[i, 1], lam[i], s_min[i], C[i], S[i])


if _numba is not None:
    _oasis2_core_nb = _numba.njit(cache=True, nogil=True)(_oasis2_core)

    @_numba.njit(cache=True, nogil=True, parallel=True)
    def _oasis2_batch_nb(Y, G, lam, s_min, C, S):  # pragma: no cover - compiled
        for i in _numba.prange(Y.shape[0]):
            _oasis2_core_nb(Y[i], G[i, 0], G[i, 1], lam[i], s_min[i], C[i], S[i])
else:  # pragma: no cover
    _oasis2_batch_nb = None


def _per_trace_pair(g, n: int) -> np.ndarray:
    a = np.asarray(g, np.float64)
    if a.shape == (2,):
        return np.broadcast_to(a, (n, 2)).copy()
    if a.shape == (n, 2):
        return a.copy()
    raise TransformError(f"deconvolve: AR(2) g must be (g1, g2) or one pair per trace, got shape {a.shape}")


def _check_ar2(G: np.ndarray, where: str) -> None:
    disc = G[:, 0] ** 2 + 4 * G[:, 1]
    with np.errstate(invalid="ignore"):
        d = (G[:, 0] + np.sqrt(disc)) / 2
        r = (G[:, 0] - np.sqrt(disc)) / 2
    bad = ~((disc >= 0) & (d > 0) & (d < 1) & (np.abs(r) < 1))
    if bad.any():
        k = int(np.argmax(bad))
        raise TransformError(f"{where}: (g1, g2) = ({G[k, 0]:.4g}, {G[k, 1]:.4g}) is not a stable "
                             "decay with real roots (need g1^2 + 4 g2 >= 0, roots in (-1, 1), larger > 0)")


def oasis_ar2(y: np.ndarray, g, lam=0.0, s_min=0.0, backend: str | None = None):
    """Solve the AR(2) non-negative deconvolution with OASIS for every trace.

    min 1/2 |c - y|^2 + lam |s|_1 with s_t = c_t - g1 c_{t-1} - g2 c_{t-2} either 0
    or at least ``s_min`` (the greedy AR(2) pooling of Friedrich, Zhou & Paninski
    2017; a rise-and-decay kernel resolves spike times that AR(1) smears).

    Parameters
    ----------
    y : array ``(..., time)``
        Baseline-subtracted fluorescence.
    g : ``(g1, g2)`` or array ``(n_traces, 2)``
        AR(2) coefficients; for rise/decay time constants see :func:`ar2_from_tau`.
    lam, s_min : float or array of one per trace
        L1 penalty and minimum spike size.
    backend : {"numba", "python"}, optional

    Returns
    -------
    (c, s): denoised calcium and spike amplitudes, float64, shape of ``y``
    (``s[..., :2]`` is 0: the first frames hold the initial condition); ``s`` is
    exactly 0 between spikes.
    """
    y = np.asarray(y, np.float64)
    lead, T = y.shape[:-1], y.shape[-1]
    Y = np.ascontiguousarray(y.reshape(-1, T))
    n = Y.shape[0]
    if T == 0:
        raise TransformError("oasis_ar2: traces are empty")
    if np.isnan(Y).any():
        raise TransformError("oasis_ar2: traces contain NaN; fill or drop them first")
    G = _per_trace_pair(g, n)
    _check_ar2(G, "oasis_ar2")
    C = np.empty_like(Y)
    S = np.empty_like(Y)
    use_nb = (backend or ("numba" if _USE_NUMBA else "python")) == "numba" and _oasis2_batch_nb is not None
    (_oasis2_batch_nb if use_nb else _oasis2_batch)(Y, G, _per_trace(lam, n, "lam"),
                                                     _per_trace(s_min, n, "s_min"), C, S)
    S[:, :2] = 0.0
    return C.reshape(*lead, T), S.reshape(*lead, T)


def _ar_order(g, tau, p) -> int:
    if p is not None:
        if p not in (1, 2):
            raise TransformError(f"deconvolve: p must be 1 or 2, got {p!r}")
        return int(p)
    if isinstance(g, tuple) and len(g) == 2 and all(np.ndim(v) == 0 for v in g):
        return 2
    if g is not None and np.ndim(g) == 2:
        return 2
    if g is None and isinstance(tau, (tuple, list)) and len(tau) == 2:
        return 2
    return 1


def deconvolve(traces: np.ndarray, fs: float | None = None, tau=None, g=None,
               sn=None, baseline="auto", lam=0.0, s_min=None, s_min_sn: float = 0.0,
               refine_baseline: bool = True, backend: str | None = None,
               p: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Infer spikes of every trace with OASIS AR(1) or AR(2), estimating what is not given.

    Parameters
    ----------
    traces : array ``(roi, time)``
        Fluorescence or dF/F (the baseline need not be zero).
    fs : float, optional
        Sampling rate (Hz), needed with ``tau``.
    tau : float or ``(tau_decay, tau_rise)``, optional
        Indicator time constant(s) in s: AR(1) ``g = exp(-1/(tau fs))``; a pair
        gives the AR(2) kernel with roots ``exp(-1/(tau_decay fs))`` and
        ``exp(-1/(tau_rise fs))``. Without ``tau`` or ``g`` the coefficients are
        estimated per trace from the autocovariance.
    g : float, array, ``(g1, g2)`` or array ``(roi, 2)``, optional
        AR coefficient(s), overriding ``tau``. A tuple ``(g1, g2)`` or a
        ``(roi, 2)`` array selects AR(2); a list or 1-d array is one AR(1) ``g`` per
        trace (pass ``p`` to disambiguate).
    p : {1, 2}, optional
        AR order; by default inferred from ``g`` / ``tau`` (1 when neither is given).
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
    per-trace ``g`` (``(roi, 2)`` for AR(2)), ``sn``, ``baseline`` and ``s_min`` used.
    """
    y = np.asarray(traces, np.float64)
    squeeze = y.ndim == 1
    Y = y.reshape(-1, y.shape[-1])
    n = Y.shape[0]
    order = _ar_order(g, tau, p)
    sn_v = noise_level(Y) if sn is None else _per_trace(sn, n, "sn")
    if isinstance(baseline, str):
        if baseline != "auto":
            raise TransformError(f"deconvolve: unknown baseline {baseline!r}")
        b = np.minimum(np.percentile(Y, 10, axis=-1) + 1.2816 * sn_v, np.median(Y, axis=-1))
    else:
        b = _per_trace(baseline, n, "baseline")
    Yb = Y - b[:, None]
    if order == 1:
        if g is not None:
            g_v = _per_trace(g, n, "g")
        elif tau is not None and fs:
            if np.ndim(tau) != 0:
                raise TransformError("deconvolve: p=1 takes one tau (a (decay, rise) pair is AR(2))")
            g_v = np.full(n, math.exp(-1.0 / (tau * fs)))
        else:
            g_v = ar1_coefficient(Yb)
        g_v = np.clip(g_v, 1e-3, 0.9999)
        solve = oasis_ar1
    else:
        if g is not None:
            g_v = _per_trace_pair(g, n)
        elif tau is not None and fs:
            if np.ndim(tau) != 1 or len(tau) != 2:
                raise TransformError("deconvolve: AR(2) needs tau=(tau_decay, tau_rise)")
            g_v = _per_trace_pair(ar2_from_tau(float(tau[0]), float(tau[1]), fs), n)
        else:
            g_v = ar2_coefficients(Yb, sn_v)
        solve = oasis_ar2
    smin_v = (s_min_sn * sn_v) if s_min is None else _per_trace(s_min, n, "s_min")
    C, S = solve(Yb, g_v, lam, smin_v, backend=backend)
    if refine_baseline and isinstance(baseline, str):
        # the least-squares baseline given the fitted calcium, then one more solve
        b = b + (Yb - C).mean(axis=-1)
        Yb = Y - b[:, None]
        C, S = solve(Yb, g_v, lam, smin_v, backend=backend)
    shape = y.shape
    info = {"method": f"OASIS AR({order})", "g": g_v, "sn": sn_v, "baseline": b, "s_min": smin_v,
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
