"""Events saved with numpy: ``.npy`` and ``.npz`` files.

What users of tonic and hand-rolled pipelines save:

- ``.npy``: a structured array with fields ``x, y, t, p`` (``polarity`` is
  accepted for ``p``; ``y``/``p`` may be absent for 1-D spike data), or a
  plain integer ``(N, 4)`` array with columns in ``x, y, t, p`` order;
- ``.npz``: one structured array (any key), or separate ``x``, ``y``, ``t``,
  ``p`` arrays; optional ``sensor_size`` (``(W, H)`` or ``(W, H, P)``) and
  ``label`` (an integer).

Files are opened with ``allow_pickle=False``: an object array (which would
need unpickling, i.e. running code from the file) is refused, not loaded.
Coordinates must be non-negative integers below 65536; ``t`` must be integer
microseconds (float ``t`` is accepted only when every value is whole).
"""
from __future__ import annotations

import math
import os
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, SchemaError, TruncatedFileError
from neurodata.events import EventRecording
from neurodata.loaders._io import read_npy_header

VERSION = "numpy .npy/.npz (x, y, t, p)"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_ALIASES = {"x": ("x",), "y": ("y",), "t": ("t", "ts", "timestamp"), "p": ("p", "polarity")}


def sniff(path: Path, head: bytes) -> bool:
    """``.npy`` magic, or a zip archive named ``.npz``."""
    if head.startswith(_NPY_MAGIC):
        return True
    return head.startswith(_ZIP_MAGIC) and path.suffix.lower() == ".npz"


def _npy_claims_fit(fh, available: int, path, what: str) -> None:
    """Refuse an array whose header claims more bytes than ``available``: numpy
    allocates the claimed size before it reads (``fh`` is at the magic)."""
    shape, _, dtype, left = read_npy_header(fh, available, path)
    if dtype.hasobject:
        return  # refused later, without unpickling
    need = math.prod(int(v) for v in shape) * dtype.itemsize
    if need > left:
        raise TruncatedFileError(f"{what}header claims {tuple(shape)} {dtype} ({need} bytes), "
                                 f"only {max(left, 0)} bytes follow", path)


def _check_claims(path: Path) -> None:
    with open(path, "rb") as fh:
        if fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
            fh.seek(0)
            _npy_claims_fit(fh, os.fstat(fh.fileno()).st_size, path, "")
            return
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                with z.open(info) as member:
                    if member.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                        continue
                with z.open(info) as member:
                    _npy_claims_fit(member, info.file_size, path, f"member {info.filename}: ")


def _load(path: Path):
    try:
        _check_claims(path)
        return np.load(path, allow_pickle=False, mmap_mode=None)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise FormatError("holds a pickled object array; neurodata never unpickles "
                              "(save plain numeric arrays instead)", path) from None
        raise CorruptFileError(f"not a readable numpy file ({e})", path) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError,
            tokenize.TokenError, NotImplementedError) as e:
        raise CorruptFileError(f"not a readable numpy file ({e.__class__.__name__}: {e})",
                               path) from None


def _field(names, key):
    for alias in _ALIASES[key]:
        if alias in names:
            return alias
    return None


def _from_structured(arr: np.ndarray, path) -> dict:
    names = arr.dtype.names
    cols = {}
    for key in ("x", "y", "t", "p"):
        name = _field(names, key)
        if name is not None:
            cols[key] = np.ascontiguousarray(arr[name]).reshape(-1)
    missing = [k for k in ("x", "t") if k not in cols]
    if missing:
        raise SchemaError(f"structured array lacks field(s) {missing}; has {list(names)} "
                          "(expected x, y, t, p)", path)
    return cols


def _from_plain(arr: np.ndarray, path) -> dict:
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise SchemaError(f"a plain array must have shape (N, 4) with columns x, y, t, p; "
                          f"got shape {arr.shape}", path)
    if arr.dtype.kind not in "iu":
        raise SchemaError(f"a plain (N, 4) array must be integer (x, y, t in us, p); got "
                          f"{arr.dtype}. Save a structured array to keep float t", path)
    return {k: arr[:, i] for i, k in enumerate("xytp")}


def _coordinate(a: np.ndarray, name: str, path) -> np.ndarray:
    if a.dtype.kind not in "iub":
        raise SchemaError(f"{name} must be integer pixel indices, got dtype {a.dtype}", path)
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0:
            raise SchemaError(f"{name} has negative values (min {lo})", path)
        if hi > 0xFFFF:
            raise SchemaError(f"{name} exceeds 65535 (max {hi})", path)
    return a.astype(np.uint16)


