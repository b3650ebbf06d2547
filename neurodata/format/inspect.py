"""Summaries of stores for ``neurodata inspect`` (figures, not pictures)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def store_bytes(path) -> int | None:
    """Bytes on disk of a local store (None for remote URLs)."""
    p = Path(path) if not (isinstance(path, str) and "://" in path) else None
    if p is None or not p.exists():
        return None
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def event_column_bytes(path) -> int | None:
    """Bytes on disk of the x, y, t, p columns (the event payload, no metadata)."""
    total = 0
    for name in ("x", "y", "t", "p"):
        b = store_bytes(Path(path) / name) if not (isinstance(path, str) and "://" in path) else None
        if b is None:
            return None
        total += b
    return total


def summarize_events(ds) -> dict:
    """Samples, events, durations, rates, classes, sensor size, bytes/event."""
    r = ds.reader
    n = len(r)
    counts = r.count
    # per-sample first/last timestamps: read only the boundary events
    t = r.cols["t"]
    nonempty = np.nonzero(counts > 0)[0]
    durations = np.zeros(n, np.int64)
    if len(nonempty) and r.n_events:
        firsts = _gather(t, r.start[nonempty])
        lasts = _gather(t, r.start[nonempty] + counts[nonempty] - 1)
        durations[nonempty] = lasts - firsts
    p_on = 0
    if r.n_events:
        # polarity balance from the p column (1 byte/event), a shard at a time: bounded memory
        step = int(r.cols["p"].shards[0]) if r.cols["p"].shards else 1 << 22
        for a in range(0, r.n_events, step):
            p_on += int(np.count_nonzero(np.asarray(r.cols["p"][a:a + step])))
    nbytes = store_bytes(ds.path)
    ebytes = event_column_bytes(ds.path)
    labels, label_counts = np.unique(r.label, return_counts=True)
    names = r.class_names
    classes = {}
    for lab, c in zip(labels.tolist(), label_counts.tolist()):
        key = names[lab] if 0 <= lab < len(names) else str(lab)
        classes[key] = int(c)
    total_dur_s = float(durations.sum()) / 1e6
    out = {
        "path": os.fspath(ds.path),
        "schema": r.attrs.get("neurodata_schema"),
        "samples": n,
        "events": int(r.n_events),
        "sensor_size": list(r.sensor_size),
        "duration_s": {"total": total_dur_s,
                       "mean": float(durations.mean()) / 1e6 if n else 0.0,
                       "max": float(durations.max()) / 1e6 if n else 0.0},
        "event_rate_hz": float(r.n_events / total_dur_s) if total_dur_s > 0 else None,
        "events_per_sample": {"mean": float(counts.mean()) if n else 0.0,
                              "min": int(counts.min()) if n else 0,
                              "max": int(counts.max()) if n else 0},
        "polarity_on_fraction": p_on / r.n_events if r.n_events else None,
        "classes": classes,
        "bytes_on_disk": nbytes,
        "bytes_per_event": (ebytes / r.n_events) if (ebytes and r.n_events) else None,
        "provenance": r.attrs.get("provenance", {}),
    }
    return out


def _gather(arr, idx) -> np.ndarray:
    """Values of a zarr array at sorted indices, reading each chunk once."""
    idx = np.asarray(idx, np.int64)
    if len(idx) == 0:
        return np.empty(0, arr.dtype)
    return np.asarray(arr.get_coordinate_selection(idx))
