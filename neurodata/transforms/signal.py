"""Signal transforms for EEG/sEEG/iEEG: filters, resampling, references, scaling, augmentation.

Every function works on arrays whose last axis is time and whose other axes
(batch, channel) are processed together in one vectorised call. Filters are
zero-phase and declare the ``margin`` (samples) they need on each side, so a
window source reads that much extra signal and crops afterwards: filtering a
window then equals filtering the whole recording, without loading it.

FIR filters follow MNE's defaults (windowed-sinc ``firwin`` pieces, Hamming
window, automatic transition bandwidth ``min(max(0.25 f, 2 Hz), f)``, length
``3.3 / transition`` s); IIR filters are Butterworth second-order sections run
forward and backward. Tests check both against ``mne.filter``/``scipy.signal``.
"""
from __future__ import annotations

import dataclasses
import re
from fractions import Fraction
from typing import Iterator, Sequence

import numpy as np

__all__ = [
    "fir_coefficients", "fir_filter", "iir_sos", "iir_filter", "BandPass", "Notch", "Resample",
    "resample", "resample_blocks", "average_reference", "bipolar_reference", "shaft_pairs",
    "zscore", "robust_scale", "pick_channels", "TimeShift", "GaussianNoise", "ChannelDropout",
    "AmplitudeScale", "SignFlip", "FrequencyShift", "Compose", "delta_encode",
    "threshold_encode",
]

_HAMMING_LENGTH_FACTOR = 3.3  # filter length x transition width (in cycles) for a Hamming window


# --------------------------------------------------------------------------- FIR design
def _auto_trans(l_freq, h_freq, sfreq):
    lt = None if l_freq is None else float(min(max(0.25 * l_freq, 2.0), l_freq))
    ht = None if h_freq is None else float(min(max(0.25 * h_freq, 2.0), sfreq / 2.0 - h_freq))
    return lt, ht


