"""Pieces every store writer shares: atomic placement, arrays, provenance.

Stores are written into a temporary sibling folder and renamed into place
only once complete, so an interrupted conversion never leaves a half store
at the target, and an existing store is replaced in one step.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import os
import shutil
import sys
import uuid
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec

from neurodata._version import __version__
from neurodata.errors import NeurodataError
from neurodata.format.schema import SCHEMA_ATTR, schema_string

#: Default compressor, chosen by measurement (see docs/format.md):
#: blosc-zstd with bit-shuffle gives the smallest event stores at >1 GB/s decode.
DEFAULT_CODEC = dict(cname="zstd", clevel=5, shuffle="bitshuffle")


def codec(cname: str = "zstd", clevel: int = 5, shuffle: str = "bitshuffle") -> BloscCodec:
    """Return a blosc codec; ``shuffle`` is ``bitshuffle``, ``shuffle`` or ``noshuffle``."""
    return BloscCodec(cname=cname, clevel=clevel, shuffle=BloscShuffle[shuffle])


def file_sha256(path: str | os.PathLike, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def provenance(
    sources: Sequence[str | os.PathLike] = (),
    loader: str | None = None,
    checksums: Sequence[str] | None = None,
    max_listed: int = 1000,
    **extra,
) -> dict:
    """Build the ``provenance`` root attribute.

    Parameters
    ----------
    sources : sequence of path-like
        Input files. Up to ``max_listed`` are listed by name with sha256 and
        size; all of them enter ``sources_sha256`` (a digest over the sorted
        per-file digests), so large datasets stay small in metadata.
    loader : str | None
        ``"<format>/<version>"`` of the loader that read them.
    checksums : sequence of str | None
        Precomputed sha256 per source (same order), to avoid reading twice.
    """
    files = []
    digests = []
    for i, s in enumerate(sources):
        digest = checksums[i] if checksums is not None else file_sha256(s)
        digests.append(digest)
        if i < max_listed:
            files.append({"name": os.path.basename(os.fspath(s)), "sha256": digest,
                          "size": os.path.getsize(s)})
    combined = hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()
    out = {
        "converter": f"neurodata {__version__}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loader": loader,
        "n_sources": len(digests),
        "sources": files,
        "sources_sha256": combined,
    }
    out.update(extra)
    return out


@contextlib.contextmanager
def atomic_store(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; move it to ``out`` when the block succeeds.

    On any exception the temporary folder is removed and ``out`` is left as
    it was. With ``overwrite`` an existing store at ``out`` is exchanged with
    the new one in one atomic step (``renameat2(RENAME_EXCHANGE)`` on Linux;
    elsewhere two renames) and then deleted, so ``out`` always names a
    complete store. A writer killed outright (SIGKILL, power loss) leaves at
    most a ``.NAME.tmp-HOST.PID.RAND`` sibling, never a partial ``out``; the
    next write to ``out`` removes such siblings once their process is gone
    (:func:`remove_stale_siblings`).
    """
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise NeurodataError("output exists (use overwrite=True / --overwrite)", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(out)
    tmp = out.parent / f".{out.name}.tmp-{_owner_tag()}.{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if not (tmp / "zarr.json").exists():
            raise NeurodataError("writer produced no store", out)
        if out.exists() and _exchange(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous store
            return
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{_owner_tag()}.{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _host_tag() -> str:
    import socket

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _owner_tag() -> str:
    """``HOST.PID`` of this process, as written into temporary sibling names."""
    return f"{_host_tag()}.{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its files
    return True


def remove_stale_siblings(out: str | os.PathLike) -> list[Path]:
    """Remove ``.NAME.tmp-*``/``.NAME.old-*`` siblings of ``out`` left by dead writers.

    A sibling is removed only when its name says it was written on this host
    by a process that no longer exists; a live writer's (or another host's)
    temporary folder is never touched. Returns the removed paths.
    """
    out = Path(out).absolute()
    removed = []
    if not out.parent.is_dir():
        return removed
    host = _host_tag()
    for kind in ("tmp", "old"):
        for p in out.parent.glob(f".{_glob_escape(out.name)}.{kind}-*"):
            parts = p.name[len(f".{out.name}.{kind}-"):].split(".")
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            if int(parts[1]) == os.getpid() or _pid_alive(int(parts[1])):
                continue
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    import glob

    return glob.escape(name)


_RENAME_EXCHANGE = 2
_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``); False where unsupported."""
    global _renameat2
    if not sys.platform.startswith("linux"):
        return False
    if _renameat2 is None:
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):
            _renameat2 = False
    if not _renameat2:
        return False
    import ctypes

    at_fdcwd = -100
    rc = _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False  # kernel or filesystem without exchange: fall back to two renames
    raise OSError(err, os.strerror(err), os.fspath(b))


def open_new_group(path: str | os.PathLike, modality: str, attrs: dict | None = None) -> zarr.Group:
    """Create a zarr v3 root group with the schema tag and ``attrs``."""
    root = zarr.open_group(os.fspath(path), mode="w", zarr_format=3)
    a = {SCHEMA_ATTR: schema_string(modality), "modality": modality}
    a.update(attrs or {})
    root.attrs.update(_jsonable(a))
    return root


def create_array(
    group: zarr.Group,
    name: str,
    data: np.ndarray | None = None,
    dims: Sequence[str] = (),
    *,
    shape: Sequence[int] | None = None,
    dtype=None,
    chunks: Sequence[int] | None = None,
    shards: Sequence[int] | None = None,
    attrs: dict | None = None,
    compressor: BloscCodec | str | None = "default",
) -> zarr.Array:
    """Create an array that xarray reads with named ``dims``.

    ``data`` is written when given; otherwise ``shape``/``dtype`` define an
    empty array to fill (or resize) later. String data is stored as zarr's
    variable-length UTF-8 strings. ``attrs`` may carry ``units`` and, for
    xarray, ``coordinates``. ``compressor``: a blosc codec, ``"default"``
    (:func:`codec`) or ``None`` (chunks stored uncompressed).
    """
    if data is not None:
        data = np.asarray(data)
        if data.dtype.kind in "UO":
            data = data.astype(str)
        shape = data.shape
        dtype = data.dtype
    assert shape is not None and dtype is not None
    dtype = np.dtype(dtype)
    is_str = dtype.kind in "UO"
    if chunks is None:
        chunks = tuple(1 << 18 for _ in shape)
    if data is not None:  # written once: no chunk larger than the data
        chunks = tuple(max(1, min(c, s)) for c, s in zip(chunks, shape))
    kw = {}
    if shards is not None and not is_str:
        kw["shards"] = tuple(shards)
    arr = group.create_array(
        name,
        shape=tuple(shape),
        dtype=str if is_str else dtype,
        chunks=tuple(chunks),
        compressors=ZstdCodec(level=5) if is_str else (
            codec() if isinstance(compressor, str) and compressor == "default" else compressor),
        dimension_names=list(dims),
        fill_value="" if is_str else 0,
        **kw,
    )
    if attrs:
        arr.attrs.update(_jsonable(attrs))
    if data is not None and data.size:
        arr[...] = data
    return arr


def finalize_store(path: str | os.PathLike) -> None:
    """Consolidate metadata so readers open the store with one request."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(os.fspath(path))


def _jsonable(obj):
    """Convert numpy scalars/arrays inside attribute values to JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
