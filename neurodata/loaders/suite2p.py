"""suite2p output folders -> ``imaging/1`` store.

suite2p (Pachitariu et al. 2017) writes, per imaging plane, a folder
``suite2p/planeN/`` holding ``F.npy`` (ROI fluorescence, rois x frames,
float32), ``Fneu.npy`` (neuropil), ``spks.npy`` (OASIS-deconvolved activity),
``iscell.npy`` (rois x 2: is-cell flag, classifier probability),
``stat.npy`` (object array of per-ROI dicts with ``ypix``, ``xpix``,
``lam``, ``med``...; a pickle) and ``ops.npy`` (a pickled dict of settings
and results; suite2p >= 1.0 splits it into ``db.npy`` and ``settings.npy``
plus ``reg_outputs.npy``/``detect_outputs.npy``). The frame rate is ``fs``
in ops/settings; it is per plane.

Pickled files are read by :mod:`neurodata.loaders._safe_pickle`, never by
``np.load(allow_pickle=True)``. Multi-plane folders are merged along the ROI
axis (``roi_plane`` says which plane each ROI is in); planes that differ by a
trailing frame are cut to the shortest.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, NeurodataError
from neurodata.format.imaging import ImagingStoreWriter
from neurodata.format.store import provenance
from neurodata.loaders._safe_pickle import load_npy

VERSION = "0.x-1.x output folder"
_TRACES = ("F", "Fneu", "spks", "F_chan2", "Fneu_chan2")
_SETTINGS_FILES = ("ops.npy", "settings.npy", "db.npy")


def _is_plane_dir(p: Path) -> bool:
    return (p / "F.npy").is_file() and ((p / "stat.npy").is_file() or (p / "iscell.npy").is_file())


def plane_dirs(path: Path) -> list[Path]:
    """Plane folders of a suite2p output: ``path`` itself, or its ``planeN`` subfolders in order.

    Accepts the plane folder, the ``suite2p`` folder, or the folder above it.
    The ``combined`` folder suite2p writes for multi-plane data is skipped
    (its ROIs repeat the planes').
    """
    path = Path(path)
    if _is_plane_dir(path):
        return [path]
    for base in (path, path / "suite2p"):
        if not base.is_dir():
            continue
        planes = [d for d in base.iterdir() if d.is_dir() and re.fullmatch(r"plane\d+", d.name)
                  and _is_plane_dir(d)]
        if planes:
            return sorted(planes, key=lambda d: int(d.name[5:]))
    return []


def sniff(path: Path, head: bytes) -> bool:
    """A folder holding suite2p plane folders (``F.npy`` next to ``stat.npy``/``iscell.npy``)."""
    return Path(path).is_dir() and bool(plane_dirs(path))


def read_settings(plane: Path) -> dict:
    """Merged ``db.npy``/``settings.npy``/``ops.npy`` of one plane (missing ones skipped)."""
    out: dict = {}
    for name in ("db.npy", "settings.npy", "ops.npy"):
        f = plane / name
        if f.is_file():
            d = load_npy(f)
            if not isinstance(d, dict):
                raise CorruptFileError(f"expected a pickled dict, found {type(d).__name__}", f)
            out.update(d)
    return out


def _find_key(d: dict, keys: tuple[str, ...]):
    """Value of the first of ``keys`` in ``d`` or one of its nested dicts (suite2p 1.x nests)."""
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    for v in d.values():
        if isinstance(v, dict):
            found = _find_key(v, keys)
            if found is not None:
                return found
    return None


def read_plane(plane: Path) -> dict:
    """Arrays of one plane folder: traces, iscell, masks, settings, mean image."""
    traces = {}
    for name in _TRACES:
        f = plane / f"{name}.npy"
        if f.is_file():
            a = load_npy(f, allow_objects=False)
            if a.ndim != 2:
                raise CorruptFileError(f"expected a 2-D (rois, frames) array, found shape {a.shape}", f)
            traces[name] = a
    shape = traces["F"].shape
    for name in ("F_chan2", "Fneu_chan2"):  # second channel traces are optional extras
        if name in traces and traces[name].shape != shape:
            del traces[name]
    for name, a in traces.items():
        if a.shape != shape:
            raise CorruptFileError(f"shape {a.shape} differs from F.npy's {shape}", plane / f"{name}.npy")
    n_roi = shape[0]
    out = {"traces": traces, "n_roi": n_roi, "n_frames": shape[1]}
    f = plane / "iscell.npy"
    if f.is_file():
        a = load_npy(f, allow_objects=False)
        a = a.reshape(n_roi, -1) if a.size and a.shape[0] == n_roi else a
        if a.shape[0] != n_roi:
            raise CorruptFileError(f"{a.shape[0]} rows for {n_roi} ROIs in F.npy", f)
        out["iscell"] = a[:, 0] > 0.5
        if a.shape[1] > 1:
            out["cell_probability"] = a[:, 1]
    f = plane / "redcell.npy"
    if f.is_file():
        a = load_npy(f, allow_objects=False).reshape(n_roi, -1)
        out["redcell"] = a[:, 0] > 0.5
    f = plane / "stat.npy"
    if f.is_file():
        stat = load_npy(f)
        out.update(_masks_from_stat(stat, n_roi, f))
        iplane = [s.get("iplane") for s in stat]
        if all(v is not None for v in iplane):  # the "combined" folder of a multi-plane run
            out["iplane"] = np.asarray(iplane, np.int64)
    settings = read_settings(plane)
    out["settings"] = settings
    for key in ("meanImg",):
        if isinstance(settings.get(key), np.ndarray) and settings[key].ndim == 2:
            out["mean_image"] = settings[key]
    if "mean_image" not in out:
        for name in ("reg_outputs.npy",):
            g = plane / name
            if g.is_file():
                d = load_npy(g)
                if isinstance(d, dict) and isinstance(d.get("meanImg"), np.ndarray):
                    out["mean_image"] = d["meanImg"]
    return out


def _masks_from_stat(stat, n_roi: int, path: Path) -> dict:
    """Sparse pixel lists from ``stat`` (``ypix``, ``xpix``, ``lam`` per ROI)."""
    if not isinstance(stat, np.ndarray) or stat.ndim != 1:
        raise CorruptFileError("expected a 1-D object array of per-ROI dicts", path)
    if len(stat) != n_roi:
        raise CorruptFileError(f"{len(stat)} ROIs, F.npy has {n_roi}", path)
    ys, xs, ws, rs = [], [], [], []
    for i, s in enumerate(stat):
        if not isinstance(s, dict) or "ypix" not in s or "xpix" not in s:
            raise CorruptFileError(f"ROI {i} has no ypix/xpix", path)
        y = np.asarray(s["ypix"]).ravel()
        x = np.asarray(s["xpix"]).ravel()
        lam = np.asarray(s.get("lam", np.ones(len(y), np.float32))).ravel()
        if not (len(y) == len(x) == len(lam)):
            raise CorruptFileError(f"ROI {i}: ypix/xpix/lam lengths differ", path)
        ys.append(y)
        xs.append(x)
        ws.append(lam)
        rs.append(np.full(len(y), i, np.int64))
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.empty(0, dt))
    return {"mask_y": cat(ys, np.int64), "mask_x": cat(xs, np.int64), "mask_w": cat(ws, np.float32),
            "mask_roi": cat(rs, np.int64)}


def convert(src, out, attrs: dict | None = None, fs: float | None = None,
            indicator: str | None = None, **kw) -> None:
    """Convert a suite2p output folder into an ``imaging/1`` store at ``out``.

    Parameters
    ----------
    src : path-like
        A plane folder, a ``suite2p`` folder with ``planeN`` subfolders, or its parent.
    out : path-like
        The store folder to write.
    fs : float, optional
        Frame rate (Hz, per plane). Required when the folder has no
        ``ops.npy``/``settings.npy`` stating it; overrides it otherwise.
    indicator : str, optional
        Calcium indicator (e.g. ``"GCaMP6s"``), stored as an attribute.
    """
    src = Path(src)
    planes = plane_dirs(src)
    if not planes:
        raise FormatError("not a suite2p output folder (no planeN/F.npy with stat.npy/iscell.npy)", src)
    data = [read_plane(p) for p in planes]
    fs_found = [_find_key(d["settings"], ("fs",)) for d in data]
    if fs is None:
        known = [float(v) for v in fs_found if v is not None]
        if not known:
            raise NeurodataError(
                "the frame rate is not in this suite2p folder (no ops.npy/settings.npy with 'fs'); "
                "give it with fs=... (CLI: --fs HZ)", src)
        if len(set(known)) > 1:
            raise CorruptFileError(f"planes state different frame rates {sorted(set(known))}", src)
        fs = known[0]
        fs_source = "ops/settings"
    else:
        fs = float(fs)
        fs_source = "user"
    if not fs > 0:
        raise NeurodataError(f"frame rate must be positive, got {fs}", src)
    n_frames = min(d["n_frames"] for d in data)
    names = [n for n in _TRACES if all(n in d["traces"] for d in data)]
    traces = {n: np.concatenate([d["traces"][n][:, :n_frames] for d in data], axis=0) for n in names}
    n_roi_per = [d["n_roi"] for d in data]
    n_roi = int(sum(n_roi_per))
    if len(data) == 1 and "iplane" in data[0]:
        roi_plane = data[0]["iplane"]
    else:
        roi_plane = np.repeat(np.arange(len(data)), n_roi_per)
    offsets = np.concatenate([[0], np.cumsum(n_roi_per)[:-1]])
    settings0 = data[0]["settings"]
    neucoeff = _find_key(settings0, ("neucoeff", "neuropil_coefficient"))
    tau = _find_key(settings0, ("tau",))
    root_attrs = {
        "source_format": f"suite2p/{VERSION}",
        "n_planes": max(1, int(len(np.unique(roi_plane)))) if len(data) == 1 else len(data),
        "fs_source": fs_source,
        "indicator": indicator,
        "frames_dropped_to_align_planes": int(max(d["n_frames"] for d in data) - n_frames),
        "suite2p": {"tau": _plain(tau), "neucoeff": _plain(neucoeff),
                    "nplanes": _plain(_find_key(settings0, ("nplanes",))),
                    "suite2p_version": _plain(_find_key(settings0, ("suite2p_version", "version")))},
    }
    Ly = _find_key(settings0, ("Ly",))
    Lx = _find_key(settings0, ("Lx",))
    root_attrs.update(attrs or {})
    w = ImagingStoreWriter(out, fs, root_attrs)
    trace_attrs = {
        "F": {"description": "ROI fluorescence (suite2p F.npy)"},
        "Fneu": {"description": "neuropil fluorescence (suite2p Fneu.npy)"},
        "F_chan2": {"description": "ROI fluorescence, second channel (suite2p F_chan2.npy)"},
        "Fneu_chan2": {"description": "neuropil fluorescence, second channel (Fneu_chan2.npy)"},
        "spks": {"description": "deconvolved activity (suite2p spks.npy: OASIS on "
                                "F - neucoeff*Fneu after maximin baseline removal)",
                 "method": "suite2p OASIS", "neuropil_coefficient": _plain(neucoeff),
                 "tau_s": _plain(tau)},
    }
    w.write_traces(traces, trace_attrs=trace_attrs)
    iscell = np.concatenate([d["iscell"] for d in data]) if all("iscell" in d for d in data) else None
    prob = (np.concatenate([d["cell_probability"] for d in data])
            if all("cell_probability" in d for d in data) else None)
    local = np.concatenate([np.arange(k) for k in n_roi_per]).astype(np.int32)
    extra = {"roi_index_in_plane": local}
    if all("redcell" in d for d in data):
        extra["redcell"] = np.concatenate([d["redcell"] for d in data])
    w.write_roi_table(n_roi, iscell=iscell, cell_probability=prob, roi_plane=roi_plane, extra=extra)
    if all("mask_roi" in d for d in data):
        w.write_masks(np.concatenate([d["mask_roi"] + o for d, o in zip(data, offsets)]),
                      np.concatenate([d["mask_y"] for d in data]),
                      np.concatenate([d["mask_x"] for d in data]),
                      np.concatenate([d["mask_w"] for d in data]), n_roi,
                      frame_shape=(int(Ly), int(Lx)) if Ly and Lx else None)
    imgs = [d.get("mean_image") for d in data]
    if all(i is not None for i in imgs) and len({i.shape for i in imgs}) == 1:
        w.write_mean_image(np.stack(imgs) if len(imgs) > 1 else imgs[0], plane_axis=len(imgs) > 1)
    sources = sorted(f for p in planes for f in p.glob("*.npy") if f.is_file())
    w.close(provenance(sources, loader=f"suite2p/{VERSION}"))


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(e, (int, float, str)) for e in v):
        return list(v)
    return str(v)
