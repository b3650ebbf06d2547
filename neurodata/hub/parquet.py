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
    """Dispatch non-event stores to their modality's table layout."""
    modality = ds.attrs.get("modality")
    if modality == "timeseries":
        return _export_timeseries(ds, out)
    if modality == "imaging":
        return _export_imaging(ds, out)
    return _export_dimensions(ds, out, names={"neuron": "neurons", "edge": "edges"})


def _column(var, a: int, b: int):
    """Rows ``a:b`` of a 1-D variable as an arrow array (categories decoded to strings)."""
    import pyarrow as pa

    values = np.asarray(var[a:b].values)
    cats = var.attrs.get("categories")
    if cats is not None and values.dtype.kind in "iu":
        lut = np.asarray(list(cats) + [""], dtype=object)
        return pa.array(lut[np.where((values >= 0) & (values < len(cats)), values, len(cats))]
                        .astype(str).tolist())
    if values.dtype.kind in "OUT":
        return pa.array([str(v) for v in values])
    return pa.array(values)


def _write_rows(path: Path, columns: dict, n: int, block: int = 1 << 20) -> None:
    """Write 1-D variables of length ``n`` to one parquet file, ``block`` rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for a in range(0, max(n, 1), block):
            b = min(n, a + block)
            table = pa.table({name: _column(var, a, b) for name, var in columns.items()})
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _export_dimensions(ds, out: Path, names: dict | None = None) -> dict:
    """One config per dimension of the 1-D variables of each group (connectome:
    ``neurons`` and ``edges``; categorical codes written as their names)."""
    tree = ds.to_xarray()
    configs: dict[str, dict[str, list[str]]] = {}
    for node in tree.subtree:
        dset = node.to_dataset(inherit=False)
        prefix = node.path.strip("/").replace("/", "_")
        by_dim: dict[str, dict] = {}
        for name, var in dset.variables.items():
            if var.ndim == 1:
                by_dim.setdefault(var.dims[0], {})[name] = var
        for dim, variables in by_dim.items():
            label = (names or {}).get(dim, dim)
            config = f"{prefix}_{label}" if prefix else label
            rel = f"data/{config}/train-00000-of-00001.parquet"
            _write_rows(out / rel, variables, int(dset.sizes[dim]))
            configs[config] = {"train": [rel]}
    return configs


def _list2d(arrays: list[np.ndarray]):
    """Arrow ``list<list<float>>`` from 2-D float32 arrays (rows of lists)."""
    import pyarrow as pa

    inner_len = np.concatenate([np.full(a.shape[0], a.shape[1], np.int64) for a in arrays]) \
        if arrays else np.zeros(0, np.int64)
    inner_off = np.zeros(len(inner_len) + 1, np.int32)
    np.cumsum(inner_len, out=inner_off[1:])
    outer_off = np.zeros(len(arrays) + 1, np.int32)
    np.cumsum([a.shape[0] for a in arrays], out=outer_off[1:])
    values = pa.array(np.concatenate([a.ravel() for a in arrays]) if arrays
                      else np.zeros(0, np.float32))
    inner = pa.ListArray.from_arrays(pa.array(inner_off), values)
    return pa.ListArray.from_arrays(pa.array(outer_off), inner)


def _export_timeseries(ds, out: Path, window_s: float = 10.0) -> dict:
    """EEG/iEEG: ``windows`` (one row per window of ``window_s`` seconds per
    recording: ``data`` as ``[channel][time]`` float32 in the stored units, with
    recording, start sample and rate), plus ``channels``, ``annotations`` and
    ``events`` tables."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (out / "data" / "windows").mkdir(parents=True, exist_ok=True)
    win_files, ch_rows, ann_rows, ev_rows = [], [], [], []
    for i in range(len(ds)):
        rec = ds[i]
        sf = float(rec.sfreq)
        w = max(1, int(round(window_s * sf)))
        for c, (name, typ, unit) in enumerate(zip(rec.ch_names, rec.ch_types, rec.units)):
            ch_rows.append({"recording": rec.name, "index": c, "channel": str(name),
                            "ch_type": str(typ), "unit": str(unit), "sfreq": sf})
        ann = rec.annotations()
        for onset, dur, desc in zip(*(np.asarray(ann[k]) for k in ("onset", "duration", "description"))):
            ann_rows.append({"recording": rec.name, "onset_s": float(onset),
                             "duration_s": float(dur), "description": str(desc)})
        ev = rec.events()
        for smp, code, lab in zip(*(np.asarray(ev[k]) for k in ("sample", "code", "label"))):
            ev_rows.append({"recording": rec.name, "sample": int(smp), "code": int(code),
                            "label": str(lab)})
        rel = f"data/windows/train-{i:05d}-of-{len(ds):05d}.parquet"
        with pq.ParquetWriter(out / rel, pa.schema([
                ("recording", pa.string()), ("start_sample", pa.int64()), ("sfreq", pa.float64()),
                ("data", pa.list_(pa.list_(pa.float32())))]), compression="zstd") as writer:
            starts = list(range(0, rec.n_times, w)) or [0]
            for g in range(0, len(starts), 64):
                group = starts[g:g + 64]
                blocks = [np.asarray(rec.read(a, min(a + w, rec.n_times)), np.float32) for a in group]
                writer.write_table(pa.table({
                    "recording": pa.array([rec.name] * len(group)),
                    "start_sample": pa.array(group, pa.int64()),
                    "sfreq": pa.array([sf] * len(group)),
                    "data": _list2d(blocks)}))
        win_files.append(rel)
    configs = {"windows": {"train": win_files}}
    for name, rows in (("channels", ch_rows), ("annotations", ann_rows), ("events", ev_rows)):
        if rows:
            rel = f"data/{name}/train-00000-of-00001.parquet"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), out / rel, compression="zstd")
            configs[name] = {"train": [rel]}
    return configs


def _export_imaging(ds, out: Path) -> dict:
    """Calcium imaging: ``rois`` (one row per ROI: its traces as float32 lists and
    its metadata: iscell, probability, plane, centre) and ``masks`` (one row per
    ROI pixel). The movie stays in the zarr store."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = ds.to_xarray().to_dataset()
    configs = {}
    if "roi" in d.sizes:
        traces = [n for n in ("F", "Fneu", "spks", "dff", "denoised") if n in d.variables]
        meta = [n for n, v in d.variables.items() if v.dims == ("roi",)]
        rel = "data/rois/train-00000-of-00001.parquet"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        writer = None
        n = int(d.sizes["roi"])
        fs = d.attrs.get("fs")
        try:
            for a in range(0, n, 256):
                b = min(n, a + 256)
                cols = {"roi": pa.array(np.arange(a, b, dtype=np.int64))}
                for name in meta:
                    cols[name] = _column(d[name], a, b)
                for name in traces:
                    cols[name] = pa.array(list(np.asarray(d[name][a:b].values, np.float32)))
                cols["fs"] = pa.array([fs] * (b - a), pa.float64())
                table = pa.table(cols)
                if writer is None:
                    writer = pq.ParquetWriter(out / rel, table.schema, compression="zstd")
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        configs["rois"] = {"train": [rel]}
    if "pixel" in d.sizes:
        rel = "data/masks/train-00000-of-00001.parquet"
        _write_rows(out / rel, {n: d[n] for n in ("mask_roi", "mask_y", "mask_x", "mask_weight")
                                if n in d.variables}, int(d.sizes["pixel"]))
        configs["masks"] = {"train": [rel]}
    return configs
