"""Decode ranges of local 1-D zarr v3 arrays straight from their chunk files.

zarr-python reads a range of a sharded array through layers of async
machinery (about half the speed of blosc itself on event columns). For the
layouts neurodata writes -- a regular 1-D grid, ``bytes`` + ``blosc`` chunks,
optionally inside ``sharding_indexed`` shards -- the bytes of an inner chunk
are found from the shard index (zarr v3 sharding spec: ``(offset, nbytes)``
little-endian uint64 pairs per inner chunk, at the end or the start of the
shard file, optionally followed by a crc32c of the index; all-ones marks a
chunk never written) and blosc-decoded directly into the output, on a couple
of threads since blosc releases the GIL.

:func:`direct_reader` returns None for anything else (other codecs, grids,
key encodings, byte orders); a read that meets something unexpected in the
files (bad index checksum, sizes that do not add up) raises
:class:`UnreadableChunk` so that the caller can read through zarr instead,
which either succeeds or reports the problem in its own words.
"""
from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Mapping, Sequence

import numpy as np

#: threads decoding chunks of one read (blosc releases the GIL while decoding)
DECODE_THREADS = 2
#: shard files kept open per reader
MAX_OPEN_FILES = 64


class OpenFiles:
    """File descriptors kept open between reads, by key; all closed when ``limit`` is reached.

    ``opener(key)`` returns a descriptor or None (missing file). Callers hold their own lock.
    """

    def __init__(self, opener, limit: int = MAX_OPEN_FILES):
        self._opener = opener
        self.limit = int(limit)
        self._fds: dict = {}

    def get(self, key) -> int | None:
        fd = self._fds.get(key)
        if fd is None:
            fd = self._opener(key)
            if fd is None:
                return None
            if len(self._fds) >= self.limit:
                self.close()
            self._fds[key] = fd
        return fd

    def close(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass
_EMPTY = (1 << 64) - 1  # shard index entry of a chunk never written
_BLOSC_HEADER = 16


class UnreadableChunk(Exception):
    """The files do not match the metadata: read through zarr instead."""


def _codec_names(codecs) -> list[str]:
    return [c.get("name") for c in codecs]


def _little_endian_ok(bytes_codec: dict, itemsize: int) -> bool:
    endian = (bytes_codec.get("configuration") or {}).get("endian", "little")
    return itemsize == 1 or (endian == "little" and sys.byteorder == "little")


class ColumnLayout:
    """Where and how the chunks of one 1-D array are stored (parsed from its metadata).

    Raises ValueError for any layout this module does not decode itself.
    """

    def __init__(self, meta: Mapping, name: str):
        if meta.get("zarr_format") != 3 or meta.get("node_type", "array") != "array":
            raise ValueError("not a zarr v3 array")
        if meta.get("storage_transformers"):
            raise ValueError("storage transformers")
        shape = [int(v) for v in meta["shape"]]
        grid = meta["chunk_grid"]
        if len(shape) != 1 or grid.get("name") != "regular":
            raise ValueError("not a regular 1-D grid")
        keys = meta.get("chunk_key_encoding", {"name": "default"})
        sep = (keys.get("configuration") or {}).get("separator", "/")
        if keys.get("name") != "default" or sep not in ("/", "."):
            raise ValueError("unsupported chunk key encoding")
        self.dtype = np.dtype(str(meta["data_type"]))
        if self.dtype.kind not in "biuf":
            raise ValueError("not a numeric data type")
        fill = meta.get("fill_value", 0)
        if isinstance(fill, bool) or not isinstance(fill, (int, float)):
            raise ValueError("unsupported fill value")
        self.fill = self.dtype.type(fill)
        self.n = shape[0]
        outer = int(grid["configuration"]["chunk_shape"][0])
        codecs = list(meta["codecs"])
        self.index_location = None
        self.index_crc = False
        if codecs and codecs[0].get("name") == "sharding_indexed":
            if len(codecs) != 1:
                raise ValueError("codecs after sharding")
            conf = codecs[0]["configuration"]
            self.chunk = int(conf["chunk_shape"][0])
            if self.chunk <= 0 or outer % self.chunk:
                raise ValueError("shard not a multiple of the chunk")
            self.per_shard = outer // self.chunk
            self.index_location = conf.get("index_location", "end")
            index_codecs = list(conf.get("index_codecs", []))
            if self.index_location not in ("start", "end") or not index_codecs or \
                    index_codecs[0].get("name") != "bytes" or \
                    (index_codecs[0].get("configuration") or {}).get("endian", "little") != "little" or \
                    _codec_names(index_codecs[1:]) not in ([], ["crc32c"]):
                raise ValueError("unsupported shard index")
            self.index_crc = len(index_codecs) == 2
            codecs = list(conf["codecs"])
        else:
            self.chunk = outer
            self.per_shard = None
        names = _codec_names(codecs)
        if names not in (["bytes"], ["bytes", "blosc"]) or \
                not _little_endian_ok(codecs[0], self.dtype.itemsize):
            raise ValueError("unsupported chunk codecs")
        self.compressed = len(names) == 2
        self.chunk_nbytes = self.chunk * self.dtype.itemsize
        self.name = name
        self.sep = sep

    def file_key(self, j: int) -> str:
        """Path of chunk (or shard) file ``j`` relative to the store root."""
        return f"{self.name}/c{self.sep}{j}"

    @property
    def index_nbytes(self) -> int:
        return 16 * self.per_shard + (4 if self.index_crc else 0)


def crc32c_func():
    """google_crc32c's crc32c of bytes (zarr's shard index checksum), or None when absent."""
    try:
        import google_crc32c
    except ImportError:  # zarr depends on it; without it the index is only bounds-checked
        return None
    return google_crc32c.value


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = None


def _decode_pool() -> ThreadPoolExecutor:
    """The process's decoding threads (made again in a forked child, whose copy has none)."""
    global _pool, _pool_pid, _pool_lock
    if _pool_pid != os.getpid():
        _pool_lock = threading.Lock()  # a fork may have copied it held
        _pool, _pool_pid = None, os.getpid()
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="neurodata-decode")
        return _pool


