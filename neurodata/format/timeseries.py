"""Time-series stores (schema ``timeseries/1``): EEG, sEEG, iEEG recordings.

Layout (see docs/format.md, section "timeseries"): one zarr group per
recording below the root, each holding

- ``data`` ``(channel, time)`` float32 in SI units (volts), chunked along time
  with all channels in one chunk, so a time window decodes only the chunks it
  overlaps;
- coordinates on ``channel``: ``channel`` (name), ``ch_type``, ``unit`` and,
  when known, ``position`` ``(channel, xyz)`` in metres and ``region``;
- the ``annotation`` table (``annotation_onset`` s, ``annotation_duration`` s,
  ``annotation_description``) and the ``event`` table (``event_sample``,
  ``event_code``, ``event_label``);
- attributes ``sfreq``, ``n_times``, ``recording``, ``subject``, ``session``.

Recordings are written time block by time block, a whole shard at a time, so
converting a multi-hour recording keeps memory bounded.
"""
from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import zarr

from neurodata.errors import CorruptFileError, NeurodataError, SchemaError
from neurodata.format.schema import SCHEMA_ATTR, parse_schema
from neurodata.format.shards import OpenFiles, crc32c_func
from neurodata.format.snapshot import checked_read, open_pinned
from neurodata.format.store import _jsonable, codec, create_array, finalize_store, open_new_group

#: target bytes of one decoded chunk (all channels x time_chunk samples, float32). Measured
#: (benchmarks/bench_eeg.py, random 4 s windows of 64 channels at 256 Hz): 256 KiB chunks
#: (1024 samples, a window spans two) serve 1.4-1.5x the windows/s of 64 KiB chunks (a window
#: spans five: the per-chunk cost dominates) and 1.6-3x those of 512 KiB-1 MiB chunks (decoding
#: beyond the window dominates)
CHUNK_BYTES = 1 << 18
#: chunks per shard file along time (a shard file of about 4 MiB)
CHUNKS_PER_SHARD = 16
#: codecs of ``data`` (``data_codec=`` of the writers and loaders). float32 signals compress
#: little: on the MNE test recordings (EDF, BDF, BrainVision) "lz4" (blosc-lz4, byte shuffle)
#: keeps 0.58-0.84 of the raw size, decoded at 0.8-2.2 GB/s, "zstd" (zstd-5, bit shuffle)
#: 0.45-0.73 at 0.24-0.30 GB/s. "none" (the default) stores chunks raw, so a window costs
#: only the read of its bytes, straight into the batch when it is whole chunks: 3-3.5x the
#: windows/s of "lz4" from the page cache (benchmarks/bench_eeg.py). Compress for archives,
#: publishing, or datasets much larger than RAM on slow disks, where bytes read dominate.
DATA_CODECS = {"none": None,
               "lz4": dict(cname="lz4", clevel=5, shuffle="shuffle"),
               "zstd": dict(cname="zstd", clevel=5, shuffle="bitshuffle")}
DEFAULT_DATA_CODEC = "none"


def data_compressor(name: str | None):
    """The zarr codec for ``data_codec=name`` (one of :data:`DATA_CODECS`, None: the
    default); None when chunks are stored raw."""
    name = DEFAULT_DATA_CODEC if name is None else name
    if name not in DATA_CODECS:
        raise ValueError(f"data_codec must be one of {sorted(DATA_CODECS)}, not {name!r}")
    conf = DATA_CODECS[name]
    return None if conf is None else codec(**conf)
#: channel types the format names (others are stored as given)
CHANNEL_TYPES = ("eeg", "seeg", "ecog", "dbs", "eog", "emg", "ecg", "stim", "resp", "misc")

__all__ = ["TimeseriesStoreWriter", "RecordingWriter", "Recording", "TimeseriesDataset",
           "open_store", "preview", "default_time_chunk", "recording_name"]


