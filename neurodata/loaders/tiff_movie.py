"""Multi-page TIFF, BigTIFF and ImageJ hyperstack movies -> ``imaging/1`` store.

TIFF (Adobe TIFF 6.0) starts with a byte-order mark and 42 (``II*\\0`` /
``MM\\0*``); BigTIFF (64-bit offsets, files over 4 GB) with 43 (``II+\\0`` /
``MM\\0+``). Pages are read through tifffile's lazy zarr view of the first
series, one block of frames at a time, so memory is bounded by the block
whatever the movie's size (ImageJ hyperstacks over 4 GB are contiguous
files tifffile maps without reading them).

Axes (tifffile's letters) map to the store's ``(frame, [channel], [plane], y, x)``:
``T`` is the frame axis, ``Z`` the plane, ``C`` / ``S`` the channel. A movie
without ``T`` takes its first other axis (``I``, ``Q``, ``Z``...) as frames,
which is how plain multi-page files and ImageJ stacks without hyperstack
metadata present a time series.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, NeurodataError, TruncatedFileError
from neurodata.format.imaging import ImagingStoreWriter
from neurodata.format.store import file_sha256, provenance

VERSION = "TIFF 6.0 / BigTIFF / ImageJ hyperstack"
MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: target bytes read and written per block; two blocks are in memory at once (one
#: being read, one being compressed), which bounds memory during conversion
BLOCK_BYTES = 32 << 20
_MAX_EXPANSION = 1032  # deflate's largest compression ratio


def sniff(path: Path, head: bytes) -> bool:
    """TIFF/BigTIFF magic (byte order + 42/43)."""
    return head[:4] in MAGICS


def _fs_from_metadata(tif) -> float | None:
    ij = tif.imagej_metadata or {}
    if ij.get("fps"):
        return float(ij["fps"])
    if ij.get("finterval"):
        return 1.0 / float(ij["finterval"])
    si = getattr(tif, "scanimage_metadata", None) or {}
    fd = si.get("FrameData", {}) if isinstance(si, dict) else {}
    for key in ("SI.hRoiManager.scanVolumeRate", "SI.hRoiManager.scanFrameRate"):
        if fd.get(key):
            return float(fd[key])
    if tif.is_ome:
        import xml.etree.ElementTree as ET

        try:
            root = ET.fromstring(tif.ome_metadata)
            for el in root.iter():
                if el.tag.endswith("Pixels") and el.get("TimeIncrement"):
                    unit = el.get("TimeIncrementUnit", "s")
                    scale = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6}.get(unit, 1.0)
                    dt = float(el.get("TimeIncrement")) * scale
                    if dt > 0:
                        return 1.0 / dt
        except (ET.ParseError, ValueError):
            pass
    return None


def _pixel_size_um(tif) -> tuple[float, float] | None:
    ij = tif.imagej_metadata or {}
    if ij.get("unit") not in ("micron", "um", "\\u00B5m", "µm"):
        return None
    tags = tif.pages.first.tags
    try:
        xr = tags["XResolution"].value
        yr = tags["YResolution"].value
        return (yr[1] / yr[0], xr[1] / xr[0])
    except (KeyError, ZeroDivisionError, TypeError):
        return None


def axis_plan(axes: str, shape: tuple[int, ...], path=None) -> tuple[list[int], list[str], str]:
    """Source-axis order and store dims for a tifffile series.

    Returns ``(perm, dims, frame_axis)``: ``np.transpose(block, perm)`` puts a
    block in store order ``dims``.
    """
    axes = axes.upper()
    if "Y" not in axes or "X" not in axes:
        raise FormatError(f"TIFF series has axes {axes!r}: no Y/X image plane", path)
    role = {}
    if "T" in axes:
        frame = "T"
    else:
        others = [a for a in axes if a not in "YXCS"]
        if not others:
            frame = None
        else:
            frame = others[0]
    for a in axes:
        if a == frame:
            role[a] = "frame"
        elif a in "YX":
            role[a] = a.lower()
        elif a in "CS":
            role[a] = "channel"
        elif a == "Z":
            role[a] = "plane"
        else:
            role[a] = None
    extra = [a for a in axes if role[a] is None and shape[axes.index(a)] > 1]
    if extra:
        raise FormatError(f"TIFF series axes {axes!r}: cannot place axes {extra} "
                          "(expected a time series of frames, planes and channels)", path)
    if sum(1 for a in axes if role[a] == "channel" and shape[axes.index(a)] > 1) > 1:
        raise FormatError(f"TIFF series axes {axes!r} has both C and S channels", path)
    order = ["frame", "channel", "plane", "y", "x"]
    src = [a for a in axes if role[a] is not None and not (role[a] == "channel" and shape[axes.index(a)] == 1
                                                            and a == "S")]
    dims = [d for d in order if any(role[a] == d for a in src)]
    perm = [axes.index(next(a for a in src if role[a] == d)) for d in dims]
    # size-1 axes with no role are squeezed by the caller
    return perm, dims, frame or ""


def convert(src, out, attrs: dict | None = None, fs: float | None = None,
            block_bytes: int = BLOCK_BYTES, indicator: str | None = None, **kw) -> None:
    """Convert a TIFF/BigTIFF movie into an ``imaging/1`` store, one frame block at a time.

    Parameters
    ----------
    src : path-like
        The TIFF file (first series is converted).
    out : path-like
        The store folder to write.
    fs : float, optional
        Frame rate (Hz); required when the file's ImageJ/OME/ScanImage
        metadata does not state it, overrides it otherwise.
    block_bytes : int
        Bytes per conversion block (rounded to whole chunks of frames).
    """
    from concurrent.futures import ThreadPoolExecutor

    src = Path(src)
    with ThreadPoolExecutor(1) as pool:  # hash the source while converting (hashlib frees the GIL)
        digest = pool.submit(file_sha256, src)
        try:
            _convert(src, out, attrs, fs, block_bytes, indicator, digest)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError,
                NotImplementedError, struct_error(), _tiff_error()) as e:
            # tifffile parses tags and pages lazily: corrupt files fail anywhere inside
            raise CorruptFileError(f"corrupt TIFF ({e.__class__.__name__}: {e})", src) from None


def _convert(src, out, attrs, fs, block_bytes, indicator, digest) -> None:
    import tifffile

    try:
        tif = tifffile.TiffFile(src)
    except (tifffile.TiffFileError, ValueError, OSError, struct_error()) as e:
        raise CorruptFileError(f"unreadable TIFF ({e})", src) from None
    with tif:
        if not tif.series:
            raise FormatError("TIFF holds no image series", src)
        series = tif.series[0]
        axes, shape, dtype = series.axes, tuple(series.shape), np.dtype(series.dtype)
        _check_size(tif, series, src)
        perm, dims, frame_axis = axis_plan(axes, shape, src)
        fs_meta = _fs_from_metadata(tif)
        if fs is None and fs_meta is None:
            raise NeurodataError("the frame rate is not in this TIFF's metadata (ImageJ fps/"
                                 "finterval, OME TimeIncrement, ScanImage); give it with fs=... "
                                 "(CLI: --fs HZ)", src)
        rate = float(fs) if fs is not None else fs_meta
        z = _series_reader(tif, series, src)
        if frame_axis:
            out_shape = tuple(shape[p] for p in perm)
        else:  # a single image: one frame
            out_shape = (1,) + tuple(shape[p] for p in perm)
            dims = ["frame"] + dims
        squeeze_axes = tuple(i for i in range(len(shape)) if i not in perm)
        root_attrs = {"source_format": f"tiff_movie/{VERSION}", "indicator": indicator,
                      "n_planes": int(out_shape[dims.index("plane")]) if "plane" in dims else 1,
                      "tiff_axes": axes, "fs_source": "user" if fs is not None else "tiff metadata"}
        root_attrs.update(attrs or {})
        w = ImagingStoreWriter(out, rate, root_attrs)
        w.create_movie(out_shape, dtype, dims, pixel_size_um=_pixel_size_um(tif))
        n = out_shape[0]
        fpc = w.frames_per_chunk
        frame_bytes = int(np.prod(out_shape[1:])) * dtype.itemsize
        step = min(n, max(fpc, (max(1, block_bytes // max(frame_bytes, 1)) // fpc) * fpc))
        fax = axes.index(frame_axis) if frame_axis else None
        # two preallocated blocks: a reader thread fills one (and sums it for the mean
        # image) while the writer compresses the other
        buffers = [np.empty((step,) + out_shape[1:], dtype) for _ in range(min(2, -(-n // step)))]

        # compressed or scattered pages, one per frame: tifffile decodes them straight into
        # the block (faster than its zarr view, which assembles chunks itself)
        by_pages = (not isinstance(z, np.ndarray) and fax == 0 and len(shape) == 3 and perm == [0, 1, 2]
                    and len(series.pages) == shape[0])

        def read(k: int):
            t0, t1 = k * step, min(n, (k + 1) * step)
            buf = buffers[k % len(buffers)][:t1 - t0]
            if by_pages:
                tif.asarray(key=range(t0, t1), series=0, out=buf, maxworkers=2)
            elif fax is None:
                np.copyto(buf, np.asarray(z[...]).reshape(buf.shape))
            else:
                sel = [slice(None)] * len(shape)
                sel[fax] = slice(t0, t1)
                src = z[tuple(sel)]
                if squeeze_axes:
                    src = np.asarray(src).squeeze(axis=squeeze_axes)
                    keep = [i for i in range(len(shape)) if i not in squeeze_axes]
                    src = np.transpose(src, [keep.index(p) for p in perm])
                else:
                    src = np.transpose(np.asarray(src), perm)
                np.copyto(buf, src)
            return t0, buf, buf.sum(axis=0, dtype=np.float64)

        from concurrent.futures import ThreadPoolExecutor

        total = np.zeros(out_shape[1:], np.float64)
        n_blocks = -(-n // step)
        with ThreadPoolExecutor(1) as reader:
            pending = reader.submit(read, 0)
            for k in range(n_blocks):
                t0, block, block_sum = pending.result()
                if k + 1 < n_blocks:
                    pending = reader.submit(read, k + 1)
                w.write_frames(t0, block)
                total += block_sum
        del buffers
        mean = total / max(n, 1)
        while mean.ndim > 2 and mean.shape[0] == 1:
            mean = mean[0]
        if mean.ndim == 2:
            w.write_mean_image(mean)
        elif mean.ndim == 3 and "plane" in dims and "channel" not in dims:
            w.write_mean_image(mean, plane_axis=True)
    w.close(provenance([src], loader=f"tiff_movie/{VERSION}", checksums=[digest.result()]))


def _series_reader(tif, series, path):
    """An array-like over the series: a read-only memory map when the pixel data is
    one contiguous uncompressed run (ImageJ hyperstacks, most microscope writers),
    else tifffile's lazy zarr view that decodes only the pages a slice touches."""
    import zarr

    off = None
    try:
        off = series.dataoffset
    except Exception:  # tifffile computes it lazily and may fail on odd layouts
        off = None
    if off is not None:
        dt = np.dtype(series.dtype).newbyteorder(tif.byteorder)
        return np.memmap(path, dtype=dt, mode="r", offset=off, shape=tuple(series.shape))
    try:
        return zarr.open(series.aszarr(), mode="r")
    except Exception as e:  # tifffile raises several types for odd layouts
        raise CorruptFileError(f"cannot map TIFF series ({e.__class__.__name__}: {e})", path) from None


