"""Read pickled ``.npy`` files (suite2p ``stat.npy``/``ops.npy``) without running their code.

A pickle can name any importable callable and call it while loading
(``os.system`` through ``__reduce__``), so ``np.load(allow_pickle=True)`` on
a file from elsewhere executes whatever it contains. This reader parses the
``.npy`` header itself and unpickles the payload with an unpickler whose
``find_class`` resolves only a fixed allow-list: numpy array reconstruction,
numpy dtypes and scalars, plain containers and dates. Anything else is
refused with :class:`UnsafePickleError` before it can be called.
"""
from __future__ import annotations

import datetime
import io
import math
import os
import pickle
from collections import OrderedDict
from pathlib import Path, PurePosixPath

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, TruncatedFileError
from neurodata.loaders._io import read_npy_header


class UnsafePickleError(CorruptFileError):
    """A pickle names a callable outside the allow-list (it could run code)."""


def _np_attr(*names):
    """First of ``numpy._core.x`` / ``numpy.core.x`` that exists (numpy 2 and 1)."""
    for mod_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            mod = __import__(mod_name, fromlist=["_"])
        except ImportError:
            continue
        for n in names:
            if hasattr(mod, n):
                return getattr(mod, n)
    raise ImportError(names)


def _frombuffer(buf, dtype, shape, order):
    # numpy's protocol-5 array reconstruction, re-implemented on numpy's public API
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _path_as_str(*parts):
    """Pickled pathlib paths become plain strings (never platform-specific objects)."""
    return str(PurePosixPath(*parts)) if parts else ""


def _allowed() -> dict:
    reconstruct = _np_attr("_reconstruct")
    scalar = _np_attr("scalar")
    table = {}
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(core, "_reconstruct")] = reconstruct
        table[(core, "scalar")] = scalar
    for core in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(core, "_frombuffer")] = _frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    # numpy 2 pickles dtypes as numpy.dtypes.<Kind>DType classes in some cases
    import numpy.dtypes as _dts

    for n in dir(_dts):
        if n.endswith("DType"):
            table[("numpy.dtypes", n)] = getattr(_dts, n)
    for n in ("set", "frozenset", "slice", "complex", "bytearray", "range"):
        table[("builtins", n)] = getattr(__import__("builtins"), n)
        table[("__builtin__", n)] = getattr(__import__("builtins"), n)
    table[("collections", "OrderedDict")] = OrderedDict
    for n in ("datetime", "date", "time", "timedelta", "timezone"):
        table[("datetime", n)] = getattr(datetime, n)
    for n in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath",
              "PureWindowsPath"):
        table[("pathlib", n)] = _path_as_str
        table[("pathlib._local", n)] = _path_as_str
    return table


_ALLOWED = None


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals."""

    def __init__(self, fh, path=None):
        super().__init__(fh, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str):
        global _ALLOWED
        if _ALLOWED is None:
            _ALLOWED = _allowed()
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to unpickle: the pickle calls {module}.{name}, which is not a numpy "
                "array, dtype or plain container (a crafted pickle could run code)",
                self._path) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("refused to unpickle: persistent ids are not allowed", self._path)


def safe_unpickle(data: bytes, path=None):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; errors name ``path``."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), path).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, OverflowError) as e:
        raise CorruptFileError(f"corrupt pickle payload ({e.__class__.__name__}: {e})", path) from None


def load_npy(path: str | os.PathLike, allow_objects: bool = True):
    """Load a ``.npy`` file; object arrays are unpickled by the restricted unpickler.

    Numeric arrays are read by numpy without pickle. A 0-d object array (how
    ``np.save`` stores a dict, e.g. suite2p ``ops.npy``) is returned as its
    item.
    """
    p = Path(path)
    try:
        fh = open(p, "rb")
    except IsADirectoryError:
        raise FormatError("is a folder, expected a .npy file", p) from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise FormatError("empty file", p)
        shape, fortran, dtype, _ = read_npy_header(fh, size, p)  # checked before numpy reads
        offset = fh.tell()
        if not dtype.hasobject:
            need = math.prod(int(v) for v in shape) * dtype.itemsize  # no int64 overflow
            if size - offset < need:
                raise TruncatedFileError(
                    f"truncated: header announces {shape} {dtype} ({need} bytes), "
                    f"file holds {size - offset}", p)
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
        if not allow_objects:
            raise FormatError("holds pickled Python objects where numbers were expected", p)
        payload = fh.read()
    obj = safe_unpickle(payload, p)
    if not isinstance(obj, np.ndarray):
        raise CorruptFileError(f"pickle payload is a {type(obj).__name__}, not an array", p)
    if obj.shape != tuple(shape):
        raise CorruptFileError(f"pickled array has shape {obj.shape}, header says {shape}", p)
    if obj.ndim == 0:
        return obj.item()
    return obj

