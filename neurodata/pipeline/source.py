"""What a store must offer the streaming pipeline: the source protocol.

The pipeline never looks inside a modality. A source says how many samples it
holds, how they group into partitions (contiguous runs of samples that are
cheap to read together, aligned with the store's shards), and reads one
partition at a time as *batch data* (whatever the modality's transforms take
in one vectorised pass: an :class:`~neurodata.transforms.EventBatch` for
events, a ``(B, ...)`` array for EEG or calcium windows), labels and the
global sample ids. Sources are pickled to dask workers, so they hold a path,
never an open file.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Protocol, runtime_checkable

import numpy as np

from neurodata.errors import SchemaError
from neurodata.pipeline.partitions import plan_partitions

__all__ = ["StreamSource", "EventSource", "open_source", "event_batch_class"]


@runtime_checkable
class StreamSource(Protocol):
    """The protocol a store offers :func:`neurodata.stream`.

    Attributes
    ----------
    url : str
        Where the store lives (path or fsspec URL); names the store in errors.
    """

    url: str

    def __len__(self) -> int:
        """Number of samples."""

    def partitions(self) -> np.ndarray:
        """Partition bounds: int64 array ``(n_partitions + 1,)`` of sample indices.

        Partition ``k`` holds samples ``bounds[k]:bounds[k + 1]``.
        """

    def read_partition(self, k: int) -> tuple[Any, np.ndarray, np.ndarray]:
        """Read partition ``k`` once: ``(batch_data, labels, sample_ids)``."""

    def content_hash(self) -> str:
        """A digest that changes whenever the stored samples change (cache keys)."""

    def describe(self, sample_ids: np.ndarray) -> list[str]:
        """Human names of samples (for error messages)."""


def event_batch_class():
    """``neurodata.transforms.EventBatch`` when the transforms package provides it, else None."""
    try:
        from neurodata.transforms import EventBatch
    except ImportError:
        return None
    return EventBatch


class EventSource:
    """An events store (schema ``events/1``) as a stream source.

    Parameters
    ----------
    url : str or path-like
        Store folder or fsspec URL (``http(s)://``, ``s3://``, ...), opened read-only.
    storage_options : dict, optional
        Passed to fsspec for URLs.
    partition_events : int, optional
        Events per partition, rounded to whole chunks and capped at the
        store's shard size (default: one shard). A sample crossing a block
        edge makes the chunk it ends in decoded by two partitions, so larger
        blocks waste less: with 4-chunk shards an epoch decodes ~1.25x the
        store instead of 2x with one-chunk partitions.
    max_partition_samples : int, optional
        Split partitions holding more samples than this (bounds the memory of
        one transformed partition when samples are tiny).
    """

    def __init__(self, url, storage_options: dict | None = None,
                 partition_events: int | None = None, max_partition_samples: int | None = 4096):
        self.url = url if isinstance(url, str) else os.fspath(url)
        self.storage_options = storage_options
        self.partition_events = partition_events
        self.max_partition_samples = max_partition_samples
        self._reader = None
        self._bounds = None

    # sources travel to dask workers: drop the open store, reopen there
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_reader"] = None
        return state

    @property
    def reader(self):
        """The :class:`~neurodata.format.events.EventStoreReader`, opened on first use."""
        if self._reader is None:
            self._reader = _open_reader(self.url, self.storage_options)
        return self._reader

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def sensor_size(self) -> tuple:
        return self.reader.sensor_size

    def _unit(self) -> int:
        r = self.reader
        col = r.cols["t"]
        shard = int(col.shards[0]) if getattr(col, "shards", None) else int(col.chunks[0])
        chunk = r.chunk
        want = self.partition_events or shard
        unit = max(chunk, (int(want) // chunk) * chunk)
        return min(unit, max(shard, chunk))

    def partitions(self) -> np.ndarray:
        if self._bounds is None:
            r = self.reader
            self._bounds = plan_partitions(r.start, r.count, self._unit(),
                                           max_samples=self.max_partition_samples)
        return self._bounds

    def read_partition(self, k: int):
        b = self.partitions()
        i0, i1 = int(b[k]), int(b[k + 1])
        r = self.reader
        ids = np.arange(i0, i1, dtype=np.int64)
        cols, offsets = r.read_samples(ids)
        labels = r.label[i0:i1].copy()
        batch_cls = event_batch_class()
        if batch_cls is not None:
            data = batch_cls.from_columns(cols, offsets=offsets, labels=labels,
                                          sensor_size=r.sensor_size)
        else:
            data = RaggedEvents(cols["x"], cols["y"], cols["t"], cols["p"], offsets, labels,
                                r.sensor_size)
        return data, labels, ids

    def content_hash(self) -> str:
        """sha256 over the metadata, the sample table, the time index and data file stats.

        Reading every event to hash it would cost a full pass; instead the
        digest covers the consolidated metadata (shapes, attributes,
        provenance with its source digests and creation time), per-sample
        starts/counts/labels, each chunk's time range, and -- for local
        stores -- the size and modification time of every data file (stores
        are replaced atomically, so rewritten data always changes these).
        """
        r = self.reader
        h = hashlib.sha256()
        h.update(repr(sorted((k, repr(v)) for k, v in r.attrs.items())).encode())
        for name in ("x", "y", "t", "p"):
            a = r.cols[name]
            h.update(f"{name}{a.shape}{a.dtype}{a.chunks}".encode())
        for arr in (r.start, r.count, r.label, r.chunk_t_min, r.chunk_t_max):
            h.update(np.ascontiguousarray(arr).tobytes())
        if "://" not in self.url and os.path.isdir(self.url):
            for name in ("x", "y", "t", "p"):
                base = os.path.join(self.url, name)
                for dirpath, _, files in sorted(os.walk(base)):
                    for f in sorted(files):
                        st = os.stat(os.path.join(dirpath, f))
                        rel = os.path.relpath(os.path.join(dirpath, f), self.url)
                        h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()

    def describe(self, sample_ids) -> list[str]:
        ids = np.asarray(sample_ids, np.int64)
        try:
            src = self.reader.sources()[ids]
        except Exception:  # names are a courtesy for error messages
            src = [""] * len(ids)
        return [f"sample {i}" + (f" ({s})" if s else "") for i, s in zip(ids.tolist(), src)]

    def __repr__(self) -> str:
        return f"EventSource({self.url!r})"


#: readers opened in this process (a dask worker runs many partitions of one store)
_READERS: dict = {}


def _open_reader(url: str, storage_options):
    """An EventStoreReader shared per process; reopened when a local store was replaced."""
    from neurodata.format.events import EventStoreReader

    stamp = None
    if "://" not in url:
        try:
            st = os.stat(os.path.join(url, "zarr.json"))
            stamp = (st.st_ino, st.st_mtime_ns)
        except OSError:
            stamp = None
    key = (url, repr(storage_options))
    hit = _READERS.get(key)
    if hit is not None and hit[0] == stamp and stamp is not None:
        return hit[1]
    reader = EventStoreReader(url, storage_options=storage_options)
    if len(_READERS) > 16:
        _READERS.clear()
    _READERS[key] = (stamp, reader)
    return reader


class RaggedEvents:
    """Columns plus offsets for event samples, used when ``neurodata.transforms`` is absent.

    Same fields as :class:`neurodata.transforms.EventBatch` (``x, y, t, p,
    offsets, labels, sensor_size``), so the pipeline cuts both the same way.
    """

    def __init__(self, x, y, t, p, offsets, labels=None, sensor_size=None):
        self.x, self.y, self.t, self.p = x, y, t, p
        self.offsets = np.asarray(offsets, np.int64)
        self.labels = labels
        self.sensor_size = sensor_size
        self.meta = {}

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def replace(self, x=None, y=None, t=None, p=None, offsets=None, **kw):
        return RaggedEvents(self.x if x is None else x, self.y if y is None else y,
                            self.t if t is None else t, self.p if p is None else p,
                            self.offsets if offsets is None else offsets,
                            kw.get("labels", self.labels), kw.get("sensor_size", self.sensor_size))

    def split(self) -> list[np.ndarray]:
        from neurodata.events import to_structured

        whole = to_structured(self.x, self.y, self.t, self.p)
        return [whole[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]


def open_source(store, storage_options: dict | None = None, **kw) -> StreamSource:
    """Turn what the user passed to :func:`neurodata.stream` into a source.

    ``store`` may be a :class:`StreamSource` (used as is), a path or fsspec URL
    of a store, or an opened dataset (its ``path`` and ``storage_options``).
    Only events stores have a source today; other modalities plug in here.
    """
    if hasattr(store, "read_partition") and hasattr(store, "partitions"):
        return store
    if not isinstance(store, (str, os.PathLike)):
        storage_options = storage_options or getattr(store, "storage_options", None)
        store = getattr(store, "url", None) or getattr(store, "path", None) or store
    url = store if isinstance(store, str) else os.fspath(store)
    if url.startswith("hf://"):
        from neurodata.hub.fetch import hf_storage_options, resolve_hf_url

        repo, rev, inner = resolve_hf_url(url)
        url = f"hf://datasets/{repo}{'@' + rev if rev else ''}/{inner}"
        storage_options = {**hf_storage_options(url), **(storage_options or {})}
    from neurodata.dataset import store_modality

    modality = store_modality(url, storage_options)
    if modality == "events":
        return EventSource(url, storage_options=storage_options, **kw)
    raise SchemaError(f"streaming {modality!r} stores is not supported yet "
                      "(pass a StreamSource for them)", url)
