"""Convert source files or folders into a neurodata store.

One entry point for every modality: the format is detected from content,
events files are read by their loader and written by the event-store writer,
other modalities' loaders write their own store. Output is written into a
temporary sibling and moved into place only when complete.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from neurodata import loaders
from neurodata.errors import FormatError, NeurodataError
from neurodata.format.store import atomic_store, file_sha256, provenance

logger = logging.getLogger("neurodata")

_SPLIT_NAMES = {"train": "train", "training": "train", "test": "test", "testing": "test",
                "val": "val", "valid": "val", "validation": "val"}


def convert(
    src: str | os.PathLike,
    out: str | os.PathLike,
    format: str | None = None,
    *,
    labels_from_folders: bool = False,
    class_names: Sequence[str] | None = None,
    sensor_size: Sequence[int] | None = None,
    overwrite: bool = False,
    attrs: dict | None = None,
    progress: bool = False,
    **kwargs,
) -> Path:
    """Convert ``src`` (a file or folder) into a store at ``out``.

    Parameters
    ----------
    src : path-like
        A file, or a folder of event files (one sample per file), or a folder
        format (suite2p output, BIDS dataset), or a connectome query URL
        (``neuprint://HOST/DATASET``, ``cave://HOST/DATASTACK/TABLE``; ``+http``
        after the scheme name for plain http).
    out : path-like
        The store folder to create (``.zarr`` by convention).
    format : str, optional
        Force a format by name (see ``neurodata.loaders.FORMATS``) instead of
        detecting it.
    labels_from_folders : bool
        Events: the class of each file is the name of its parent folder; a
        folder named train/test/val above it sets the sample's split.
    class_names : sequence of str, optional
        Fixes the class order (default: sorted folder names).
    sensor_size : (width, height, polarities), optional
        Overrides what the files state or imply.
    overwrite : bool
        Replace an existing store at ``out`` (atomically).
    attrs : dict, optional
        Extra root attributes (licence, citation, dataset name).
    progress : bool
        Show a progress bar.
    **kwargs
        Passed to the loader (e.g. ``fs`` for suite2p, ``deidentify`` for EEG).

    Returns
    -------
    Path of the finished store.
    """
    from neurodata.loaders import _connectome_http

    if _connectome_http.is_query_url(src):  # neuprint://HOST/DATASET, cave://HOST/STACK/TABLE
        return _connectome_http.convert_query_url(src, out, overwrite=overwrite, attrs=attrs,
                                                  **kwargs)
    src = Path(src)
    if not src.exists():
        raise FormatError("no such file or folder", src)
    out = Path(out)
    if src.is_dir():
        spec = _detect_folder(src, format)
        if spec is None:
            return _convert_event_folder(src, out, format, labels_from_folders, class_names,
                                         sensor_size, overwrite, attrs, progress, kwargs)
    else:
        spec = loaders.get(format) if format else loaders.detect(src)
    if spec.modality == "events":
        return _convert_event_files([src], out, [spec], None, None, sensor_size, overwrite,
                                    attrs, progress, kwargs, root=src.parent)
    mod = spec.load()
    with atomic_store(out, overwrite=overwrite) as tmp:
        mod.convert(src, tmp, attrs=attrs, **kwargs)
    return out


def _detect_folder(src: Path, format: str | None):
    if format:
        spec = loaders.get(format)
        return spec if spec.folder else None
    try:
        return loaders.detect(src)
    except NeurodataError:
        return None


def _event_files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))


def _convert_event_folder(src, out, format, labels_from_folders, class_names, sensor_size,
                          overwrite, attrs, progress, kwargs) -> Path:
    files = _event_files(src)
    if not files:
        raise FormatError("folder holds no files", src)
    specs = []
    for f in files:
        spec = loaders.get(format) if format else loaders.detect(f)
        if spec.modality != "events":
            raise FormatError(f"holds {spec.modality} ({spec.name}); a folder converts "
                              "one event file per sample", f)
        specs.append(spec)
    names = {s.name for s in specs}
    if len(names) > 1:
        by = {}
        for f, s in zip(files, specs):
            by.setdefault(s.name, f)
        listing = ", ".join(f"{n} (e.g. {by[n].relative_to(src)})" for n in sorted(names))
        raise FormatError(f"folder mixes formats: {listing}; convert each format separately", src)
    labels = None
    if labels_from_folders:
        folder_names = [f.parent.name for f in files]
        if class_names is None:
            class_names = sorted(set(folder_names), key=_natural_key)
        index = {c: i for i, c in enumerate(class_names)}
        missing = sorted(set(folder_names) - set(index))
        if missing:
            raise FormatError(f"folders {missing} are not among class_names", src)
        labels = [index[c] for c in folder_names]
    return _convert_event_files(files, out, specs, labels, class_names, sensor_size, overwrite,
                                attrs, progress, kwargs, root=src)


def _natural_key(s: str):
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def _split_of(path: Path, root: Path) -> str:
    for part in path.relative_to(root).parts[:-1]:
        if part.lower() in _SPLIT_NAMES:
            return _SPLIT_NAMES[part.lower()]
    return ""


def _convert_event_files(files, out, specs, labels, class_names, sensor_size, overwrite,
                         attrs, progress, kwargs, root) -> Path:
    from neurodata.format.events import EventStoreWriter

    bar = _progress(len(files), progress)
    digests = []
    sensor_seen = None
    fmt_tags = set()
    with atomic_store(out, overwrite=overwrite) as tmp:
        w = EventStoreWriter(tmp, sensor_size=sensor_size, class_names=class_names, attrs=attrs)
        for i, (f, spec) in enumerate(zip(files, specs)):
            rec = loaders.read_events(f, spec.name, **kwargs)
            fmt_tags.add(rec.format)
            if rec.sensor_size is not None:
                sensor_seen = _merge_sensor(sensor_seen, rec.sensor_size)
            if rec.class_names and class_names is None:
                w.class_names = list(rec.class_names)
            label = None if labels is None else labels[i]
            rel = str(f.relative_to(root)) if f.is_relative_to(root) else f.name
            w.add_recording(rec, source=rel, label=label, split=_split_of(f, root))
            digests.append(file_sha256(f))
            bar.update(1)
        bar.close()
        if sensor_size is None and sensor_seen is not None:
            w.sensor_size = list(sensor_seen)
        w.close(provenance(files, loader=", ".join(sorted(fmt_tags)), checksums=digests))
    return out


def _merge_sensor(a, b):
    b = tuple(int(v) for v in b)
    if a is None:
        return b
    return tuple(max(u, v) for u, v in zip(a, b))


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled or total < 2:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc="convert")
