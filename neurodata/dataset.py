"""``neurodata.open``: a store as a dataset object, whatever its modality."""
from __future__ import annotations

import importlib
import json
import os

import numpy as np

from neurodata.errors import SchemaError
from neurodata.events import COLUMNS, to_structured
from neurodata.format.schema import SCHEMA_ATTR, parse_schema

#: modality -> "module:callable" that opens a store of that modality
OPENERS = {
    "events": "neurodata.dataset:EventDataset",
    "timeseries": "neurodata.format.timeseries:open_store",
    "imaging": "neurodata.format.imaging:open_store",
    "connectome": "neurodata.format.connectome:open_store",
}


def store_modality(path, storage_options: dict | None = None) -> str:
    """Read a store's root attributes and return its modality."""
    import zarr

    try:
        root = zarr.open_group(path if isinstance(path, str) else os.fspath(path), mode="r",
                               **({"storage_options": storage_options} if storage_options else {}))
    except Exception as e:  # zarr raises several types for a missing/invalid store
        raise SchemaError(f"cannot open as a zarr store ({e.__class__.__name__}: {e})", path) from None
    attrs = dict(root.attrs)
    if SCHEMA_ATTR not in attrs:
        raise SchemaError(f"not a neurodata store (no {SCHEMA_ATTR!r} attribute)", path)
    modality, _ = parse_schema(attrs[SCHEMA_ATTR], path)
    return modality


def open(path, storage_options: dict | None = None):  # noqa: A001 - public name, like xarray.open_*
    """Open a neurodata store (local folder or fsspec URL) as a dataset object.

    Events stores return an :class:`EventDataset`; other modalities return
    their own dataset types. All of them support ``len()``, indexing and
    ``to_xarray()``.
    """
    if isinstance(path, str) and path.startswith("hf://"):
        from neurodata.hub.fetch import hf_storage_options, resolve_hf_url

        repo, rev, inner = resolve_hf_url(path)
        path = f"hf://datasets/{repo}{'@' + rev if rev else ''}/{inner}"
        storage_options = {**hf_storage_options(path), **(storage_options or {})}
    modality = store_modality(path, storage_options)
    mod, _, name = OPENERS[modality].partition(":")
    opener = getattr(importlib.import_module(mod), name)
    return opener(path, storage_options=storage_options)


class EventDataset:
    """An events store: ``ds[i] -> (events, label)``.

    ``events`` is a numpy structured array with fields ``x, y, t, p``
    (:data:`neurodata.events.EVENT_DTYPE`). Reads are lazy: only the chunks a
    sample overlaps are decoded.
    """

    def __init__(self, path, storage_options: dict | None = None):
        from neurodata.format.events import EventStoreReader

        self.path = path
        self.reader = EventStoreReader(path, storage_options)
        self.attrs = self.reader.attrs

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int):
        i = int(i)
        if i < 0:
            i += len(self)
        cols = self.reader.read_sample(i)
        return to_structured(*(cols[c] for c in COLUMNS)), int(self.reader.label[i])

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (f"<EventDataset {self.path!s}: {len(self)} samples, {self.n_events} events, "
                f"sensor {self.sensor_size}>")

    @property
    def sensor_size(self) -> tuple[int, int, int]:
        return self.reader.sensor_size

    @property
    def class_names(self) -> list[str]:
        return self.reader.class_names

    @property
    def labels(self) -> np.ndarray:
        return self.reader.label

    @property
    def n_events(self) -> int:
        return self.reader.n_events

    def columns(self, i: int) -> dict:
        """Sample ``i`` as a dict of ``x, y, t, p`` columns (no packing copy)."""
        return self.reader.read_sample(int(i))

    def window(self, sample: int, t0: int, t1: int) -> np.ndarray:
        """Events of ``sample`` with ``t0 <= t < t1`` (microseconds, as recorded).

        Uses the per-chunk time index: only chunks overlapping the window are
        read, so a second out of an hour-long recording costs a second.
        """
        cols = self.reader.window(int(sample), int(t0), int(t1))
        return to_structured(*(cols[c] for c in COLUMNS))

    def to_xarray(self):
        """The store as an ``xarray.DataTree`` (lazy, dask-backed)."""
        import xarray as xr

        return xr.open_datatree(self.path, engine="zarr", chunks={})

    def provenance(self) -> dict:
        return dict(self.attrs.get("provenance", {}))

    def summary(self) -> dict:
        """Figures ``neurodata inspect`` prints."""
        from neurodata.format.inspect import summarize_events

        return summarize_events(self)

    def _repr_json(self) -> str:
        return json.dumps(self.summary())
