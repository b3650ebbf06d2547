"""Dataset statistics for ``neurodata stats``: class balance, durations, event rates,
channel statistics (time series) and ROI trace statistics (imaging).

Per-sample durations come from the first and last timestamp of each sample
(read chunk-wise at the sample boundaries), so statistics of a large store
cost the sample table, not the events.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from neurodata.errors import NeurodataError

__all__ = ["store_stats", "event_stats", "timeseries_stats", "imaging_stats", "plot_stats",
           "plot_event_stats"]


def _describe(v: np.ndarray) -> dict:
    v = np.asarray(v, np.float64)
    if len(v) == 0:
        return {"n": 0}
    q = np.percentile(v, [5, 50, 95])
    return {"n": int(len(v)), "mean": float(v.mean()), "min": float(v.min()),
            "p5": float(q[0]), "median": float(q[1]), "p95": float(q[2]), "max": float(v.max())}


def event_stats(ds) -> dict:
    """Statistics of an event dataset, with per-sample arrays under ``per_sample``."""
    from neurodata.format.inspect import _gather

    r = ds.reader
    counts = r.count.astype(np.int64)
    labels = r.label
    durations = np.zeros(len(r), np.int64)
    nz = np.nonzero(counts > 0)[0]
    if len(nz):
        first = _gather(r.cols["t"], r.start[nz])
        last = _gather(r.cols["t"], r.start[nz] + counts[nz] - 1)
        durations[nz] = np.asarray(last, np.int64) - np.asarray(first, np.int64)
    dur_s = durations / 1e6
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(durations > 0, counts / np.where(dur_s > 0, dur_s, 1), np.nan)
    names = list(ds.class_names)
    splits = r.splits() if len(r) else np.array([], dtype=object)
    balance = {}
    for split in sorted(set(splits.tolist())) or [""]:
        sel = splits == split if len(splits) else np.zeros(0, bool)
        labs, n = np.unique(labels[sel], return_counts=True)
        balance[split or "all"] = {(names[i] if 0 <= i < len(names) else str(i)): int(c)
                                   for i, c in zip(labs.tolist(), n.tolist())}
    return {
        "path": os.fspath(ds.path),
        "modality": "events",
        "samples": int(len(r)),
        "events": int(r.n_events),
        "sensor_size": list(r.sensor_size),
        "class_balance": balance,
        "duration_s": _describe(dur_s),
        "events_per_sample": _describe(counts),
        "event_rate_hz": _describe(rates[np.isfinite(rates)]),
        "per_sample": {"label": labels, "count": counts, "duration_s": dur_s, "rate_hz": rates},
    }


def store_stats(store) -> dict:
    """Statistics of any store: events here, other modalities via their ``stats``/``summary``."""
    import neurodata
    from neurodata.dataset import store_modality

    modality = store_modality(os.fspath(store))
    ds = neurodata.open(os.fspath(store))
    if modality == "events":
        return event_stats(ds)
    mod = importlib.import_module(f"neurodata.format.{modality}")
    if hasattr(mod, "stats"):
        out = dict(mod.stats(ds))
    elif modality == "timeseries":
        out = timeseries_stats(ds)
    elif modality == "imaging":
        out = imaging_stats(ds)
    else:
        out = dict(ds.summary())
    out.setdefault("modality", modality)
    out.setdefault("path", os.fspath(store))
    return out


class _Moments:
    """Per-row count, mean, std, min, max accumulated block by block (float64 sums)."""

    def __init__(self, rows: int):
        self.n = 0
        self.s = np.zeros(rows)
        self.ss = np.zeros(rows)
        self.lo = np.full(rows, np.inf)
        self.hi = np.full(rows, -np.inf)

    def add(self, block: np.ndarray) -> None:
        b = np.asarray(block, np.float64)
        if b.shape[1] == 0:
            return
        self.n += b.shape[1]
        self.s += b.sum(axis=1)
        self.ss += np.square(b).sum(axis=1)
        self.lo = np.minimum(self.lo, b.min(axis=1))
        self.hi = np.maximum(self.hi, b.max(axis=1))

    def result(self) -> dict:
        n = max(self.n, 1)
        mean = self.s / n
        std = np.sqrt(np.maximum(self.ss / n - mean ** 2, 0.0))
        return {"mean": mean, "std": std, "min": self.lo, "max": self.hi}


def timeseries_stats(ds, block_seconds: float = 60.0) -> dict:
    """Per-recording duration and per-channel mean, std, min, max (read a block at a time)."""
    recs = []
    for rec in ds:
        m = _Moments(rec.n_channels)
        step = max(1, int(block_seconds * rec.sfreq))
        for start in range(0, rec.n_times, step):
            m.add(rec.read(start, start + step))
        r = m.result()
        recs.append({
            "recording": rec.name, "sfreq": rec.sfreq, "duration_s": rec.duration,
            "n_channels": rec.n_channels,
            "channels": [{"name": n, "type": t, "unit": u, "mean": float(a), "std": float(b),
                          "min": float(c), "max": float(d)}
                         for n, t, u, a, b, c, d in zip(rec.ch_names, rec.ch_types, rec.units,
                                                        r["mean"], r["std"], r["min"], r["max"])],
        })
    durations = np.array([r["duration_s"] for r in recs])
    return {"path": os.fspath(ds.path), "modality": "timeseries", "recordings": len(recs),
            "duration_s": _describe(durations), "per_recording": recs}


def imaging_stats(ds, block_frames: int = 4096) -> dict:
    """Per-ROI mean, std, min, max of the primary trace (read a block of frames at a time)."""
    name = ds.primary_trace
    out = {"path": os.fspath(ds.path), "modality": "imaging", "rois": int(ds.n_rois),
           "frames": int(ds.n_frames), "fs_hz": ds.fs, "trace": name}
    if name is None:
        return out
    m = _Moments(int(ds.n_rois))
    for start in range(0, int(ds.n_frames), block_frames):
        m.add(ds.traces(name, start=start, stop=start + block_frames))
    r = m.result()
    iscell = ds.iscell
    out.update({"cells": int(np.count_nonzero(iscell)) if iscell is not None else None,
                "trace_mean": _describe(r["mean"]), "trace_std": _describe(r["std"]),
                "per_roi": {k: v for k, v in r.items()}})
    return out


def plot_stats(stats: dict, out_png, dpi: int = 100) -> Path:
    """Draw the statistics of any modality that has per-item figures."""
    if stats.get("modality") == "events":
        return plot_event_stats(stats, out_png, dpi)
    if stats.get("modality") == "timeseries":
        return _plot_timeseries(stats, out_png, dpi)
    if stats.get("modality") == "imaging" and "per_roi" in stats:
        return _plot_imaging(stats, out_png, dpi)
    raise NeurodataError(f"no statistics plot for {stats.get('modality')} stores; use "
                         "`neurodata preview`", stats.get("path"))


def _plot_timeseries(stats: dict, out_png, dpi: int) -> Path:
    from matplotlib.figure import Figure

    rec = stats["per_recording"][0]
    ch = rec["channels"][:64]
    fig = Figure(figsize=(10, 6), dpi=dpi)
    a, b = fig.subplots(2, 1)
    x = np.arange(len(ch))
    a.bar(x, [c["std"] for c in ch], color="tab:blue")
    a.set_xticks(x)
    a.set_xticklabels([c["name"] for c in ch], rotation=90, fontsize=6)
    a.set_ylabel(f"std ({ch[0]['unit'] if ch else ''})")
    a.set_title(f"{rec['recording']}: channel standard deviation ({rec['sfreq']:g} Hz)")
    b.vlines(x, [c["min"] for c in ch], [c["max"] for c in ch], color="tab:gray")
    b.plot(x, [c["mean"] for c in ch], "o", color="tab:red", ms=3)
    b.set_xticks(x)
    b.set_xticklabels([c["name"] for c in ch], rotation=90, fontsize=6)
    b.set_title("range (line) and mean (dot) per channel")
    fig.suptitle(f"{Path(stats['path']).name}: {stats['recordings']} recording(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=dpi)
    return Path(out_png)


def _plot_imaging(stats: dict, out_png, dpi: int) -> Path:
    from matplotlib.figure import Figure

    r = stats["per_roi"]
    fig = Figure(figsize=(10, 4), dpi=dpi)
    a, b = fig.subplots(1, 2)
    a.hist(r["mean"], bins=40, color="tab:green")
    a.set_title(f"per-ROI mean of {stats['trace']}")
    b.hist(r["std"], bins=40, color="tab:purple")
    b.set_title(f"per-ROI std of {stats['trace']}")
    fig.suptitle(f"{Path(stats['path']).name}: {stats['rois']} ROIs, {stats['frames']} frames",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=dpi)
    return Path(out_png)


def plot_event_stats(stats: dict, out_png, dpi: int = 100) -> Path:
    """Four panels: class balance per split, durations, events per sample, event rates."""
    from matplotlib.figure import Figure

    if stats.get("modality") != "events" or "per_sample" not in stats:
        raise NeurodataError("plots are drawn for events stores; use `neurodata preview` for "
                             f"{stats.get('modality')} stores", stats.get("path"))
    ps = stats["per_sample"]
    fig = Figure(figsize=(10, 7), dpi=dpi)
    (a, b), (c, d) = fig.subplots(2, 2)
    balance = stats["class_balance"]
    classes = sorted({k for v in balance.values() for k in v})
    width = 0.8 / max(len(balance), 1)
    for j, (split, counts) in enumerate(balance.items()):
        a.bar(np.arange(len(classes)) + j * width, [counts.get(k, 0) for k in classes], width,
              label=split)
    a.set_xticks(np.arange(len(classes)) + width * (len(balance) - 1) / 2)
    a.set_xticklabels(classes, rotation=60, ha="right", fontsize=7)
    a.set_title("samples per class")
    if len(balance) > 1:
        a.legend(fontsize=7)
    b.hist(ps["duration_s"] * 1e3, bins=40, color="tab:green")
    b.set_title("sample duration (ms)")
    c.hist(ps["count"], bins=40, color="tab:orange")
    c.set_title("events per sample")
    rates = ps["rate_hz"][np.isfinite(ps["rate_hz"])]
    d.hist(rates / 1e3, bins=40, color="tab:purple")
    d.set_title("event rate (kHz)")
    fig.suptitle(f"{Path(stats['path']).name}: {stats['samples']} samples, "
                 f"{stats['events']} events", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=dpi)
    return Path(out_png)
