"""Parquet views of stores, in the layout ``datasets.load_dataset`` reads.

Events: one row per sample, with list columns ``x, y, t, p`` and ``label``,
``source``; one set of files per split (``data/<split>-NNNNN-of-MMMMM.parquet``).
Other modalities: one table per dimension of the root group's 1-D variables
(connectome: ``neuron`` and ``edge``), and for 2-D arrays one row per entry
of the first dimension with the values as a list column (ROI traces, channels),
each table a config of its own.

Files are written a row group at a time from the store, so memory stays
bounded by the rows of one group.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: events per parquet file at most (list offsets stay in int32)
MAX_EVENTS_PER_FILE = 1 << 30
#: samples per row group
ROWS_PER_GROUP = 1024


def export_parquet(store, out_dir, max_samples_per_file: int = 50_000) -> dict:
    """Write the parquet view of ``store`` into ``out_dir/data``.

    Returns
    -------
    dict mapping config name -> {split: [relative file paths]} (for the card).
    """
    import neurodata

    ds = neurodata.open(os.fspath(store))
    out = Path(out_dir)
    (out / "data").mkdir(parents=True, exist_ok=True)
    if hasattr(ds, "reader") and type(ds).__name__ == "EventDataset":
        return {"default": _export_events(ds, out, max_samples_per_file)}
    return _export_tables(ds, out)


def _split_names(reader) -> np.ndarray:
    splits = reader.splits()
    splits = np.array([s if s else "train" for s in splits], dtype=object)
    return splits


def _export_events(ds, out: Path, max_samples_per_file: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    r = ds.reader
    splits = _split_names(r)
    sources = r.sources()
    files: dict[str, list[str]] = {}
    schema = pa.schema([
        ("x", pa.list_(pa.uint16())), ("y", pa.list_(pa.uint16())),
        ("t", pa.list_(pa.int64())), ("p", pa.list_(pa.uint8())),
        ("label", pa.int64()), ("source", pa.string()), ("sample", pa.int64()),
    ])
    for split in sorted(set(splits.tolist())):
        idx = np.nonzero(splits == split)[0]
        groups = _file_groups(idx, r.count, max_samples_per_file)
        names = [f"data/{split}-{k:05d}-of-{len(groups):05d}.parquet" for k in range(len(groups))]
        for name, members in zip(names, groups):
            with pq.ParquetWriter(out / name, schema, compression="zstd") as w:
                for a in range(0, len(members), ROWS_PER_GROUP):
                    rows = members[a:a + ROWS_PER_GROUP]
                    cols, offsets = r.read_samples(rows)
                    off = pa.array(offsets.astype(np.int32))
                    arrays = [pa.ListArray.from_arrays(off, pa.array(cols[c])) for c in "xytp"]
                    arrays += [pa.array(r.label[rows]), pa.array(sources[rows].astype(str).tolist()),
                               pa.array(rows.astype(np.int64))]
                    w.write_table(pa.Table.from_arrays(arrays, schema=schema))
        files[split] = names
    return files


def _file_groups(idx: np.ndarray, counts: np.ndarray, max_samples: int) -> list[np.ndarray]:
    """Cut sample indices into files of at most ``max_samples`` and MAX_EVENTS_PER_FILE events."""
    groups, start, events = [], 0, 0
    for k, i in enumerate(idx):
        c = int(counts[i])
        if k > start and (k - start >= max_samples or events + c > MAX_EVENTS_PER_FILE):
            groups.append(idx[start:k])
            start, events = k, 0
        events += c
    groups.append(idx[start:])
    return groups


def _export_tables(ds, out: Path) -> dict:
    """Per-dimension tables of a non-event store (connectome, traces, channels)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tree = ds.to_xarray()
    configs: dict[str, dict[str, list[str]]] = {}
    for node in tree.subtree:
        dset = node.to_dataset(inherit=False)
        prefix = node.path.strip("/").replace("/", "_")
        by_dim: dict[str, dict] = {}
        for name, var in dset.variables.items():
            if var.ndim == 1:
                by_dim.setdefault(var.dims[0], {})[name] = var
            elif var.ndim == 2 and var.size <= 50_000_000:
                by_dim.setdefault(f"{var.dims[0]}_{name}", {})[name] = var
        for dim, variables in by_dim.items():
            config = f"{prefix}_{dim}" if prefix else dim
            table = {}
            for name, var in variables.items():
                values = np.asarray(var.values)
                if values.ndim == 2:
                    table[name] = pa.array(list(values))
                elif values.dtype.kind in "OUT":
                    table[name] = pa.array([str(v) for v in values])
                else:
                    table[name] = pa.array(values)
            lengths = {len(v) for v in table.values()}
            if len(lengths) != 1:
                continue
            rel = f"data/{config}/train-00000-of-00001.parquet"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(table), out / rel, compression="zstd")
            configs[config] = {"train": [rel]}
    return configs
