"""MATLAB ``.mat`` event samples: ASL-DVS and ST-MNIST.

- ASL-DVS (Bi et al. 2019; DAVIS240, 240x180): variables ``x``, ``y``, ``ts``
  (microseconds) and ``pol`` as column vectors, one sample per file. The rows
  count from the bottom as in jAER; like tonic's ``ASLDVS``, neurodata turns
  them into top-left image rows (``y = 179 - y``); ``flip_y=False`` keeps them.
- ST-MNIST (See et al. 2020, tactile 10x10 taxel grid): one variable
  ``spiketrain`` of shape ``(101, n)``: rows 0-99 hold, per event column,
  +1 (ON) or -1 (OFF) at the taxel that fired, row 100 the time in seconds.
  Taxel ``a`` sits at ``x = a % 10``, ``y = a // 10`` (the paper's mapping, as
  in tonic's reader); ``t = round(seconds * 1e6)`` (tonic truncates).

Version 5 files are read with ``scipy.io.loadmat`` (which never unpickles);
v7.3 files are HDF5 and read with h5py, where MATLAB's column-major arrays
appear transposed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError
from neurodata.events import EventRecording

VERSION = "MATLAB v5 / v7.3 (ASL-DVS, ST-MNIST)"
MAGIC_V5 = b"MATLAB 5.0 MAT-file"
MAGIC_V73 = b"MATLAB 7.3 MAT-file"
ASL_VARS = ("x", "y", "ts", "pol")
ASL_SENSOR = (240, 180, 2)
STMNIST_VAR = "spiketrain"
STMNIST_SENSOR = (10, 10, 2)


def variables(path: Path, head: bytes) -> set[str]:
    """Names of the variables in a v5 or v7.3 .mat file (without loading them)."""
    if head.startswith(MAGIC_V5):
        import scipy.io

        return {name for name, _, _ in scipy.io.whosmat(path)}
    if head.startswith(MAGIC_V73):
        import h5py

        with h5py.File(path, "r") as f:
            return set(f.keys())
    return set()


def kind_of(names: set[str]) -> str | None:
    if set(ASL_VARS) <= names:
        return "asl_dvs"
    if STMNIST_VAR in names:
        return "stmnist"
    return None


def sniff(path: Path, head: bytes) -> bool:
    """MAT-file text header, then the variables of a known event layout."""
    if not (head.startswith(MAGIC_V5) or head.startswith(MAGIC_V73)):
        return False
    try:
        return kind_of(variables(path, head)) is not None
    except Exception:
        return False


def _load(path: Path, head: bytes) -> dict:
    if head.startswith(MAGIC_V5):
        import scipy.io

        try:
            return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
        except Exception as e:  # scipy raises ValueError/TypeError/OSError on broken files
            raise CorruptFileError(f"cannot read as a MATLAB v5 file ({e.__class__.__name__}: "
                                   f"{e})", path) from None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: np.asarray(f[k]).T for k in f.keys()
                    if hasattr(f[k], "shape") and k in (*ASL_VARS, STMNIST_VAR)}
    except OSError as e:
        raise CorruptFileError(f"cannot read as a MATLAB v7.3 (HDF5) file ({e})", path) from None


def read(path: Path, flip_y: bool = True, **kw) -> EventRecording:
    """Read an ASL-DVS or ST-MNIST .mat sample.

    Parameters
    ----------
    path : path-like
        The ``.mat`` file.
    flip_y : bool
        ASL-DVS: turn bottom-up rows into top-left image rows (default).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(128)
    if not head:
        raise FormatError("empty file", path)
    if not (head.startswith(MAGIC_V5) or head.startswith(MAGIC_V73)):
        raise FormatError(f"not a MATLAB v5/v7.3 MAT-file: starts with {head[:19]!r}", path)
    mat = _load(path, head)
    kind = kind_of(set(mat))
    if kind == "asl_dvs":
        x, y, t, p = decode_asl_dvs(mat, path, flip_y)
        sensor = ASL_SENSOR
    elif kind == "stmnist":
        x, y, t, p = decode_stmnist(mat[STMNIST_VAR], path)
        sensor = STMNIST_SENSOR
    else:
        raise FormatError(f"variables {sorted(mat)} are neither ASL-DVS (x, y, ts, pol) nor "
                          "ST-MNIST (spiketrain)", path)
    return EventRecording(x, y, t, p, sensor_size=sensor, format=f"mat_events/{kind}",
                          meta={"layout": kind})


def _vector(a, name, path) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim > 2 or (a.ndim == 2 and min(a.shape) > 1):
        raise CorruptFileError(f"variable {name!r} has shape {a.shape}, expected a vector", path)
    if a.dtype.kind not in "biuf":  # MATLAB logical arrives as bool
        raise CorruptFileError(f"variable {name!r} is {a.dtype}, expected numbers", path)
    return a.ravel()


def decode_asl_dvs(mat: dict, path, flip_y: bool = True):
    """ASL-DVS variables -> x, y, t, p columns (checked against 240x180)."""
    x, y, ts, pol = (_vector(mat[k], k, path) for k in ASL_VARS)
    n = len(ts)
    if not len(x) == len(y) == len(pol) == n:
        raise CorruptFileError(f"x, y, ts, pol have lengths {len(x)}, {len(y)}, {n}, "
                               f"{len(pol)}", path)
    w, h, _ = ASL_SENSOR
    if n and (x.min() < 0 or y.min() < 0 or x.max() >= w or y.max() >= h):
        raise CorruptFileError(f"coordinates x {x.min()}..{x.max()}, y {y.min()}..{y.max()} "
                               f"lie outside the {w}x{h} DAVIS240", path)
    y = (h - 1) - y if flip_y else y
    return (x.astype(np.uint16), y.astype(np.uint16), np.rint(ts).astype(np.int64),
            (pol > 0).astype(np.uint8))


def decode_stmnist(spiketrain, path):
    """ST-MNIST ``spiketrain`` (101 x n) -> x, y, t, p columns."""
    s = np.asarray(spiketrain)
    if s.ndim != 2 or 101 not in s.shape:
        raise CorruptFileError(f"spiketrain has shape {s.shape}, expected (101, n_events)", path)
    if s.shape[0] != 101:
        s = s.T
    if not np.issubdtype(s.dtype, np.number):
        raise CorruptFileError(f"spiketrain is {s.dtype}, expected numbers", path)
    taxels, seconds = s[:100].T, s[100]
    event, addr = np.nonzero(taxels)  # row-major: ordered by event, then taxel
    if not np.isfinite(seconds[event]).all():
        raise CorruptFileError("spiketrain timestamps contain NaN or infinity", path)
    return ((addr % 10).astype(np.uint16), (addr // 10).astype(np.uint16),
            np.rint(seconds[event] * 1e6).astype(np.int64),
            (taxels[event, addr] > 0).astype(np.uint8))