def _pieces(starts: np.ndarray, stops: np.ndarray, chunk: int):
    """Split segments ``[starts, stops)`` at chunk boundaries.

    Returns ``(k, lo, hi, dst)`` arrays: chunk number, range inside the chunk,
    and the offset in the concatenated output, sorted by chunk.
    """
    lengths = stops - starts
    keep = lengths > 0
    starts, stops = starts[keep], stops[keep]
    dst0 = np.concatenate(([0], np.cumsum(lengths[keep])[:-1])).astype(np.int64)
    first = starts // chunk
    last = (stops - 1) // chunk
    n = last - first + 1
    seg = np.repeat(np.arange(len(starts)), n)
    k = np.repeat(first, n) + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
    lo = np.maximum(starts[seg], k * chunk)
    hi = np.minimum(stops[seg], (k + 1) * chunk)
    dst = dst0[seg] + (lo - starts[seg])
    order = np.argsort(k, kind="stable")
    return k[order], lo[order] - k[order] * chunk, hi[order] - k[order] * chunk, dst[order]


class DirectReader:
    """Read segments of the 1-D arrays of a local store without zarr.

    Parameters
    ----------
    root : str
        The store folder.
    layouts : dict
        Array name -> :class:`ColumnLayout`.
    snapshot : StoreSnapshot, optional
        The pin of the store folder (:mod:`neurodata.format.snapshot`): files
        are opened relative to its descriptor, so every read sees the store
        version the reader was opened on even if the path was swapped since.
    """

    def __init__(self, root: str, layouts: Mapping[str, ColumnLayout], snapshot=None):
        self.root = root
        self.layouts = dict(layouts)
        self.snapshot = snapshot
        from numcodecs import blosc

        self._decompress = blosc.decompress
        self._crc = crc32c_func()
        self._index: dict = {}
        self._reset()

    def _reset(self) -> None:
        self.close()  # in a forked child these are the child's own copies
        self._files = OpenFiles(self._open)
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the files kept open between reads."""
        files = getattr(self, "_files", None)
        if files is not None:
            files.close()

    def __getstate__(self):  # pickles without descriptors; see EventStoreReader
        raise TypeError("DirectReader is rebuilt in each process, not pickled")

    # -- files --------------------------------------------------------------------
    def _open(self, key: str) -> int | None:
        try:
            if self.snapshot is None:
                return os.open(os.path.join(self.root, key), os.O_RDONLY)
            dir_fd = self.snapshot.dir_fd
            if dir_fd is None:
                raise UnreadableChunk("the store folder is no longer pinned")
            return os.open(key, os.O_RDONLY, dir_fd=dir_fd)
        except FileNotFoundError:
            return None

    def _fd(self, key: str) -> int | None:
        """Open descriptor of file ``key`` (cached; caller holds the lock)."""
        return self._files.get(key)

    def _shard_index(self, lay: ColumnLayout, key: str, fd: int) -> np.ndarray:
        idx = self._index.get(key)
        if idx is not None:
            return idx
        size = os.fstat(fd).st_size
        nb = lay.index_nbytes
        if size < nb:
            raise UnreadableChunk(f"{key}: shard smaller than its index")
        raw = os.pread(fd, nb, size - nb if lay.index_location == "end" else 0)
        if len(raw) != nb:
            raise UnreadableChunk(f"{key}: short read of the shard index")
        if lay.index_crc and self._crc is not None:
            want = int.from_bytes(raw[-4:], "little")
            if self._crc(raw[:-4]) != want:
                raise UnreadableChunk(f"{key}: shard index checksum mismatch")
        idx = np.frombuffer(raw, "<u8", 2 * lay.per_shard).reshape(lay.per_shard, 2)
        written = idx[:, 0] != _EMPTY
        offs, lens = idx[written, 0], idx[written, 1]
        if np.any(offs + lens > size) or np.any(offs + lens < offs):
            raise UnreadableChunk(f"{key}: shard index points past the end of the file")
        self._index[key] = idx
        return idx

    def _chunk_bytes(self, lay: ColumnLayout, k: int) -> bytes | None:
        """Stored bytes of inner chunk ``k``, or None when it was never written."""
        if self._pid != os.getpid():
            self._reset()  # forked: the lock may have been copied held; descriptors are shared
        if lay.per_shard is None:
            key = lay.file_key(k)
            with self._lock:
                fd = self._fd(key)
                if fd is None:
                    return None
                size = os.fstat(fd).st_size
                return os.pread(fd, size, 0)
        j, within = divmod(k, lay.per_shard)
        key = lay.file_key(j)
        with self._lock:
            fd = self._fd(key)
            if fd is None:
                return None
            off, nbytes = (int(v) for v in self._shard_index(lay, key, fd)[within])
            if off == _EMPTY and nbytes == _EMPTY:
                return None
            raw = os.pread(fd, nbytes, off)
        if len(raw) != nbytes:
            raise UnreadableChunk(f"{key}: short read of chunk {within}")
        return raw

    # -- decoding -----------------------------------------------------------------
    def _decode(self, lay: ColumnLayout, raw: bytes, dest: np.ndarray) -> None:
        """Decode one chunk's bytes into ``dest`` (exactly one chunk long)."""
        if not lay.compressed:
            if len(raw) != lay.chunk_nbytes:
                raise UnreadableChunk(f"{lay.name}: chunk of {len(raw)} bytes, expected {lay.chunk_nbytes}")
            dest[:] = np.frombuffer(raw, lay.dtype)
            return
        if len(raw) < _BLOSC_HEADER:
            raise UnreadableChunk(f"{lay.name}: chunk shorter than a blosc header")
        nbytes, _, cbytes = np.frombuffer(raw, "<u4", 3, 4).tolist()
        if nbytes != lay.chunk_nbytes or cbytes != len(raw):
            raise UnreadableChunk(f"{lay.name}: blosc header does not match the chunk shape")
        self._decompress(raw, dest)

    def _fill_chunk(self, lay: ColumnLayout, out: np.ndarray, k: int, pieces) -> None:
        """Decode chunk ``k`` once and copy its ``(lo, hi, dst)`` pieces into ``out``."""
        raw = self._chunk_bytes(lay, k)
        if raw is None:
            for lo, hi, dst in pieces:
                out[dst:dst + hi - lo] = lay.fill
            return
        if len(pieces) == 1 and pieces[0][0] == 0 and pieces[0][1] == lay.chunk:
            dst = pieces[0][2]
            self._decode(lay, raw, out[dst:dst + lay.chunk])  # straight into the output
            return
        block = np.empty(lay.chunk, lay.dtype)
        self._decode(lay, raw, block)
        for lo, hi, dst in pieces:
            out[dst:dst + hi - lo] = block[lo:hi]

    def read(self, starts: Sequence[int], stops: Sequence[int], names: Sequence[str]) -> dict:
        """Concatenated segments ``[starts[i], stops[i])`` of each array in ``names``.

        Segments must lie inside the arrays (``0 <= start <= stop <= n``).
        """
        starts = np.asarray(starts, np.int64).reshape(-1)
        stops = np.asarray(stops, np.int64).reshape(-1)
        total = int((stops - starts).sum()) if len(starts) else 0
        out, tasks = {}, []
        for name in names:
            lay = self.layouts[name]
            if len(starts) and (starts.min() < 0 or stops.max() > lay.n or np.any(stops < starts)):
                raise ValueError("segments outside the array")
            out[name] = col = np.empty(total, lay.dtype)
            if not total:
                continue
            k, lo, hi, dst = _pieces(starts, stops, lay.chunk)
            bounds = np.flatnonzero(np.diff(k)) + 1
            rows = list(zip(lo.tolist(), hi.tolist(), dst.tolist()))
            for a, b in zip(np.concatenate(([0], bounds)).tolist(),
                            np.concatenate((bounds, [len(k)])).tolist()):
                tasks.append((lay, col, int(k[a]), rows[a:b]))
        if len(tasks) == 1:
            self._fill_chunk(*tasks[0])
        elif tasks:
            futures = [_decode_pool().submit(self._fill_chunk, *t) for t in tasks]
            wait(futures)  # all done (none still writing into ``out``) before any error is raised
            for f in futures:
                f.result()
        return out


def direct_reader(root: str, metas: Mapping[str, Mapping], snapshot=None) -> DirectReader | None:
    """A :class:`DirectReader` for arrays ``{name: zarr v3 metadata}``, or None if any is unsupported."""
    try:
        layouts = {name: ColumnLayout(meta, name) for name, meta in metas.items()}
        from numcodecs import blosc  # noqa: F401  (decoder present)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, ImportError):
        return None
    return DirectReader(root, layouts, snapshot)
