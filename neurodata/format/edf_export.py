"""Write recordings to EDF (16-bit European Data Format), streaming data records.

Clinical viewers and most EEG tools read EDF; this writer takes the signal
one block at a time, so a recording of any length is exported with memory
bounded by a block. It writes plain EDF (no annotation signal): a header, then
data records of ``record_s`` seconds holding each channel's samples in turn.
"""
from __future__ import annotations

import datetime as _dt
import os
from typing import Iterable, Sequence

import numpy as np

__all__ = ["write_edf", "export_recording"]


def _field(value, width: int) -> bytes:
    s = str(value)
    if len(s) > width:
        s = s[:width]
    return s.ljust(width).encode("ascii", "replace")


def _num(value: float, width: int = 8) -> str:
    """A number in at most ``width`` characters (EDF's fixed-width ASCII fields)."""
    s = f"{value:.{width}g}"
    while len(s) > width:
        width -= 1
        s = f"{value:.{width}g}"
    return s


def write_edf(path, ch_names: Sequence[str], sfreq: float, blocks: Iterable[np.ndarray],
              n_times: int, phys_min: Sequence[float] | float, phys_max: Sequence[float] | float,
              unit: str = "uV", record_s: float = 1.0, scale: float = 1e6,
              start: _dt.datetime | None = None, patient: str = "X X X X",
              recording: str = "Startdate X X X X") -> None:
    """Write an EDF file from ``(channel, time)`` blocks given in SI units.

    Parameters
    ----------
    path : path-like
    ch_names : sequence of str
    sfreq : float
        Must give a whole number of samples per ``record_s``.
    blocks : iterable of arrays
        Consecutive ``(channel, samples)`` blocks totalling ``n_times`` samples.
    n_times : int
        Samples per channel; the last partial record is zero-padded.
    phys_min, phys_max : float or sequence
        Physical range per channel in ``unit`` (values outside are clipped).
    unit, scale : str, float
        Physical dimension written and the factor from SI values to it (V -> uV: 1e6).
    """
    n_ch = len(ch_names)
    per_rec = int(round(sfreq * record_s))
    if abs(per_rec - sfreq * record_s) > 1e-6:
        raise ValueError("sfreq * record_s must be a whole number of samples")
    n_rec = -(-n_times // per_rec)
    # the header holds 8 characters per number: encode with exactly what it states
    pmin = np.array([float(_num(v)) for v in np.broadcast_to(np.asarray(phys_min, float), (n_ch,))])
    pmax = np.array([float(_num(v)) for v in np.broadcast_to(np.asarray(phys_max, float), (n_ch,))])
    if np.any(pmax <= pmin):
        raise ValueError("phys_max must exceed phys_min for every channel")
    dmin, dmax = -32768, 32767
    gain = (pmax - pmin) / (dmax - dmin)
    start = start or _dt.datetime(2000, 1, 1)
    hdr = b"".join([
        _field("0", 8), _field(patient, 80), _field(recording, 80),
        _field(start.strftime("%d.%m.%y"), 8), _field(start.strftime("%H.%M.%S"), 8),
        _field(256 * (n_ch + 1), 8), _field("", 44), _field(n_rec, 8),
        _field(_num(record_s), 8), _field(n_ch, 4),
    ])
    sig = b"".join([
        b"".join(_field(n, 16) for n in ch_names),
        b"".join(_field("", 80) for _ in ch_names),
        b"".join(_field(unit, 8) for _ in ch_names),
        b"".join(_field(_num(v), 8) for v in pmin),
        b"".join(_field(_num(v), 8) for v in pmax),
        b"".join(_field(dmin, 8) for _ in ch_names),
        b"".join(_field(dmax, 8) for _ in ch_names),
        b"".join(_field("", 80) for _ in ch_names),
        b"".join(_field(per_rec, 8) for _ in ch_names),
        b"".join(_field("", 32) for _ in ch_names),
    ])
    written = 0
    carry = np.zeros((n_ch, 0))
    with open(os.fspath(path), "wb") as fh:
        fh.write(hdr)
        fh.write(sig)

        def emit(x: np.ndarray) -> None:
            phys = np.clip(x * scale, pmin[:, None], pmax[:, None])
            dig = np.round((phys - pmin[:, None]) / gain[:, None] + dmin).astype("<i2")
            recs = dig.reshape(n_ch, -1, per_rec).transpose(1, 0, 2)  # record, channel, sample
            fh.write(np.ascontiguousarray(recs).tobytes())

        for block in blocks:
            block = np.concatenate([carry, np.asarray(block, np.float64)], axis=1)
            whole = (block.shape[1] // per_rec) * per_rec
            if whole:
                emit(block[:, :whole])
            carry = block[:, whole:]
            written += whole
        if carry.shape[1] or written < n_rec * per_rec:
            pad = n_rec * per_rec - written - carry.shape[1]
            emit(np.concatenate([carry, np.zeros((n_ch, pad))], axis=1))


def export_recording(rec, path, block_s: float = 60.0, record_s: float = 1.0) -> None:
    """Write a store :class:`~neurodata.format.timeseries.Recording` to EDF, block by block.

    The physical range per channel is taken from the data (one pass of
    per-chunk minima/maxima), so the 16-bit quantisation step is as small as
    the signal allows.
    """
    step = max(1, int(block_s * rec.sfreq))
    lo = np.full(rec.n_channels, np.inf)
    hi = np.full(rec.n_channels, -np.inf)
    for s in range(0, rec.n_times, step):
        x = rec.read(s, s + step)
        lo = np.minimum(lo, x.min(axis=1))
        hi = np.maximum(hi, x.max(axis=1))
    same = hi <= lo
    lo, hi = lo * 1e6, hi * 1e6
    hi[same] = lo[same] + 1.0
    write_edf(path, rec.ch_names, rec.sfreq,
              (rec.read(s, s + step) for s in range(0, rec.n_times, step)),
              rec.n_times, lo, hi, record_s=record_s)
