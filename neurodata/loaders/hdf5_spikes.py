"""HDF5 spike sets in the SHD/SSC layout (``.h5``): many samples per file.

Layout (Cramer et al. 2020, "The Heidelberg Spiking Data Sets", and the
datasets' web page)::

    spikes/times   vlen float, one array per sample: spike times in seconds
    spikes/units   vlen int,   one array per sample: the channel of each spike
    labels         int, one per sample
    extra/keys     optional: class names, indexed by label
    extra/speaker  optional: speaker id per sample
    extra/meta_info/{gender, age, body_height}  optional: per speaker

Events come back as one :class:`~neurodata.events.EventRecording` holding all
samples back to back (``starts``/``counts``/``labels``): ``x`` is the channel,
``y`` and ``p`` are 0, ``t`` is ``round(times * 1e6)`` microseconds (rounded,
not truncated, so a float32 time of 0.0123 s is 12300 us). The sensor size is
``(n_channels, 1, 1)`` with ``n_channels`` as given, else the largest channel
+ 1 (700 for a full SHD/SSC file). h5py is imported only when a file is read.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, TruncatedFileError
from neurodata.events import EventRecording

VERSION = "SHD/SSC HDF5 (Cramer et al. 2020)"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SUPERBLOCK_OFFSETS = (0, 512, 1024, 2048)
_SPLITS = {"train": "train", "training": "train", "test": "test", "valid": "val",
           "val": "val", "validation": "val"}


def has_hdf5_signature(head: bytes) -> bool:
    """The HDF5 superblock signature at offset 0 or after a user block."""
    return any(head[o:o + 8] == HDF5_SIGNATURE for o in _SUPERBLOCK_OFFSETS)


def sniff(path: Path, head: bytes) -> bool:
    """HDF5 signature, then the ``spikes/times`` and ``spikes/units`` datasets."""
    if not has_hdf5_signature(head):
        return False
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "spikes" in f and "times" in f["spikes"] and "units" in f["spikes"]
    except Exception:
        return False


def _open(path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        kind = TruncatedFileError if "truncated" in str(e) else CorruptFileError
        raise kind(f"cannot open as HDF5 ({e})", path) from None


def _read(ds, path, what):
    _check_vlen(ds, path, what)
    try:
        return ds[()]
    except (OSError, RuntimeError, ValueError, TypeError) as e:
        raise CorruptFileError(f"cannot read {what} ({e})", path) from None


def _check_vlen(ds, path, what) -> None:
    """Validate a contiguous variable-length dataset against its global heaps before
    libhdf5 reads it: with a damaged heap, libhdf5 can spin or allocate without bound.

    Each element is stored as (uint32 length, heap collection address, uint32 object
    index); every referenced ``GCOL`` collection must lie inside the file and hold the
    object with at least ``length`` values (HDF5 spec, "Global Heap").
    """
    import h5py

    base = h5py.check_vlen_dtype(ds.dtype)
    if base is None or ds.size == 0:
        return
    try:
        off = ds.id.get_offset()
        fcpl = ds.file.id.get_create_plist()
        sa, ss = fcpl.get_sizes()
        userblock = fcpl.get_userblock()
    except Exception:  # noqa: BLE001 - layouts this check cannot see are left to libhdf5
        return
    if off is None or userblock:
        return  # chunked (possibly filtered) storage: not checked here
    size = os.path.getsize(path)
    rec = np.dtype([("n", "<u4"), ("addr", f"<u{sa}"), ("idx", "<u4")])
    n = int(ds.size)
    if off + n * rec.itemsize > size:
        raise CorruptFileError(f"{what}: {n} elements claimed, their descriptors lie beyond "
                               "the end of the file", path)
    with open(path, "rb") as fh:
        fh.seek(off)
        desc = np.frombuffer(fh.read(n * rec.itemsize), rec)
        itemsize = np.dtype(base).itemsize
        if int(desc["n"].astype(np.int64).sum()) * itemsize > size:
            raise CorruptFileError(f"{what}: element lengths claim more values than the file "
                                   "holds", path)
        used = desc[desc["n"] > 0]
        for addr in np.unique(used["addr"]).tolist():
            objects = _heap_objects(fh, int(addr), ss, size, path, what)
            mine = used[used["addr"] == addr]
            for k, length in zip(mine["idx"].tolist(), mine["n"].tolist()):
                if objects.get(k, -1) < length * itemsize:
                    raise CorruptFileError(f"{what}: heap object {k} at {addr} is missing or "
                                           f"shorter than the {length} values claimed", path)


def _heap_objects(fh, addr: int, ss: int, size: int, path, what) -> dict:
    """``index -> byte size`` of the objects of the global heap collection at ``addr``."""
    head = 8 + ss
    if addr + head > size:
        raise CorruptFileError(f"{what}: heap collection at {addr} lies beyond the file", path)
    fh.seek(addr)
    h = fh.read(head)
    csize = int.from_bytes(h[8:head], "little")
    if h[:4] != b"GCOL" or csize < head or addr + csize > size:
        raise CorruptFileError(f"{what}: damaged heap collection at {addr}", path)
    fh.seek(addr)
    coll = fh.read(csize)
    out, pos = {}, head
    while pos + 8 + ss <= csize:
        idx = int.from_bytes(coll[pos:pos + 2], "little")
        osize = int.from_bytes(coll[pos + 8:pos + 8 + ss], "little")
        if idx == 0:  # free space: the rest of the collection, header included
            if osize != csize - pos:
                raise CorruptFileError(f"{what}: damaged free space in heap collection at "
                                       f"{addr}", path)
            return out
        out[idx] = osize
        pos += 8 + ss + (osize + 7) // 8 * 8
    if pos > csize:
        raise CorruptFileError(f"{what}: heap objects overrun their collection at {addr}", path)
    return out


def _decode(names) -> list[str]:
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
            for n in np.asarray(names).ravel().tolist()]


def split_from_name(path: Path) -> str | None:
    """``shd_train.h5`` -> ``"train"``, ``ssc_valid.h5`` -> ``"val"``."""
    for tok in re.split(r"[_\-.\s]+", path.stem.lower()):
        if tok in _SPLITS:
            return _SPLITS[tok]
    return None


def read(path: Path, n_channels: int | None = None, **kw) -> EventRecording:
    """Read every sample of an SHD/SSC-layout HDF5 file.

    Parameters
    ----------
    path : path-like
        The ``.h5`` file.
    n_channels : int, optional
        Number of input channels (sensor width); default largest unit + 1.

    Returns
    -------
    EventRecording
        All samples concatenated, with ``starts``, ``counts``, ``labels`` and
        ``class_names`` (from ``extra/keys``); ``meta["speaker"]`` holds the
        speaker of each sample when the file has one.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise FormatError("empty file", path)
    try:
        with _open(path) as f:
            if "spikes" not in f or "times" not in f["spikes"] or "units" not in f["spikes"]:
                raise FormatError("HDF5 file has no spikes/times and spikes/units datasets "
                                  "(SHD/SSC layout)", path)
            times = _read(f["spikes/times"], path, "spikes/times")
            units = _read(f["spikes/units"], path, "spikes/units")
            labels = _read(f["labels"], path, "labels") if "labels" in f else None
            extra = f["extra"] if "extra" in f else None
            keys = (_read(extra["keys"], path, "extra/keys")
                    if extra is not None and "keys" in extra else None)
            speaker = (_read(extra["speaker"], path, "extra/speaker")
                       if extra is not None and "speaker" in extra else None)
            meta_info = {}
            if extra is not None and "meta_info" in extra:
                for k, ds in extra["meta_info"].items():
                    if hasattr(ds, "shape"):
                        meta_info[k] = np.asarray(_read(ds, path, f"extra/meta_info/{k}")).tolist()
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        # a corrupt file fails inside h5py while navigating groups, not only when opening
        raise CorruptFileError(f"corrupt HDF5 structure ({e.__class__.__name__}: {e})",
                               path) from None
    n = len(times)
    if len(units) != n:
        raise CorruptFileError(f"spikes/times has {n} samples but spikes/units {len(units)}", path)
    if labels is not None and len(labels) != n:
        raise CorruptFileError(f"{n} samples but {len(labels)} labels", path)
    counts = np.fromiter((np.size(a) for a in times), np.int64, n)
    ucounts = np.fromiter((np.size(a) for a in units), np.int64, n)
    bad = np.flatnonzero(counts != ucounts)
    if len(bad):
        i = int(bad[0])
        raise CorruptFileError(f"sample {i} has {counts[i]} spike times but {ucounts[i]} units "
                               f"({len(bad)} samples disagree)", path)
    x, t = _flatten(times, units, counts, path)
    starts = np.zeros(n, np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    width = int(n_channels) if n_channels else (int(x.max()) + 1 if len(x) else 1)
    if len(x) and int(x.max()) >= width:
        raise CorruptFileError(f"unit {int(x.max())} is outside n_channels={width}", path)
    meta = {"n_samples": n}
    if speaker is not None:
        meta["speaker"] = np.asarray(speaker).astype(np.int64).ravel().tolist()
    if meta_info:
        meta["meta_info"] = meta_info
    return EventRecording(
        x, np.zeros(len(x), np.uint16), t, np.zeros(len(x), np.uint8),
        sensor_size=(width, 1, 1), format=f"hdf5_spikes/{VERSION}",
        starts=starts, counts=counts,
        labels=None if labels is None else np.asarray(labels).astype(np.int64).ravel(),
        class_names=None if keys is None else _decode(keys),
        split=split_from_name(path), meta=meta)


def _flatten(times, units, counts, path):
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.uint16), np.empty(0, np.int64)
    tt = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in times])
    uu = np.concatenate([np.asarray(a).ravel() for a in units])
    if not np.isfinite(tt).all():
        raise CorruptFileError("spike times contain NaN or infinity", path)
    if uu.min() < 0 or uu.max() > np.iinfo(np.uint16).max:
        raise CorruptFileError(f"units range {uu.min()}..{uu.max()} is not a channel index", path)
    return uu.astype(np.uint16), np.rint(tt * 1e6).astype(np.int64)