def _tiff_error():
    import tifffile

    return tifffile.TiffFileError


def struct_error():
    import struct

    return struct.error


def _check_size(tif, series, path) -> None:
    """Refuse a series whose data would lie beyond the end of the file."""
    size = os.path.getsize(path)
    try:
        off = series.dataoffset
    except Exception:
        off = None
    if off is not None:
        need = off + int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize
        if need > size:
            raise TruncatedFileError(
                f"truncated: series {series.shape} {series.dtype} needs {need} bytes, file has {size}",
                path)
    else:
        page = tif.pages.first
        offs = getattr(page, "dataoffsets", ()) or ()
        counts = getattr(page, "databytecounts", ()) or ()
        if offs and counts and max(o + c for o, c in zip(offs, counts)) > size:
            raise TruncatedFileError("truncated: first page's data lies beyond the end of the file", path)
        page_bytes = math.prod(int(v) for v in page.shape) * np.dtype(series.dtype).itemsize
        if getattr(page, "compression", None) == 1 and counts and page_bytes > sum(counts):
            raise CorruptFileError(f"page claims {page.shape} pixels but stores {sum(counts)} "
                                   "uncompressed bytes", path)
    # damaged dimensions must not make us allocate or write far more than the file can
    # hold: no codec TIFF uses expands data by more than deflate's ~1032:1
    if any(int(v) <= 0 for v in series.shape):
        raise CorruptFileError(f"image series has shape {tuple(series.shape)}: no pixels", path)
    total = math.prod(int(v) for v in series.shape) * np.dtype(series.dtype).itemsize
    if total > _MAX_EXPANSION * size + (1 << 20):
        raise CorruptFileError(f"series claims {tuple(series.shape)} {series.dtype} "
                               f"({total} bytes) from a {size}-byte file", path)
