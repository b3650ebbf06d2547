"""Event stores (schema ``events/1``): writer and low-level reader.

Layout (root group, see docs/format.md):

- dimension ``event``: ``x`` uint16, ``y`` uint16, ``t`` int64 (us), ``p`` uint8
- dimension ``sample``: ``start``, ``count`` (int64), ``label`` (int64, -1 none),
  ``source`` (str), ``split`` (str, may be empty)
- dimension ``event_chunk``: ``chunk_t_min``, ``chunk_t_max`` (int64) -- the
  time index: the time range of each stored chunk of ``t``, so that a time
  window of a long recording touches only the chunks it overlaps.

Events are appended sample by sample and written a whole shard at a time,
so converting a dataset larger than memory keeps memory bounded.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import zarr

from neurodata.errors import NeurodataError, SchemaError, StoreReplacedError
from neurodata.events import COLUMN_DTYPES, COLUMNS, columns
from neurodata.format.schema import SCHEMA_ATTR, parse_schema
from neurodata.format.shards import UnreadableChunk, direct_reader
from neurodata.format.snapshot import StoreSnapshot, is_local
from neurodata.format.store import create_array, finalize_store, open_new_group

#: events per chunk (the unit of decoding and of the time index)
EVENT_CHUNK = 1 << 20
#: events per shard file
EVENT_SHARD = 1 << 22
#: samples per chunk of the per-sample table
SAMPLE_CHUNK = 1 << 16


class EventStoreWriter:
    """Append samples to a new event store at ``path`` (a fresh folder).

    Use through :func:`neurodata.convert` or inside
    :func:`neurodata.format.atomic_store`; call :meth:`close` at the end.

    Parameters
    ----------
    path : path-like
        Folder to create.
    sensor_size : (width, height, polarities)
    class_names : sequence of str, optional
    attrs : dict, optional
        Extra root attributes (licence, citation, dataset name, ...).
    chunk, shard : int
        Events per chunk and per shard (shard must be a multiple of chunk).
    """

    def __init__(self, path, sensor_size=None, class_names=None, attrs=None,
                 chunk: int = EVENT_CHUNK, shard: int = EVENT_SHARD):
        if shard % chunk:
            raise ValueError("shard must be a multiple of chunk")
        self.path = os.fspath(path)
        self.chunk, self.shard = chunk, shard
        self.sensor_size = None if sensor_size is None else [int(v) for v in sensor_size]
        self.class_names = list(class_names) if class_names is not None else None
        self._attrs = dict(attrs or {})
        self._root = open_new_group(self.path, "events")
        self._arrays = {
            name: create_array(self._root, name, dims=["event"], shape=(0,),
                               dtype=COLUMN_DTYPES[name], chunks=(chunk,), shards=(shard,),
                               attrs=_COLUMN_ATTRS[name])
            for name in COLUMNS
        }
        self._buf = {name: [] for name in COLUMNS}
        self._buffered = 0
        self._written = 0
        self._starts: list[int] = []
        self._counts: list[int] = []
        self._labels: list[int] = []
        self._sources: list[str] = []
        self._splits: list[str] = []
        self._tmin: list[int] = []
        self._tmax: list[int] = []
        self._max_xy = [0, 0]
        self._pol_seen = 0

    @property
    def n_events(self) -> int:
        return self._written + self._buffered

    def add(self, events, label: int = -1, source: str = "", split: str = "") -> int:
        """Append one sample (structured array, dict or ``(x, y, t, p)``); return its index.

        Events are sorted by time (stable) when they are not already.
        """
        x, y, t, p = columns(events)
        if len(t) > 1 and np.any(t[1:] < t[:-1]):
            order = np.argsort(t, kind="stable")
            x, y, t, p = x[order], y[order], t[order], p[order]
        self._starts.append(self.n_events)
        self._counts.append(len(t))
        self._labels.append(int(label))
        self._sources.append(str(source))
        self._splits.append(str(split or ""))
        if len(t):
            self._max_xy[0] = max(self._max_xy[0], int(x.max()))
            self._max_xy[1] = max(self._max_xy[1], int(y.max()))
            self._pol_seen = max(self._pol_seen, int(p.max()))
        for name, col in zip(COLUMNS, (x, y, t, p)):
            self._buf[name].append(col)
        self._buffered += len(t)
        if self._buffered >= self.shard:
            self._flush(final=False)
        return len(self._starts) - 1

    def add_recording(self, rec, source: str = "", label: int | None = None, split: str = "") -> None:
        """Append every sample of an :class:`~neurodata.events.EventRecording`."""
        if rec.starts is None:
            self.add((rec.x, rec.y, rec.t, rec.p), -1 if label is None else label, source,
                     split or rec.split or "")
            return
        labels = rec.labels if rec.labels is not None else np.full(len(rec.starts), -1)
        for i, (s, c) in enumerate(zip(rec.starts, rec.counts)):
            sl = slice(int(s), int(s) + int(c))
            lab = int(labels[i]) if label is None else label
            self.add((rec.x[sl], rec.y[sl], rec.t[sl], rec.p[sl]), lab,
                     f"{source}#{i}" if source else str(i), split or rec.split or "")

    def _flush(self, final: bool) -> None:
        if not self._buffered:
            return
        cols = {name: np.concatenate(self._buf[name]) if len(self._buf[name]) > 1 else self._buf[name][0]
                for name in COLUMNS}
        n = self._buffered if final else (self._buffered // self.shard) * self.shard
        start = self._written
        for name in COLUMNS:
            arr = self._arrays[name]
            arr.resize((start + n,))
            arr[start:start + n] = cols[name][:n]
            rest = cols[name][n:]
            self._buf[name] = [rest] if len(rest) else []
        t = cols["t"][:n]
        # time index: one entry per chunk
        edges = np.arange(0, n, self.chunk)
        self._tmin.extend(np.minimum.reduceat(t, edges).tolist())
        self._tmax.extend(np.maximum.reduceat(t, edges).tolist())
        self._written += n
        self._buffered -= n

    def close(self, provenance: dict | None = None) -> None:
        """Write remaining events, the sample table, the time index and attributes."""
        self._flush(final=True)
        r = self._root
        sample_kw = dict(dims=["sample"], chunks=(SAMPLE_CHUNK,))
        create_array(r, "start", np.asarray(self._starts, np.int64), **sample_kw)
        create_array(r, "count", np.asarray(self._counts, np.int64), **sample_kw)
        create_array(r, "label", np.asarray(self._labels, np.int64), **sample_kw)
        create_array(r, "source", np.asarray(self._sources, dtype=object), **sample_kw)
        create_array(r, "split", np.asarray(self._splits, dtype=object), **sample_kw)
        create_array(r, "chunk_t_min", np.asarray(self._tmin, np.int64), dims=["event_chunk"],
                     attrs={"units": "us"})
        create_array(r, "chunk_t_max", np.asarray(self._tmax, np.int64), dims=["event_chunk"],
                     attrs={"units": "us"})
        sensor = self.sensor_size or [self._max_xy[0] + 1, self._max_xy[1] + 1,
                                      2 if self._pol_seen <= 1 else self._pol_seen + 1]
        attrs = {
            "sensor_size": sensor,
            "time_unit": "us",
            "class_names": self.class_names or [],
            "event_chunk_size": self.chunk,
            "n_samples": len(self._starts),
            "n_events": self._written,
        }
        attrs.update(self._attrs)
        if provenance is not None:
            attrs["provenance"] = provenance
        r.attrs.update(_jsonable_attrs(attrs))
        finalize_store(self.path)


_COLUMN_ATTRS = {
    "x": {"long_name": "column (0 = left)", "units": "pixel"},
    "y": {"long_name": "row (0 = top)", "units": "pixel"},
    "t": {"long_name": "timestamp as recorded", "units": "us"},
    "p": {"long_name": "polarity (0 = OFF, 1 = ON)", "units": "1"},
}


def _jsonable_attrs(a):
    from neurodata.format.store import _jsonable
    return _jsonable(a)


class EventStoreReader:
    """Low-level, lazy access to an event store (local path or fsspec URL).

    Reads the per-sample table and the time index at open (small); event
    columns are read on demand, only the chunks a request overlaps. Local
    stores in the layout the writer makes are decoded straight from the shard
    files (:mod:`neurodata.format.shards`, about twice as fast as through
    zarr); remote stores and any other layout are read through zarr.
    """

    def __init__(self, path, storage_options: dict | None = None):
        self.path = os.fspath(path) if not isinstance(path, str) else path
        self._direct = self._direct_cols = None
        # a local store is pinned to the folder current at open (see format/snapshot.py):
        # an open that overlaps a replacement is retried, later reads are checked
        self._snap = None
        for _ in range(20):
            snap = StoreSnapshot(self.path) if is_local(self.path) else None
            if snap is not None and snap.identity is None:
                snap = None  # nothing there: the open below says so
            try:
                self._open(storage_options)
            except Exception:
                if snap is None or not snap.changed():
                    raise
                snap.close()
                continue  # the store was swapped under the open: open the new version
            if snap is None or not snap.changed():
                self._snap = snap
                return
            snap.close()
        raise StoreReplacedError("the store kept being replaced while opening", self.path)

    def _open(self, storage_options) -> None:
        try:
            self.root = zarr.open_group(self.path, mode="r", storage_options=storage_options) \
                if "://" in self.path else zarr.open_group(self.path, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError if hasattr(zarr.errors, "GroupNotFoundError") else FileNotFoundError) as e:
            raise SchemaError(f"cannot open store ({e.__class__.__name__})", self.path) from None
        self.attrs = dict(self.root.attrs)
        if SCHEMA_ATTR not in self.attrs:
            raise SchemaError(f"not a neurodata store (no {SCHEMA_ATTR!r} attribute)", self.path)
        modality, _ = parse_schema(self.attrs[SCHEMA_ATTR], self.path)
        if modality != "events":
            raise SchemaError(f"expected an events store, found {modality!r}", self.path)
        try:
            self.cols = {name: self.root[name] for name in COLUMNS}
            self.start = np.asarray(self.root["start"][:], np.int64)
            self.count = np.asarray(self.root["count"][:], np.int64)
            self.label = np.asarray(self.root["label"][:], np.int64)
            self.chunk_t_min = np.asarray(self.root["chunk_t_min"][:], np.int64)
            self.chunk_t_max = np.asarray(self.root["chunk_t_max"][:], np.int64)
        except KeyError as e:
            raise SchemaError(f"events store lacks array {e}", self.path) from None
        self.chunk = int(self.attrs.get("event_chunk_size", self.cols["t"].chunks[0]))
        self.sensor_size = tuple(int(v) for v in self.attrs.get("sensor_size", (0, 0, 2)))
        self.class_names = list(self.attrs.get("class_names", []))
        self.n_events = int(self.cols["t"].shape[0])

    def __len__(self) -> int:
        return len(self.start)

    # pickles (to dask workers) without open files: the direct reader is rebuilt there
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_direct"] = state["_direct_cols"] = None
        return state

    def _direct_reader(self):
        """The shard-file reader of the event columns, or None (remote store, other layout).

        Rebuilt whenever ``cols`` is replaced, and only for arrays held by a plain
        local zarr store at this reader's path; files are opened relative to the
        pinned folder, so direct reads keep the snapshot guarantee.
        """
        cols = self.cols
        if self._direct_cols is cols:
            return self._direct
        direct = None
        if self._snap is not None and is_local(self.path):
            from zarr.storage import LocalStore

            try:
                ok = all(type(a.store_path.store) is LocalStore
                         and os.path.samefile(a.store_path.store.root, self.path)
                         and a.store_path.path == name for name, a in cols.items())
                if ok:
                    direct = direct_reader(self.path, {name: a.metadata.to_dict()
                                                       for name, a in cols.items()}, self._snap)
            except (OSError, AttributeError, TypeError, ValueError):
                direct = None
        self._direct, self._direct_cols = direct, cols
        return direct

    def _read_segments(self, starts, stops, names) -> dict | None:
        """Concatenated ``[starts[i], stops[i])`` of each column, read directly; None to use zarr."""
        direct = self._direct_reader()
        if direct is None:
            return None
        try:
            return direct.read(starts, stops, names)
        except (UnreadableChunk, OSError, ValueError, RuntimeError):
            return None  # zarr reads it, or says what is wrong

    def _range(self, e0: int, e1: int, names: Sequence[str]) -> dict:
        e0, e1, _ = slice(e0, e1).indices(self.n_events)
        e1 = max(e0, e1)
        got = self._read_segments([e0], [e1], names)
        if got is None:
            got = {name: np.asarray(self.cols[name][e0:e1]) for name in names}
        return got

    def _checked(self, read):
        """``read()``, valid only if the store was not replaced meanwhile.

        Raises StoreReplacedError otherwise (see neurodata/format/snapshot.py).
        """
        try:
            out = read()
        except Exception:
            if self._snap is not None:
                self._snap.check()  # a read failing because the store was swapped says so
            raise
        if self._snap is not None:
            self._snap.check()
        return out

    def sources(self) -> np.ndarray:
        return self._checked(lambda: np.asarray(self.root["source"][:], dtype=object))

    def splits(self) -> np.ndarray:
        return self._checked(lambda: np.asarray(self.root["split"][:], dtype=object))

    def read_range(self, e0: int, e1: int, names: Sequence[str] = COLUMNS) -> dict:
        """Event columns ``[e0, e1)`` as a dict of numpy arrays."""
        return self._checked(lambda: self._range(e0, e1, names))

    def read_sample(self, i: int) -> dict:
        """Columns of sample ``i``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        s, c = int(self.start[i]), int(self.count[i])
        return self.read_range(s, s + c)

    def read_samples(self, idx: Sequence[int]) -> tuple[dict, np.ndarray]:
        """Concatenated columns of several samples plus their offsets (len+1).

        Contiguous runs of indices are read in one slice each; read directly,
        each chunk the samples touch is decoded once.
        """
        idx = np.asarray(idx, np.int64)
        counts = self.count[idx]
        offsets = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        if len(idx) and np.all(np.diff(idx) == 1):
            s = int(self.start[idx[0]])
            return self.read_range(s, s + int(offsets[-1])), offsets
        if len(idx):
            starts = self.start[idx]
            got = self._checked(lambda: self._read_segments(starts, starts + counts, COLUMNS))
            if got is not None:
                return got, offsets
        parts = [self.read_sample(int(i)) for i in idx]
        cols = {name: np.concatenate([pt[name] for pt in parts]) if parts
                else np.empty(0, COLUMN_DTYPES[name]) for name in COLUMNS}
        return cols, offsets

    def window(self, i: int, t0: int, t1: int) -> dict:
        """Events of sample ``i`` with ``t0 <= t < t1``, reading only overlapping chunks."""
        return self._checked(lambda: self._window(i, t0, t1))

    def _window(self, i: int, t0: int, t1: int) -> dict:
        s, c = int(self.start[i]), int(self.count[i])
        e = s + c
        if c == 0:
            return self.read_range(s, s)
        c0, c1 = s // self.chunk, (e - 1) // self.chunk + 1
        tmin, tmax = self.chunk_t_min[c0:c1], self.chunk_t_max[c0:c1]
        hit = np.nonzero((tmax >= t0) & (tmin < t1))[0]
        if len(hit) == 0:
            return self.read_range(s, s)
        lo = max(s, (c0 + int(hit[0])) * self.chunk)
        hi = min(e, (c0 + int(hit[-1]) + 1) * self.chunk)
        t = self._range(lo, hi, ["t"])["t"]
        a = lo + int(np.searchsorted(t, t0, "left"))
        b = lo + int(np.searchsorted(t, t1, "left"))
        out = self._range(a, b, ["x", "y", "p"])
        out["t"] = t[a - lo:b - lo]
        return {name: out[name] for name in COLUMNS}