_GCOL_HEADER = re.compile(rb"GCOL\x01\x00\x00\x00")  # signature, version 1, 3 reserved bytes


def check_global_heaps(h5, path) -> None:
    """Validate every global heap collection of an open local HDF5 file.

    Variable-length strings (attributes and datasets; NWB and CaImAn files are
    full of them) live in ``GCOL`` collections; with a damaged collection
    libhdf5 can spin for ever when it reads one. The file is scanned for
    collection headers (signature and version) and each is checked as
    :func:`_heap_objects` does, before any string is read. Files with a user
    block are left to libhdf5.

    Raises
    ------
    CorruptFileError
        When a collection is damaged.
    """
    import mmap

    try:
        fcpl = h5.id.get_create_plist()
        _, ss = fcpl.get_sizes()
        if fcpl.get_userblock():
            return
    except Exception:  # noqa: BLE001 - what this check cannot see is left to libhdf5
        return
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if st.st_size == 0 or key in _HEAPS_CHECKED:  # sniffers and the loader share one scan
        return
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for m in _GCOL_HEADER.finditer(mm):
            _heap_objects(fh, m.start(), ss, st.st_size, path, "global heap")
    if len(_HEAPS_CHECKED) > 256:
        _HEAPS_CHECKED.clear()
    _HEAPS_CHECKED.add(key)


_HEAPS_CHECKED: set = set()
