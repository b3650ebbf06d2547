"""Pictures of stores: ``neurodata preview STORE -o FILE.png``.

Event stores become a montage: one row per sample (the first sample of each
class first, so every class shows), each row a few time-binned frames with
ON events red and OFF events blue, titled with the class name. Sensors one
pixel high (audio spike sets such as SHD) become spike rasters instead.
Other modalities draw their own picture with
``neurodata.format.<modality>.preview(ds, out_png)``.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from neurodata.errors import NeurodataError

__all__ = ["preview", "event_montage", "event_frames", "pick_samples"]


def preview(store, out_png, **kw) -> Path:
    """Write a PNG picture of ``store`` (any modality) to ``out_png``; return its path."""
    import neurodata
    from neurodata.dataset import store_modality

    modality = store_modality(os.fspath(store))
    ds = neurodata.open(os.fspath(store))
    if modality == "events":
        return event_montage(ds, out_png, **kw)
    try:
        mod = importlib.import_module(f"neurodata.format.{modality}")
    except ModuleNotFoundError as e:
        if e.name == f"neurodata.format.{modality}":
            raise NeurodataError(f"no preview for {modality} stores: module "
                                 f"neurodata.format.{modality} is missing", store) from None
        raise
    draw = getattr(mod, "preview", None)
    if draw is None:
        raise NeurodataError(f"no preview for {modality} stores yet "
                             f"(neurodata.format.{modality}.preview is missing)", store)
    out = draw(ds, out_png, **kw)
    return Path(out if out is not None else out_png)


def pick_samples(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of up to ``n`` samples: the first of each class, then the next in order."""
    labels = np.asarray(labels)
    _, first = np.unique(labels, return_index=True)
    first = np.sort(first)[:n]
    if len(first) < n:
        rest = np.setdiff1d(np.arange(len(labels)), first)[: n - len(first)]
        first = np.sort(np.concatenate([first, rest]))
    return first.astype(np.int64)


def event_frames(cols: dict, width: int, height: int, n_bins: int) -> np.ndarray:
    """ON/OFF counts in ``n_bins`` equal time bins: array ``(n_bins, 2, height, width)``."""
    t = np.asarray(cols["t"], np.int64)
    frames = np.zeros((n_bins, 2, height, width), np.int32)
    if len(t) == 0:
        return frames
    x = np.asarray(cols["x"], np.int64)
    y = np.asarray(cols["y"], np.int64)
    p = (np.asarray(cols["p"]) > 0).astype(np.int64)
    keep = (x < width) & (y < height)
    x, y, p, t = x[keep], y[keep], p[keep], t[keep]
    span = max(int(t[-1] - t[0]), 1) if len(t) else 1
    b = np.minimum((t - t[0]) * n_bins // (span + 1), n_bins - 1) if len(t) else t
    flat = ((b * 2 + (1 - p)) * height + y) * width + x  # channel 0 = ON, 1 = OFF
    frames.reshape(-1)[:] = np.bincount(flat, minlength=frames.size)[: frames.size]
    return frames


def _rgb(on: np.ndarray, off: np.ndarray, scale: float) -> np.ndarray:
    """White background, ON events towards red, OFF towards blue."""
    a = np.clip(on / scale, 0, 1)[..., None]
    b = np.clip(off / scale, 0, 1)[..., None]
    img = np.ones(on.shape + (3,), np.float32)
    img -= a * np.array([0.0, 0.85, 0.85], np.float32)
    img -= b * np.array([0.85, 0.85, 0.0], np.float32)
    return np.clip(img, 0, 1)


def event_montage(ds, out_png, n_samples: int = 6, n_bins: int = 8, dpi: int = 100) -> Path:
    """Montage of time-binned frames of the first samples of an event dataset.

    Parameters
    ----------
    ds : neurodata.dataset.EventDataset
    out_png : path-like
    n_samples : int
        Rows (samples); the first sample of each class comes first.
    n_bins : int
        Frames per row, equal slices of each sample's duration.
    """
    from matplotlib.figure import Figure

    out_png = Path(out_png)
    if len(ds) == 0:
        raise NeurodataError("store holds no samples to preview", ds.path)
    width, height = int(ds.sensor_size[0]), int(ds.sensor_size[1])
    idx = pick_samples(ds.labels, n_samples)
    names = ds.class_names
    if height == 1:
        return _raster(ds, idx, names, out_png, dpi)
    aspect = height / max(width, 1)
    cell = 1.4
    fig = Figure(figsize=(cell * n_bins + 1.6, cell * aspect * len(idx) + 0.8), dpi=dpi)
    axes = fig.subplots(len(idx), n_bins, squeeze=False)
    for row, i in enumerate(idx):
        cols = ds.columns(int(i))
        frames = event_frames(cols, width, height, n_bins)
        scale = max(float(np.percentile(frames[frames > 0], 99)) if (frames > 0).any() else 1.0,
                    1.0)
        t = cols["t"]
        dur_ms = (int(t[-1]) - int(t[0])) / 1e3 if len(t) else 0.0
        for k in range(n_bins):
            ax = axes[row, k]
            ax.imshow(_rgb(frames[k, 0], frames[k, 1], scale), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{k + 1}/{n_bins}", fontsize=7)
        label = int(ds.labels[i])
        name = names[label] if 0 <= label < len(names) else ("unlabelled" if label < 0 else str(label))
        axes[row, 0].set_ylabel(f"#{int(i)} {name}\n{len(t)} ev, {dur_ms:.0f} ms", fontsize=7)
    fig.suptitle(f"{Path(os.fspath(ds.path)).name}: sensor {width}x{height}, "
                 "ON red / OFF blue", fontsize=9)
    fig.subplots_adjust(left=0.1, right=0.99, top=0.9, bottom=0.02, wspace=0.05, hspace=0.12)
    fig.savefig(out_png, dpi=dpi)
    return out_png


def _raster(ds, idx, names, out_png: Path, dpi: int) -> Path:
    """Spike rasters (time vs channel) for 1-pixel-high sensors (audio spike sets)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 1.6 * len(idx) + 0.6), dpi=dpi)
    axes = fig.subplots(len(idx), 1, squeeze=False)[:, 0]
    for ax, i in zip(axes, idx):
        cols = ds.columns(int(i))
        t = np.asarray(cols["t"], np.int64)
        size = float(np.clip(2e4 / max(len(t), 1), 1.0, 6.0))  # sparse rasters get bigger dots
        ax.scatter((t - (t[0] if len(t) else 0)) / 1e3, cols["x"], s=size, c="k", marker=".",
                   linewidths=0)
        label = int(ds.labels[i])
        name = names[label] if 0 <= label < len(names) else str(label)
        ax.set_ylabel(f"#{int(i)} {name}", fontsize=7)
        ax.set_xlim(left=0)
    axes[-1].set_xlabel("time (ms)")
    fig.suptitle(f"{Path(os.fspath(ds.path)).name}: spike rasters (channel vs time)", fontsize=9)
    fig.savefig(out_png, dpi=dpi)
    return out_png