def _firwin_sum(n_taps: int, freq: Sequence[float], gain: Sequence[int], sfreq: float):
    """Linear-phase FIR from a piecewise 0/1 gain: one windowed-sinc low-pass per transition.

    Each transition gets the shortest length that achieves its own width, so a
    wide transition does not pay for a narrow one; pieces are centred and summed.
    """
    from scipy import signal

    nyq = sfreq / 2.0
    h = np.zeros(n_taps)
    if gain[-1] == 1:
        h[n_taps // 2] = 1.0
    prev_f, prev_g = freq[-1], gain[-1]
    for f, g in zip(freq[-2::-1], gain[-2::-1]):
        if g != prev_g:
            width = (prev_f - f) / nyq / 2.0  # in cycles/sample
            n = int(round(_HAMMING_LENGTH_FACTOR / width))
            n += 1 - n % 2
            if n > n_taps:
                raise ValueError(f"filter of {n_taps} taps is too short for a "
                                 f"{prev_f - f:g} Hz transition")
            piece = signal.firwin(n, (prev_f + f) / 2.0, window="hamming", pass_zero=True,
                                  fs=sfreq)
            off = (n_taps - n) // 2
            h[off:n_taps - off] += piece if g == 1 else -piece
        prev_f, prev_g = f, g
    return h


def fir_coefficients(sfreq: float, l_freq: float | None, h_freq: float | None,
                     l_trans: float | None = None, h_trans: float | None = None) -> np.ndarray:
    """Zero-phase (odd-length, symmetric) FIR taps for a band-pass/high-pass/low-pass/band-stop.

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    l_freq, h_freq : float or None
        Pass-band edges. ``l_freq > h_freq`` designs a band-stop that removes
        ``(h_freq, l_freq)`` (MNE's convention).
    l_trans, h_trans : float, optional
        Transition widths (Hz); default as MNE's ``"auto"``.
    """
    nyq = sfreq / 2.0
    if l_freq is not None and h_freq is not None and l_freq > h_freq:  # band-stop
        lo, hi = h_freq, l_freq  # pass bands end at lo and hi; transitions lie inside
        alt, aht = _auto_trans(hi, lo, sfreq)
        lt = l_trans if l_trans is not None else alt
        ht = h_trans if h_trans is not None else aht
        freq = [0, lo, lo + ht, hi - lt, hi, nyq]
        gain = [1, 1, 0, 0, 1, 1]
        narrow = min(lt, ht)
    else:
        alt, aht = _auto_trans(l_freq, h_freq, sfreq)
        lt = l_trans if l_trans is not None else alt
        ht = h_trans if h_trans is not None else aht
        freq, gain = [0.0], [0]
        if l_freq is not None:
            freq += [l_freq - lt, l_freq]
            gain += [0, 1]
        else:
            gain[0] = 1
        if h_freq is not None:
            freq += [h_freq, h_freq + ht]
            gain += [1, 0]
        freq.append(nyq)
        gain.append(gain[-1])
        if freq[1] == 0:  # high-pass transition down to DC
            freq, gain = freq[1:], gain[1:]
            freq[0] = 0.0
        narrow = min(t for t in (lt, ht) if t is not None)
    n = int(round(_HAMMING_LENGTH_FACTOR / narrow * sfreq))
    n += 1 - n % 2
    return _firwin_sum(n, freq, gain, sfreq)


def _pad_reflect(x: np.ndarray, pad: int) -> np.ndarray:
    """Reflect-pad the time axis (zeros beyond one signal length, like MNE's reflect_limited)."""
    T = x.shape[-1]
    r = min(pad, T - 1)
    left = x[..., 1:r + 1][..., ::-1]
    right = x[..., T - r - 1:T - 1][..., ::-1]
    z = np.zeros(x.shape[:-1] + (pad - r,), x.dtype)
    return np.concatenate([z, left, x, right, z], axis=-1)


def fir_filter(x: np.ndarray, h: np.ndarray, pad: bool = True) -> np.ndarray:
    """Apply symmetric FIR taps ``h`` along the last axis with zero phase (overlap-add FFT).

    ``pad=False`` returns only the samples fully covered by the filter
    (length ``T - len(h) + 1``): use it when the input already carries margins.
    """
    from scipy import signal

    x = np.asarray(x)
    half = (len(h) - 1) // 2
    work = x.astype(np.float64, copy=False)
    if pad:
        work = _pad_reflect(work, half)
    kernel = h.reshape((1,) * (work.ndim - 1) + (-1,))
    y = signal.oaconvolve(work, kernel, mode="valid", axes=-1)
    return y.astype(x.dtype if x.dtype.kind == "f" else np.float64, copy=False)


# --------------------------------------------------------------------------- IIR design
def iir_sos(sfreq: float, l_freq: float | None, h_freq: float | None, order: int = 4):
    """Butterworth second-order sections (band-pass, high-pass, low-pass or band-stop)."""
    from scipy import signal

    if l_freq is not None and h_freq is not None:
        if l_freq < h_freq:
            return signal.butter(order, [l_freq, h_freq], "bandpass", output="sos", fs=sfreq)
        return signal.butter(order, [h_freq, l_freq], "bandstop", output="sos", fs=sfreq)
    if l_freq is not None:
        return signal.butter(order, l_freq, "highpass", output="sos", fs=sfreq)
    return signal.butter(order, h_freq, "lowpass", output="sos", fs=sfreq)


def ringing_samples(sos: np.ndarray, max_samples: int = 1 << 16, tol: float = 1e-6) -> int:
    """Samples until the impulse response of ``sos`` stays below ``tol`` of its peak."""
    from scipy import signal

    imp = np.zeros(max_samples)
    imp[0] = 1.0
    h = np.abs(signal.sosfilt(sos, imp))
    above = np.nonzero(h > tol * h.max())[0]
    return int(above[-1]) + 1 if len(above) else 1


def iir_filter(x: np.ndarray, sos: np.ndarray, padlen: int | None = None) -> np.ndarray:
    """Zero-phase IIR (forward-backward second-order sections) along the last axis."""
    from scipy import signal

    x = np.asarray(x)
    T = x.shape[-1]
    padlen = min(ringing_samples(sos) if padlen is None else padlen, T - 1)
    y = signal.sosfiltfilt(sos, x.astype(np.float64, copy=False), axis=-1, padlen=padlen)
    return y.astype(x.dtype if x.dtype.kind == "f" else np.float64, copy=False)


@dataclasses.dataclass
class BandPass:
    """Band-pass (``l_freq < h_freq``), high-pass (``h_freq=None``), low-pass (``l_freq=None``)
    or band-stop (``l_freq > h_freq``) filter, zero-phase FIR or IIR.

    ``margin`` is the number of samples of real signal this filter needs on
    each side of a window (half the FIR length, or the IIR ringing length).
    """

    sfreq: float
    l_freq: float | None
    h_freq: float | None
    method: str = "fir"
    order: int = 4

    def __post_init__(self):
        if self.method == "fir":
            self._h = fir_coefficients(self.sfreq, self.l_freq, self.h_freq)
            self.margin = (len(self._h) - 1) // 2
        elif self.method == "iir":
            self._sos = iir_sos(self.sfreq, self.l_freq, self.h_freq, self.order)
            self.margin = ringing_samples(self._sos)
        else:
            raise ValueError("method must be 'fir' or 'iir'")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.method == "fir":
            return fir_filter(x, self._h)
        return iir_filter(x, self._sos)


@dataclasses.dataclass
class Notch:
    """Remove line noise at ``freqs`` (and the listed harmonics), zero-phase.

    FIR: a band-stop whose pass bands end at ``f -/+ (width + trans) / 2`` with
    ``trans / 2`` Hz transitions, i.e. stopping ``f -/+ width / 2`` (MNE's
    ``notch_filter``; default width ``f / 200``); IIR: ``scipy.signal.iirnotch``
    with quality ``f / width`` run forward and backward.
    """

    sfreq: float
    freqs: Sequence[float] = (50.0,)
    width: float | None = None
    method: str = "fir"
    trans: float = 1.0

    def __post_init__(self):
        from scipy import signal

        self._parts = []
        self.margin = 0
        for f in np.atleast_1d(self.freqs):
            w = self.width if self.width is not None else f / 200.0
            if self.method == "fir":
                tb = self.trans / 2.0
                h = fir_coefficients(self.sfreq, f + w / 2 + tb, f - w / 2 - tb, tb, tb)
                self._parts.append(("fir", h))
                self.margin = max(self.margin, (len(h) - 1) // 2)
            else:
                b, a = signal.iirnotch(f, f / w, fs=self.sfreq)
                sos = signal.tf2sos(b, a)
                self._parts.append(("iir", sos))
                self.margin = max(self.margin, ringing_samples(sos))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for kind, p in self._parts:
            x = fir_filter(x, p) if kind == "fir" else iir_filter(x, p)
        return x


# --------------------------------------------------------------------------- resampling
def _ratio(sfreq_in: float, sfreq_out: float) -> tuple[int, int]:
    r = Fraction(sfreq_out / sfreq_in).limit_denominator(10000)
    return r.numerator, r.denominator


def resample(x: np.ndarray, sfreq_in: float, sfreq_out: float) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliasing Kaiser FIR, ``resample_poly``)."""
    from scipy import signal

    up, down = _ratio(sfreq_in, sfreq_out)
    y = signal.resample_poly(np.asarray(x, np.float64), up, down, axis=-1)
    return y.astype(np.asarray(x).dtype if np.asarray(x).dtype.kind == "f" else np.float64)


def resample_blocks(read, n_times: int, sfreq_in: float, sfreq_out: float,
                    block: int = 1 << 16) -> Iterator[np.ndarray]:
    """Resample a long recording block by block; the concatenation equals :func:`resample`.

    Parameters
    ----------
    read : callable
        ``read(start, stop) -> (channel, stop - start)`` array of the source.
    n_times : int
        Source length in samples.
    block : int
        Source samples per step (rounded to a multiple of the decimation factor).

    Each step reads its block plus the polyphase filter's half-length on both
    sides (aligned to the decimation factor), so memory is bounded by the block.
    """
    from scipy import signal

    up, down = _ratio(sfreq_in, sfreq_out)
    half = 10 * max(up, down)  # resample_poly's default half-length, in upsampled samples
    m = -(-half // up) + 1
    m = -(-m // down) * down  # margin in source samples, a multiple of down
    block = max(down, (block // down) * down)
    n_out = -(-n_times * up // down)
    done = 0
    for a in range(0, n_times, block):
        b = min(n_times, a + block)
        lo, hi = max(0, a - m), min(n_times, b + m)
        x = np.asarray(read(lo, hi), np.float64)
        # samples [a - m, b + m), zeros beyond the recording (as resample_poly pads)
        x = np.concatenate([np.zeros(x.shape[:-1] + (lo - (a - m),)), x,
                            np.zeros(x.shape[:-1] + ((b + m) - hi,))], axis=-1)
        y = signal.resample_poly(x, up, down, axis=-1)
        o0 = m * up // down
        count = min(n_out, -(-b * up // down)) - done
        yield y[..., o0:o0 + count]
        done += count


@dataclasses.dataclass
class Resample:
    """Polyphase resampling of windows from ``sfreq_in`` to ``sfreq_out`` (changes the length)."""

    sfreq_in: float
    sfreq_out: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return resample(x, self.sfreq_in, self.sfreq_out)


# --------------------------------------------------------------------------- references
def average_reference(x: np.ndarray, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Subtract the mean over channels ``rows`` (default all) from every channel of ``(..., C, T)``.

    Channels outside ``rows`` (stim, EOG) are left unchanged when ``rows`` is given.
    """
    x = np.asarray(x)
    if rows is None:
        return x - x.mean(axis=-2, keepdims=True)
    rows = np.asarray(rows)
    out = x.copy()
    out[..., rows, :] = x[..., rows, :] - x[..., rows, :].mean(axis=-2, keepdims=True)
    return out


def bipolar_reference(x: np.ndarray, anodes: Sequence[int], cathodes: Sequence[int]) -> np.ndarray:
    """Bipolar derivations ``x[anode] - x[cathode]`` of ``(..., C, T)`` -> ``(..., P, T)``."""
    x = np.asarray(x)
    return x[..., np.asarray(anodes), :] - x[..., np.asarray(cathodes), :]


_CONTACT = re.compile(r"^(.*?)(\d+)$")


def shaft_pairs(ch_names: Sequence[str], ch_types: Sequence[str] | None = None):
    """Neighbouring contacts of each sEEG/ECoG shaft (``LA1``-``LA2``, ``LA2``-``LA3``, ...).

    Contacts are grouped by the name before the trailing number; consecutive
    numbers on one shaft form a pair. Returns ``(anodes, cathodes, names)``.
    """
    shafts: dict[str, list[tuple[int, int]]] = {}
    for i, name in enumerate(ch_names):
        if ch_types is not None and ch_types[i] not in ("seeg", "ecog", "dbs", "eeg"):
            continue
        m = _CONTACT.match(name.strip())
        if m:
            shafts.setdefault(m.group(1).rstrip("-_ '"), []).append((int(m.group(2)), i))
    anodes, cathodes, names = [], [], []
    for shaft, contacts in shafts.items():
        contacts.sort()
        for (n0, i0), (n1, i1) in zip(contacts[:-1], contacts[1:]):
            if n1 == n0 + 1:
                anodes.append(i0)
                cathodes.append(i1)
                names.append(f"{ch_names[i0]}-{ch_names[i1]}")
    return np.asarray(anodes, np.int64), np.asarray(cathodes, np.int64), names


# --------------------------------------------------------------------------- scaling
def zscore(x: np.ndarray, mean=None, std=None, eps: float = 1e-12) -> np.ndarray:
    """Per-channel z-score over time; pass ``mean``/``std`` (shape ``(C, 1)``) to use fixed stats."""
    x = np.asarray(x)
    mu = x.mean(axis=-1, keepdims=True) if mean is None else mean
    sd = x.std(axis=-1, keepdims=True) if std is None else std
    return ((x - mu) / np.maximum(sd, eps)).astype(x.dtype, copy=False)


def robust_scale(x: np.ndarray, center=None, scale=None, quantiles=(25.0, 75.0),
                 eps: float = 1e-12) -> np.ndarray:
    """Per-channel ``(x - median) / IQR`` over time (robust to artefacts and flat segments)."""
    x = np.asarray(x)
    if center is None or scale is None:
        q0, med, q1 = np.percentile(x, [quantiles[0], 50.0, quantiles[1]], axis=-1, keepdims=True)
        center = med if center is None else center
        scale = (q1 - q0) if scale is None else scale
    return ((x - center) / np.maximum(scale, eps)).astype(x.dtype, copy=False)


# --------------------------------------------------------------------------- channel selection
def pick_channels(ch_names: Sequence[str], ch_types: Sequence[str], types=None,
                  pattern: str | None = None, regions: Sequence[str] | None = None,
                  region_pattern: str | None = None, exclude: Sequence[str] = ()) -> np.ndarray:
    """Indices of channels matching every given criterion.

    Parameters
    ----------
    types : str or sequence of str, optional
        Channel types to keep (``"eeg"``, ``"seeg"``, ...).
    pattern : str, optional
        Regular expression the channel name must match (``re.search``).
    regions, region_pattern : optional
        Per-channel anatomical labels and a regex they must match.
    exclude : sequence of str
        Names to drop.
    """
    keep = np.ones(len(ch_names), bool)
    if types is not None:
        types = {types} if isinstance(types, str) else set(types)
        keep &= np.array([t in types for t in ch_types], bool)
    if pattern is not None:
        rx = re.compile(pattern)
        keep &= np.array([bool(rx.search(n)) for n in ch_names], bool)
    if region_pattern is not None:
        if regions is None:
            keep[:] = False
        else:
            rx = re.compile(region_pattern)
            keep &= np.array([bool(rx.search(r or "")) for r in regions], bool)
    if exclude:
        keep &= ~np.isin(np.asarray(ch_names, object), list(exclude))
    return np.nonzero(keep)[0]


# --------------------------------------------------------------------------- augmentations
class _Augment:
    """Seeded augmentation on ``(B, C, T)`` batches: each call draws from its own Generator."""

    def __init__(self, seed: int | np.random.Generator | None = 0):
        self.seed = seed
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def params(self) -> dict:
        d = {k: v for k, v in vars(self).items() if k not in ("rng",)}
        d["name"] = type(self).__name__
        return d


class TimeShift(_Augment):
    """Shift each window by a random number of samples in ``[-max_shift, max_shift]`` (zero fill)."""

    def __init__(self, max_shift: int, seed=0):
        super().__init__(seed)
        self.max_shift = int(max_shift)

    def __call__(self, x):
        B, C, T = x.shape
        s = self.rng.integers(-self.max_shift, self.max_shift + 1, B)
        src = np.arange(T)[None, :] - s[:, None]
        valid = (src >= 0) & (src < T)
        out = np.take_along_axis(x, np.clip(src, 0, T - 1)[:, None, :].repeat(C, 1), axis=2)
        return np.where(valid[:, None, :], out, 0).astype(x.dtype)


class GaussianNoise(_Augment):
    """Add white noise of standard deviation ``std`` (signal units)."""

    def __init__(self, std: float, seed=0):
        super().__init__(seed)
        self.std = float(std)

    def __call__(self, x):
        return (x + self.rng.normal(0.0, self.std, x.shape)).astype(x.dtype)


class ChannelDropout(_Augment):
    """Zero each channel of each window with probability ``p``."""

    def __init__(self, p: float = 0.1, seed=0):
        super().__init__(seed)
        self.p = float(p)

    def __call__(self, x):
        keep = self.rng.random(x.shape[:2]) >= self.p
        return x * keep[..., None].astype(x.dtype)


class AmplitudeScale(_Augment):
    """Multiply each window by a factor drawn uniformly from ``[low, high]``."""

    def __init__(self, low: float = 0.5, high: float = 2.0, seed=0):
        super().__init__(seed)
        self.low, self.high = float(low), float(high)

    def __call__(self, x):
        f = self.rng.uniform(self.low, self.high, x.shape[0]).astype(x.dtype)
        return x * f[:, None, None]


class SignFlip(_Augment):
    """Negate each window with probability ``p``."""

    def __init__(self, p: float = 0.5, seed=0):
        super().__init__(seed)
        self.p = float(p)

    def __call__(self, x):
        s = np.where(self.rng.random(x.shape[0]) < self.p, -1.0, 1.0).astype(x.dtype)
        return x * s[:, None, None]


class FrequencyShift(_Augment):
    """Shift each window's spectrum by ``df ~ U(-max_shift, max_shift)`` Hz (analytic signal)."""

    def __init__(self, sfreq: float, max_shift: float = 2.0, seed=0):
        super().__init__(seed)
        self.sfreq, self.max_shift = float(sfreq), float(max_shift)

    def __call__(self, x):
        from scipy.signal import hilbert

        df = self.rng.uniform(-self.max_shift, self.max_shift, x.shape[0])
        t = np.arange(x.shape[-1]) / self.sfreq
        analytic = hilbert(x.astype(np.float64), axis=-1)
        return np.real(analytic * np.exp(2j * np.pi * df[:, None, None] * t)).astype(x.dtype)


class Compose:
    """Apply transforms in order; ``margin`` is the largest any of them needs."""

    def __init__(self, *transforms):
        self.transforms = transforms
        self.margin = max((int(getattr(t, "margin", 0) or 0) for t in transforms), default=0)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


# --------------------------------------------------------------------------- spike encoding
def delta_encode(x: np.ndarray, threshold: float) -> np.ndarray:
    """Level-crossing (delta) spike encoding along time.

    The signal is quantised into levels ``threshold`` apart, relative to its
    first sample; each step up emits +1 and each step down -1 at that time
    (several steps in one sample add up). Returns int8 counts of ``x``'s shape.
    The running sum of the output times ``threshold`` tracks ``x - x[..., :1]``
    within one threshold.
    """
    x = np.asarray(x, np.float64)
    level = np.floor((x - x[..., :1]) / threshold)
    out = np.diff(level, axis=-1, prepend=level[..., :1])
    return np.clip(out, -127, 127).astype(np.int8)


def threshold_encode(x: np.ndarray, threshold: float) -> np.ndarray:
    """+1 where ``x`` rises through ``+threshold``, -1 where it falls through ``-threshold``."""
    x = np.asarray(x)
    prev = np.concatenate([x[..., :1], x[..., :-1]], axis=-1)
    up = (prev < threshold) & (x >= threshold)
    down = (prev > -threshold) & (x <= -threshold)
    return up.astype(np.int8) - down.astype(np.int8)