def default_time_chunk(n_channels: int) -> int:
    """Samples per chunk: a power of two giving about :data:`CHUNK_BYTES` per chunk."""
    n = max(1, CHUNK_BYTES // (4 * max(1, n_channels)))
    return int(min(1 << 16, max(256, 1 << (n.bit_length() - 1))))


def recording_name(name: str) -> str:
    """A group name from a file stem or BIDS entity string (letters, digits, ``-_.@``)."""
    s = re.sub(r"[^A-Za-z0-9_.@-]+", "_", str(name)).strip("._") or "recording"
    return s


class RecordingWriter:
    """Append ``(channel, time)`` blocks of one recording; made by :class:`TimeseriesStoreWriter`."""

    def __init__(self, group: zarr.Group, n_channels: int, n_times: int, time_chunk: int,
                 path: str, data_codec: str | None = None):
        self.group = group
        self.n_channels, self.n_times = n_channels, n_times
        self.time_chunk = time_chunk
        self.shard = time_chunk * CHUNKS_PER_SHARD
        self.path = path
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self._written = 0
        self.data = create_array(
            group, "data", dims=["channel", "time"], shape=(n_channels, n_times),
            dtype=np.float32, chunks=(n_channels, time_chunk),
            shards=(n_channels, self.shard) if n_times >= self.shard else None,
            attrs={"coordinates": "ch_type unit", "long_name": "signal (SI units, see unit)"},
            compressor=data_compressor(data_codec))
        self._events = None
        self._annotations = None

    @property
    def n_written(self) -> int:
        return self._written + self._buffered

    def write(self, block: np.ndarray) -> None:
        """Append a ``(channel, time)`` block (any length; converted to float32)."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.n_channels:
            raise ValueError(f"block shape {block.shape} does not match {self.n_channels} channels")
        if self.n_written + block.shape[1] > self.n_times:
            raise NeurodataError(f"more samples written than announced ({self.n_times})", self.path)
        if block.shape[1] == 0:
            return
        self._buf.append(block)
        self._buffered += block.shape[1]
        if self._buffered >= self.shard:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._buffered:
            return
        buf = np.concatenate(self._buf, axis=1) if len(self._buf) > 1 else self._buf[0]
        n = self._buffered if final else (self._buffered // self.shard) * self.shard
        s = self._written
        self.data[:, s:s + n] = buf[:, :n]
        rest = buf[:, n:]
        self._buf = [rest] if rest.shape[1] else []
        self._written += n
        self._buffered -= n

    def set_annotations(self, onset, duration, description) -> None:
        """Annotations: onsets and durations in seconds from the first sample, text labels."""
        onset = np.asarray(onset, np.float64).reshape(-1)
        duration = np.broadcast_to(np.asarray(duration, np.float64), onset.shape)
        description = np.asarray(list(description), dtype=object).reshape(-1)
        if not (len(onset) == len(duration) == len(description)):
            raise ValueError("annotation onset, duration and description differ in length")
        self._annotations = (onset, np.array(duration), description)

    def set_events(self, sample, code, label=None) -> None:
        """Events: sample index (from the first stored sample), integer code, text label."""
        sample = np.asarray(sample, np.int64).reshape(-1)
        code = np.asarray(code, np.int64).reshape(-1)
        if label is None:
            label = code.astype(str)
        label = np.asarray(list(label), dtype=object).reshape(-1)
        if not (len(sample) == len(code) == len(label)):
            raise ValueError("event sample, code and label differ in length")
        self._events = (sample, code, label)

    def close(self) -> None:
        """Write what is buffered and the tables; every announced sample must be written."""
        self._flush(final=True)
        if self._written != self.n_times:
            raise NeurodataError(f"recording {self.group.basename!r}: {self._written} samples "
                                 f"written of {self.n_times} announced", self.path)
        g = self.group
        onset, duration, desc = self._annotations or (np.zeros(0), np.zeros(0),
                                                      np.zeros(0, dtype=object))
        create_array(g, "annotation_onset", onset, dims=["annotation"], attrs={"units": "s"})
        create_array(g, "annotation_duration", duration, dims=["annotation"], attrs={"units": "s"})
        create_array(g, "annotation_description", desc, dims=["annotation"])
        sample, code, label = self._events or (np.zeros(0, np.int64), np.zeros(0, np.int64),
                                               np.zeros(0, dtype=object))
        create_array(g, "event_sample", sample, dims=["event"], attrs={"units": "sample"})
        create_array(g, "event_code", code, dims=["event"])
        create_array(g, "event_label", label, dims=["event"])
        g.attrs["n_annotations"] = int(len(onset))
        g.attrs["n_events"] = int(len(sample))


class TimeseriesStoreWriter:
    """Write a new time-series store at ``path`` (a fresh folder).

    Use inside :func:`neurodata.format.atomic_store` (``neurodata.convert``
    does that); add recordings with :meth:`add_recording`, stream their data
    with :meth:`RecordingWriter.write`, then call :meth:`close`.

    Parameters
    ----------
    path : path-like
        Folder to create.
    attrs : dict, optional
        Extra root attributes (dataset name, licence, citation, ...).
    data_codec : {"none", "lz4", "zstd"}, optional
        Compression of the signal chunks (see :data:`DATA_CODECS`; default
        :data:`DEFAULT_DATA_CODEC`, raw: the fastest window reads); "zstd" makes the
        smallest store.
    """

    def __init__(self, path, attrs: dict | None = None, data_codec: str | None = None):
        data_compressor(data_codec)  # checks the name before anything is written
        self.data_codec = data_codec
        self.path = os.fspath(path)
        self._root = open_new_group(self.path, "timeseries")
        self._attrs = dict(attrs or {})
        self._recordings: list[str] = []
        self._open: list[RecordingWriter] = []

    def add_recording(self, name: str, ch_names: Sequence[str], ch_types: Sequence[str],
                      sfreq: float, n_times: int, *, units: Sequence[str] | None = None,
                      positions: np.ndarray | None = None, regions: Sequence[str] | None = None,
                      attrs: dict | None = None, time_chunk: int | None = None) -> RecordingWriter:
        """Create the group of one recording and return its writer.

        Parameters
        ----------
        name : str
            Group name (made safe with :func:`recording_name`; must be unique).
        ch_names, ch_types : sequence of str
            One entry per channel (``ch_type`` from :data:`CHANNEL_TYPES` where it fits).
        sfreq : float
            Sampling rate in Hz, the same for every channel of the recording.
        n_times : int
            Samples per channel that will be written.
        units : sequence of str, optional
            SI unit per channel (default ``"V"``).
        positions : (n_channels, 3) array, optional
            Contact positions in metres (NaN where unknown), e.g. from sEEG ``electrodes.tsv``.
        regions : sequence of str, optional
            Anatomical label per contact.
        attrs : dict, optional
            ``subject``, ``session``, ``meas_date``, ``source``, ... (JSON-able).
        time_chunk : int, optional
            Samples per chunk (default :func:`default_time_chunk`).
        """
        name = recording_name(name)
        if name in self._recordings:
            raise ValueError(f"recording {name!r} added twice")
        n_ch = len(ch_names)
        if len(ch_types) != n_ch:
            raise ValueError("ch_names and ch_types differ in length")
        if not np.isfinite(sfreq) or sfreq <= 0:
            raise NeurodataError(f"recording {name!r}: invalid sampling rate {sfreq!r}", self.path)
        g = self._root.create_group(name)
        create_array(g, "channel", np.asarray(list(ch_names), dtype=object), dims=["channel"])
        create_array(g, "ch_type", np.asarray(list(ch_types), dtype=object), dims=["channel"])
        create_array(g, "unit", np.asarray(list(units) if units is not None else ["V"] * n_ch,
                                           dtype=object), dims=["channel"])
        if positions is not None:
            pos = np.asarray(positions, np.float64).reshape(n_ch, 3)
            create_array(g, "position", pos, dims=["channel", "xyz"], attrs={"units": "m"})
        if regions is not None:
            create_array(g, "region", np.asarray(list(regions), dtype=object), dims=["channel"])
        tc = int(time_chunk or default_time_chunk(n_ch))
        a = {"sfreq": float(sfreq), "n_times": int(n_times), "recording": name,
             "subject": None, "session": None, "time_chunk": tc}
        a.update(attrs or {})
        g.attrs.update(_jsonable(a))
        self._recordings.append(name)
        w = RecordingWriter(g, n_ch, int(n_times), tc, self.path, self.data_codec)
        self._open.append(w)
        return w

    def close(self, provenance: dict | None = None) -> None:
        """Close every recording, write the root attributes and consolidate metadata."""
        for w in self._open:
            if "annotation_onset" not in w.group:  # not closed by the caller yet
                w.close()
        if not self._recordings:
            raise NeurodataError("no recording was written", self.path)
        attrs = {"recordings": list(self._recordings), "n_recordings": len(self._recordings)}
        attrs.update(self._attrs)
        if provenance is not None:
            attrs["provenance"] = provenance
        self._root.attrs.update(_jsonable(attrs))
        finalize_store(self.path)


class _LocalChunks:
    """Read time ranges of a local ``data`` array straight from its chunk files.

    zarr-python's per-call overhead (about a millisecond) dominates reading a
    4 s window; for the layout this module writes (one chunk row of all
    channels, blosc or raw inside optional sharding, index at the end) a
    chunk's bytes are found from the shard index (read once per shard and
    cached) and read with one ``preadv`` into a reused buffer -- or, for raw
    chunks a window covers whole, straight into the window. Any other layout,
    or a remote store, uses zarr.
    """

    def __init__(self, folder: Path, meta: dict):
        from numcodecs import blosc

        self._decompress = blosc.decompress
        self.folder = folder
        self.n_channels, self.n_times = (int(v) for v in meta["shape"])
        outer = [int(v) for v in meta["chunk_grid"]["configuration"]["chunk_shape"]]
        codecs = meta["codecs"]
        if codecs[0]["name"] == "sharding_indexed":
            conf = codecs[0]["configuration"]
            inner = [int(v) for v in conf["chunk_shape"]]
            if conf.get("index_location", "end") != "end" or \
                    [c["name"] for c in conf["index_codecs"]] != ["bytes", "crc32c"]:
                raise ValueError("unsupported shard index")
            self.shard = outer[1]
            self.chunk = inner[1]
            codecs = conf["codecs"]
        else:
            self.shard = None
            self.chunk = outer[1]
        names = [c["name"] for c in codecs]
        if names not in (["bytes", "blosc"], ["bytes"]) or \
                codecs[0].get("configuration", {}).get("endian", "little") != "little" or \
                sys.byteorder != "little" or meta["data_type"] != "float32" or \
                outer[0] != self.n_channels:
            raise ValueError("unsupported codecs")
        self.compressed = names == ["bytes", "blosc"]
        self.chunk_bytes = 4 * self.n_channels * self.chunk
        sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
        if meta.get("chunk_key_encoding", {}).get("name", "default") != "default" or sep != "/":
            raise ValueError("unsupported chunk keys")
        self._base = os.path.join(os.fspath(folder), "c", "0")
        self._index: dict[int, np.ndarray] = {}
        # each thread keeps its own open files, so that reads of pipeline threads never
        # wait on one another (and a file is never closed under another thread's read)
        self._lock = threading.Lock()
        self._all_files: list[OpenFiles] = []
        self._tls = threading.local()  # per thread: open files, decode buffers

    def close(self) -> None:
        """Close the shard files kept open between reads (callers are alone)."""
        with self._lock:
            for files in self._all_files:
                files.close()

    def _open_shard(self, j: int) -> int | None:
        try:
            return os.open(os.path.join(self._base, str(j)), os.O_RDONLY)
        except FileNotFoundError:
            return None

    def _fd(self, j: int) -> int | None:
        files = getattr(self._tls, "files", None)
        if files is None:
            files = self._tls.files = OpenFiles(self._open_shard)
            with self._lock:
                self._all_files.append(files)
        return files.get(j)

    def _shard_index(self, j: int, fd: int) -> np.ndarray:
        """``(chunks per shard, 2)`` offsets and sizes of shard ``j``."""
        idx = self._index.get(j)
        if idx is None:
            name = os.path.join(self._base, str(j))
            per = self.shard // self.chunk
            size = os.fstat(fd).st_size
            if size < 16 * per + 4:
                raise CorruptFileError(f"shard file of {size} bytes is shorter than its index",
                                       name)
            raw = os.pread(fd, 16 * per + 4, size - (16 * per + 4))
            crc = crc32c_func()
            if crc is not None and crc(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
                raise CorruptFileError("shard index checksum mismatch (damaged or truncated "
                                       "shard file)", name)
            # kept as a small array (1 KiB a shard), not Python ints (~10x more)
            idx = np.frombuffer(raw, "<u8", 2 * per).reshape(per, 2)
            ends = idx[:, 0] + idx[:, 1]
            if np.any((idx[:, 0] != _EMPTY) & ((ends > size) | (ends < idx[:, 0]))):
                raise CorruptFileError("shard index points past the end of the file", name)
            self._index[j] = idx  # two threads may both read it: same value
        return idx

    def _locate(self, k: int):
        """``(fd, offset, size, file)`` of chunk ``k``, or None when it was never written."""
        if self.shard is None:
            name = os.path.join(self._base, str(k))
            fd = self._files_plain(name)
            return None if fd is None else (fd, 0, os.fstat(fd).st_size, name)
        per = self.shard // self.chunk
        j, within = divmod(k, per)
        fd = self._fd(j)
        if fd is None:
            return None
        idx = self._shard_index(j, fd)
        off, n = int(idx[within, 0]), int(idx[within, 1])
        if off == _EMPTY:
            return None
        return fd, off, n, os.path.join(self._base, str(j))

    def _files_plain(self, name: str) -> int | None:
        try:
            return os.open(name, os.O_RDONLY)
        except FileNotFoundError:
            return None

    def _chunk_into(self, k: int, dst: np.ndarray) -> bool:
        """Decode chunk ``k`` into ``dst`` (``(channel, chunk)`` float32, contiguous).

        False when the chunk was never written (its samples are the fill value 0).
        """
        loc = self._locate(k)
        if loc is None:
            return False
        fd, off, n, name = loc
        try:
            if not self.compressed:
                if n != self.chunk_bytes:
                    raise CorruptFileError(f"chunk {k} holds {n} bytes, {self.chunk_bytes} "
                                           "expected", name)
                got = os.preadv(fd, [dst], off)
            else:
                raw = getattr(self._tls, "raw", None)
                if raw is None or len(raw) < n:
                    raw = self._tls.raw = bytearray(max(n, self.chunk_bytes + 64))
                view = memoryview(raw)[:n]
                got = os.preadv(fd, [view], off)
                if got == n:
                    try:
                        self._decompress(view, dst)
                    except Exception as e:
                        raise CorruptFileError(f"chunk {k} does not decode: {e}", name) from None
        finally:
            if self.shard is None:
                os.close(fd)
        if got != n:
            raise CorruptFileError(f"chunk {k}: {got} of {n} bytes readable (truncated file)",
                                   name)
        return True

    def _buffer(self) -> np.ndarray:
        spare = getattr(self._tls, "buffers", None)
        if spare:
            return spare.pop()
        return np.empty((self.n_channels, self.chunk), np.float32)

    def _release(self, buf: np.ndarray) -> None:
        spare = getattr(self._tls, "buffers", None)
        if spare is None:
            spare = self._tls.buffers = []
        if len(spare) < 3:
            spare.append(buf)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((self.n_channels, stop - start), np.float32)
        c = self.chunk
        buf = self._buffer()
        for k in range(start // c, -(-stop // c)):
            a, b = max(start, k * c), min(stop, (k + 1) * c)
            if not self._chunk_into(k, buf):
                out[:, a - start:b - start] = 0.0
            else:
                out[:, a - start:b - start] = buf[:, a - k * c:b - k * c]
        self._release(buf)
        return out

    def read_windows(self, starts, length: int, out: np.ndarray, rows, picks=None) -> None:
        """Samples ``[starts[i], starts[i] + length)`` into ``out[rows[i]]`` (channel, time).

        ``starts`` ascending and inside the recording. Each chunk is read once
        into a reused buffer, however many windows overlap it, and copied
        straight into the windows; a window that is exactly one chunk (and all
        channels) is read into its place in ``out`` with no copy.
        """
        c = self.chunk
        cache: dict[int, np.ndarray | None] = {}  # the chunks the current window overlaps
        direct = picks is None and length == c and out.dtype == np.float32
        for s, j in zip(np.asarray(starts).tolist(), np.asarray(rows).tolist()):
            k0, k1 = s // c, -(-(s + length) // c)
            for k in [k for k in cache if k < k0]:  # starts ascend: never needed again
                buf = cache.pop(k)
                if buf is not None:
                    self._release(buf)
            dst = out[j]
            if direct and s == k0 * c and k0 not in cache and dst.flags.c_contiguous:
                if not self._chunk_into(k0, dst):
                    dst[...] = 0.0
                continue
            for k in range(k0, k1):
                if k not in cache:
                    buf = self._buffer()
                    if self._chunk_into(k, buf):
                        cache[k] = buf
                    else:
                        self._release(buf)
                        cache[k] = None
                block = cache[k]
                a, b = max(s, k * c), min(s + length, (k + 1) * c)
                if block is None:
                    dst[:, a - s:b - s] = 0.0
                elif picks is None:
                    dst[:, a - s:b - s] = block[:, a - k * c:b - k * c]
                else:
                    dst[:, a - s:b - s] = block[picks, a - k * c:b - k * c]
        for buf in cache.values():
            if buf is not None:
                self._release(buf)


_EMPTY = (1 << 64) - 1  # shard index entry of a chunk never written


def _local_chunks(group: zarr.Group, path) -> _LocalChunks | None:
    """A :class:`_LocalChunks` for a local store in the layout written here, else None."""
    if not isinstance(path, (str, os.PathLike)) or "://" in os.fspath(path):
        return None
    folder = Path(path) / group.path / "data"
    try:
        meta = json.loads((folder / "zarr.json").read_text())
        return _LocalChunks(folder, meta)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


class Recording:
    """One recording of a time-series store, read lazily.

    ``read(start, stop)`` decodes only the chunks overlapping ``[start, stop)``.
    Reads of a local store are pinned to the version its dataset opened
    (``snap``, see neurodata/format/snapshot.py): they raise
    :class:`~neurodata.errors.StoreReplacedError` once the store was replaced.
    """

    def __init__(self, group: zarr.Group, path: str, snap=None):
        self.group = group
        self.path = path
        self._snap = snap
        self.attrs = dict(group.attrs)
        try:
            self.data = group["data"]
            self.ch_names = [str(v) for v in np.asarray(group["channel"][:])]
            self.ch_types = [str(v) for v in np.asarray(group["ch_type"][:])]
            self.units = [str(v) for v in np.asarray(group["unit"][:])]
        except KeyError as e:
            raise SchemaError(f"recording {group.basename!r} lacks array {e}", path) from None
        if "sfreq" not in self.attrs:
            raise SchemaError(f"recording {group.basename!r} has no 'sfreq' attribute", path)
        self.name = str(self.attrs.get("recording", group.basename))
        self.sfreq = float(self.attrs["sfreq"])
        self.n_channels, self.n_times = (int(v) for v in self.data.shape)
        self.time_chunk = int(self.data.chunks[1])
        self._direct = _local_chunks(group, path)
        self._events = None
        self._annotations = None

    # pickles (to dask workers) without open files: the chunk reader is rebuilt there
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_direct"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._direct = _local_chunks(self.group, self.path)

    def __repr__(self) -> str:
        return (f"<Recording {self.name}: {self.n_channels} channels x {self.n_times} samples "
                f"at {self.sfreq:g} Hz ({self.duration:.1f} s)>")

    @property
    def duration(self) -> float:
        """Seconds covered by the samples."""
        return self.n_times / self.sfreq

    @property
    def subject(self):
        return self.attrs.get("subject")

    @property
    def session(self):
        return self.attrs.get("session")

    @property
    def positions(self) -> np.ndarray | None:
        """``(channel, 3)`` contact positions in metres, or None."""
        if "position" not in self.group:
            return None
        return checked_read(self._snap, lambda: np.asarray(self.group["position"][:]))

    @property
    def regions(self) -> list[str] | None:
        if "region" not in self.group:
            return None
        return checked_read(self._snap, lambda: [str(v) for v in self.group["region"][:]])

    def read(self, start: int = 0, stop: int | None = None, channels=None) -> np.ndarray:
        """Samples ``[start, stop)`` as float32 ``(channel, time)``; ``channels`` indexes rows.

        Parts outside the recording are not padded: the range is clipped.
        """
        stop = self.n_times if stop is None else min(int(stop), self.n_times)
        start = max(0, int(start))
        stop = max(start, stop)
        if self._direct is not None:
            block = checked_read(self._snap, lambda: self._direct.read(start, stop))
        else:
            block = checked_read(self._snap, lambda: np.asarray(self.data[:, start:stop]))
        if channels is None:
            return block
        ch = np.asarray(channels)
        if ch.dtype == bool:
            ch = np.nonzero(ch)[0]
        return block[ch]

    def read_windows(self, starts, length: int, out: np.ndarray, rows, picks=None) -> None:
        """Windows ``[starts[i], starts[i] + length)`` into ``out[rows[i]]``.

        ``starts`` ascending, each window inside the recording; ``picks``
        selects channel rows (None: all). A local store decodes every chunk once
        for all the windows overlapping it, straight into ``out``.
        """
        starts = np.asarray(starts, np.int64)
        if len(starts) and (starts[0] < 0 or starts[-1] + length > self.n_times
                            or np.any(np.diff(starts) < 0)):
            raise ValueError("window starts must ascend and lie inside the recording")
        if self._direct is not None:
            checked_read(self._snap, lambda: self._direct.read_windows(
                starts, int(length), out, rows, picks))
            return

        def _zarr():
            # overlapping or touching windows in one slice (at most about 4 MiB), so that
            # a remote store fetches each chunk once
            st, rw = starts.tolist(), np.asarray(rows).tolist()
            cap = max(int(length), (4 << 20) // (4 * self.n_channels))
            i = 0
            while i < len(st):
                j = i + 1
                while j < len(st) and st[j] <= st[j - 1] + length and \
                        st[j] + length - st[i] <= cap:
                    j += 1
                block = np.asarray(self.data[:, st[i]:st[j - 1] + length])
                if picks is not None:
                    block = block[picks]
                for s, r in zip(st[i:j], rw[i:j]):
                    out[r] = block[:, s - st[i]:s - st[i] + length]
                i = j
        checked_read(self._snap, _zarr)

    def annotations(self) -> dict:
        """``{"onset", "duration", "description"}`` arrays (seconds, text)."""
        if self._annotations is None:
            g = self.group
            self._annotations = checked_read(self._snap, lambda: {
                "onset": np.asarray(g["annotation_onset"][:], np.float64),
                "duration": np.asarray(g["annotation_duration"][:], np.float64),
                "description": np.asarray(g["annotation_description"][:], dtype=object),
            })
        return self._annotations

    def events(self) -> dict:
        """``{"sample", "code", "label"}`` arrays (sample index, int code, text)."""
        if self._events is None:
            g = self.group
            self._events = checked_read(self._snap, lambda: {
                "sample": np.asarray(g["event_sample"][:], np.int64),
                "code": np.asarray(g["event_code"][:], np.int64),
                "label": np.asarray(g["event_label"][:], dtype=object),
            })
        return self._events

    def picks(self, types=None, names=None, regions=None) -> np.ndarray:
        """Channel indices by type(s), name regex and/or region regex (all must match)."""
        from neurodata.transforms.signal import pick_channels

        return pick_channels(self.ch_names, self.ch_types, types=types, pattern=names,
                             regions=self.regions, region_pattern=regions)

    def to_mne(self, start: int = 0, stop: int | None = None):
        """An ``mne.io.RawArray`` of samples ``[start, stop)`` with annotations (loads them)."""
        import mne

        ch_types = [t if t in _MNE_TYPES else "misc" for t in self.ch_types]
        info = mne.create_info(self.ch_names, self.sfreq, ch_types)
        raw = mne.io.RawArray(self.read(start, stop).astype(np.float64), info, verbose="error")
        a = self.annotations()
        if len(a["onset"]):
            t0 = start / self.sfreq
            raw.set_annotations(mne.Annotations(a["onset"] - t0, a["duration"],
                                                [str(d) for d in a["description"]]))
        return raw

    def to_xarray(self):
        """This recording as an ``xarray.Dataset`` (lazy, dask-backed) with a ``time`` coordinate."""
        import xarray as xr

        ds = xr.open_zarr(self.path, group=self.group.path, chunks={}, consolidated=False)
        return ds.assign_coords(time=np.arange(self.n_times) / self.sfreq)


_MNE_TYPES = {"eeg", "seeg", "ecog", "dbs", "eog", "emg", "ecg", "stim", "resp", "misc", "bio",
              "gsr", "temperature", "syst"}


class TimeseriesDataset:
    """A time-series store: ``len(ds)`` recordings, ``ds[i]`` (or ``ds["name"]``) a :class:`Recording`.

    Windows for training come from :meth:`windows` (fixed-length or
    event-locked), which reads only the chunks each window needs. A local
    store is pinned to the version current at open: reads return that version
    or raise :class:`~neurodata.errors.StoreReplacedError` after a
    re-conversion, never a mix (see neurodata/format/snapshot.py).
    """

    def __init__(self, path, storage_options: dict | None = None):
        self.path = path if isinstance(path, str) else os.fspath(path)
        self._storage_options = storage_options
        self._snap = open_pinned(self.path, lambda: self._open(storage_options))

    def _open(self, storage_options) -> None:
        try:
            kw = {"storage_options": storage_options} if storage_options else {}
            self.root = zarr.open_group(self.path, mode="r", **kw)
        except Exception as e:  # zarr raises several types for a missing/invalid store
            raise SchemaError(f"cannot open store ({e.__class__.__name__})", self.path) from None
        self.attrs = dict(self.root.attrs)
        if SCHEMA_ATTR not in self.attrs:
            raise SchemaError(f"not a neurodata store (no {SCHEMA_ATTR!r} attribute)", self.path)
        modality, _ = parse_schema(self.attrs[SCHEMA_ATTR], self.path)
        if modality != "timeseries":
            raise SchemaError(f"expected a timeseries store, found {modality!r}", self.path)
        names = self.attrs.get("recordings")
        if names is None:
            names = sorted(k for k, _ in self.root.groups())
        self.names = [str(n) for n in names]
        self._cache: dict[str, Recording] = {}

    # pickles as path + the pinned version: unpickled after a replacement, reads refuse
    def __getstate__(self):
        return {"path": self.path, "storage_options": self._storage_options, "snap": self._snap}

    def __setstate__(self, state):
        self.__init__(state["path"], state["storage_options"])
        old = state.get("snap")
        if old is not None and old.changed():
            self._snap = old  # replaced since pickling: every read raises StoreReplacedError

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key) -> Recording:
        if isinstance(key, str):
            name = key
            if name not in self.names:
                raise KeyError(f"no recording {name!r} in {self.path}")
        else:
            name = self.names[int(key)]
        if name not in self._cache:
            try:
                g = checked_read(self._snap, lambda: self.root[name])
            except KeyError:
                raise SchemaError(f"recording group {name!r} is missing", self.path) from None
            self._cache[name] = checked_read(self._snap, lambda: Recording(g, self.path, self._snap))
        return self._cache[name]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"<TimeseriesDataset {self.path}: {len(self)} recording(s)>"

    def windows(self, length: float | None = None, stride: float | None = None, **kw):
        """A :class:`neurodata.signal_windows.WindowSource` over this store (see there)."""
        from neurodata.signal_windows import WindowSource

        return WindowSource(self, length=length, stride=stride, **kw)

    def to_xarray(self):
        """The store as an ``xarray.DataTree`` (lazy, dask-backed), one node per recording."""
        import xarray as xr

        return xr.open_datatree(self.path, engine="zarr", chunks={})

    def provenance(self) -> dict:
        return dict(self.attrs.get("provenance", {}))

    def summary(self) -> dict:
        """Figures ``neurodata inspect`` prints: channels, types, rates, durations, tables, bytes."""
        from neurodata.format.inspect import store_bytes

        recs = []
        types: dict[str, int] = {}
        total = 0.0
        n_ann = n_ev = 0
        for r in self:
            t = {}
            for ty in r.ch_types:
                t[ty] = t.get(ty, 0) + 1
                types[ty] = types.get(ty, 0) + 1
            a = r.annotations()
            descs, counts = np.unique(a["description"].astype(str), return_counts=True)
            ev = r.events()
            codes, ecounts = np.unique(ev["code"], return_counts=True)
            recs.append({
                "name": r.name, "channels": r.n_channels, "types": t, "sfreq": r.sfreq,
                "n_times": r.n_times, "duration_s": r.duration,
                "subject": r.subject, "session": r.session,
                "annotations": {str(d): int(c) for d, c in zip(descs, counts)},
                "events": {str(c): int(n) for c, n in zip(codes, ecounts)},
                "channel_names": r.ch_names if r.n_channels <= 16 else
                r.ch_names[:8] + ["..."] + r.ch_names[-4:],
            })
            total += r.duration
            n_ann += len(a["onset"])
            n_ev += len(ev["sample"])
        nbytes = store_bytes(self.path)
        samples = sum(r.n_channels * r.n_times for r in self)
        return {
            "path": os.fspath(self.path),
            "schema": self.attrs.get(SCHEMA_ATTR),
            "recordings": len(self),
            "channel_types": types,
            "sfreq": sorted({r.sfreq for r in self}),
            "duration_s": {"total": total, "max": max((r.duration for r in self), default=0.0)},
            "annotations": n_ann,
            "events": n_ev,
            "bytes_on_disk": nbytes,
            "bytes_per_sample": (nbytes / samples) if (nbytes and samples) else None,
            "per_recording": recs,
            "provenance": self.attrs.get("provenance", {}),
        }


def open_store(path, storage_options: dict | None = None) -> TimeseriesDataset:
    """Open a ``timeseries/1`` store (local folder or fsspec URL)."""
    return TimeseriesDataset(path, storage_options=storage_options)


def preview(ds, out_png, recording=0, start: float = 0.0, seconds: float = 10.0,
            max_channels: int = 20) -> Path:
    """Draw the traces of one recording with its annotations and events into a PNG.

    Parameters
    ----------
    ds : TimeseriesDataset or path
    out_png : path-like
    recording : int or str
        Which recording.
    start, seconds : float
        Time span drawn (seconds from the first sample); only its chunks are read.
    max_channels : int
        Channels drawn (the first ones; stim channels are left out).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not isinstance(ds, TimeseriesDataset):
        ds = open_store(ds)
    rec = ds[recording]
    s0 = int(round(start * rec.sfreq))
    s1 = min(rec.n_times, s0 + max(1, int(round(seconds * rec.sfreq))))
    keep = [i for i, t in enumerate(rec.ch_types) if t != "stim"][:max_channels] or \
        list(range(min(max_channels, rec.n_channels)))
    x = rec.read(s0, s1)[keep].astype(np.float64)
    t = (s0 + np.arange(x.shape[1])) / rec.sfreq
    x = x - np.median(x, axis=1, keepdims=True)
    spread = np.nanpercentile(np.abs(x), 99) if x.size else 1.0
    spread = spread if spread > 0 else 1.0
    fig, ax = plt.subplots(figsize=(12, 0.35 * len(keep) + 1.5), dpi=100)
    offsets = -np.arange(len(keep)) * 2 * spread
    ax.plot(t, (x + offsets[:, None]).T, lw=0.5, color="k")
    ax.set_yticks(offsets, [rec.ch_names[i] for i in keep], fontsize=7)
    a = rec.annotations()
    in_view = (a["onset"] + a["duration"] >= t[0] if len(t) else False) & \
        (a["onset"] <= (t[-1] if len(t) else 0))
    for on, du, de in zip(a["onset"][in_view], a["duration"][in_view], a["description"][in_view]):
        if du > 0:
            ax.axvspan(on, on + du, color="tab:blue", alpha=0.15)
        ax.axvline(on, color="tab:blue", lw=0.8)
        ax.text(on, offsets[0] + spread, str(de), fontsize=7, color="tab:blue", rotation=45)
    ev = rec.events()
    ev_t = ev["sample"] / rec.sfreq
    sel = (ev_t >= (t[0] if len(t) else 0)) & (ev_t <= (t[-1] if len(t) else 0))
    for et, lab in zip(ev_t[sel], ev["label"][sel]):
        ax.axvline(et, color="tab:red", lw=0.8, ls="--")
        ax.text(et, offsets[-1] - spread, str(lab), fontsize=7, color="tab:red")
    ax.set_xlabel("time (s)")
    ax.set_title(f"{rec.name}: {rec.n_channels} ch at {rec.sfreq:g} Hz "
                 f"(showing {len(keep)}, {t[0] if len(t) else 0:.1f}-"
                 f"{t[-1] if len(t) else 0:.1f} s)")
    ax.set_xlim(t[0] if len(t) else 0, t[-1] if len(t) else 1)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