def _time(a: np.ndarray, path) -> np.ndarray:
    if a.dtype.kind in "iu":
        if a.dtype == np.uint64 and a.size and int(a.max()) > np.iinfo(np.int64).max:
            raise SchemaError("t exceeds the int64 range", path)
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise SchemaError("t holds NaN or infinite values", path)
        if not np.array_equal(a, np.round(a)):
            raise SchemaError("t has fractional values: neurodata stores integer microseconds "
                              "(convert seconds with t * 1e6 first)", path)
        return a.astype(np.int64)
    raise SchemaError(f"t must be integer microseconds, got dtype {a.dtype}", path)


def _polarity(a: np.ndarray, path) -> np.ndarray:
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.isin(a, (-1, 0, 1)).all()):
        raise SchemaError(f"p must be integer or bool polarities, got dtype {a.dtype}", path)
    return (a > 0).astype(np.uint8)


def _validate(cols: dict, path) -> tuple:
    n = len(cols["t"])
    for k, v in cols.items():
        if not isinstance(v, np.ndarray):  # numpy returns raw bytes for a non-.npy member
            raise SchemaError(f"{k} is not a numpy array (archive member without .npy data)",
                              path)
        if v.ndim != 1:
            raise SchemaError(f"{k} must be one-dimensional, got shape {v.shape}", path)
        if len(v) != n:
            lengths = {key: len(val) for key, val in cols.items()}
            raise SchemaError(f"columns differ in length: {lengths}", path)
    x = _coordinate(cols["x"], "x", path)
    y = _coordinate(cols["y"], "y", path) if "y" in cols else np.zeros(n, np.uint16)
    t = _time(cols["t"], path)
    p = _polarity(cols["p"], path) if "p" in cols else np.zeros(n, np.uint8)
    return x, y, t, p


def _sensor(value, path):
    v = np.asarray(value).reshape(-1)
    if v.dtype.kind not in "iu" or len(v) not in (2, 3) or (v <= 0).any():
        raise SchemaError(f"sensor_size must be 2 or 3 positive integers, got {v.tolist()}", path)
    return (int(v[0]), int(v[1]), int(v[2]) if len(v) == 3 else 2)


def read(path: Path, **kw) -> EventRecording:
    """Read events from a ``.npy`` or ``.npz`` file (never unpickling).

    Returns
    -------
    EventRecording
        ``sensor_size`` from the ``.npz``'s ``sensor_size`` entry, else None;
        a ``label`` entry makes the file one labelled sample.
    """
    path = Path(path)
    if path.is_dir():
        raise FormatError("is a folder, expected a .npy or .npz file", path)
    if path.stat().st_size == 0:
        raise FormatError("empty file", path)
    obj = _load(path)
    sensor = label = None
    if isinstance(obj, np.ndarray):
        cols = _from_structured(obj, path) if obj.dtype.names else _from_plain(obj, path)
    else:
        with obj as npz:
            keys = list(npz.files)
            try:
                if "t" in keys and "x" in keys:
                    cols = {k: npz[k] for k in ("x", "y", "t", "p") if k in keys}
                    if "p" not in cols and "polarity" in keys:
                        cols["p"] = npz["polarity"]
                else:
                    structured = [k for k in keys  # a non-.npy member comes back as bytes
                                  if getattr(getattr(npz[k], "dtype", None), "names", None)]
                    if len(structured) != 1:
                        raise SchemaError(
                            f"expected one structured events array or x, y, t, p arrays; "
                            f"holds {keys}", path)
                    cols = _from_structured(npz[structured[0]], path)
                if "sensor_size" in keys:
                    sensor = _sensor(npz["sensor_size"], path)
                if "label" in keys:
                    lab = np.asarray(npz["label"]).reshape(-1)
                    if lab.size != 1 or lab.dtype.kind not in "iu":
                        raise SchemaError(f"label must be one integer, got {lab.tolist()!r}", path)
                    label = int(lab[0])
            except ValueError as e:
                if "pickle" in str(e).lower():
                    raise FormatError("holds a pickled object array; neurodata never "
                                      "unpickles", path) from None
                raise CorruptFileError(f"unreadable array ({e})", path) from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error,
                    NotImplementedError) as e:  # damaged member or zip header
                raise CorruptFileError(f"unreadable array ({e.__class__.__name__}: {e})",
                                       path) from None
    x, y, t, p = _validate(cols, path)
    rec = EventRecording(x, y, t, p, sensor_size=sensor, format=f"numpy_events/{path.suffix[1:]}")
    if label is not None:
        rec.starts = np.array([0], np.int64)
        rec.counts = np.array([len(t)], np.int64)
        rec.labels = np.array([label], np.int64)
    return rec
