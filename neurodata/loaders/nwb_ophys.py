"""NWB 2.x optical physiology -> ``imaging/1`` store (through pynwb).

Reads what the NWB core ``ophys`` namespace defines:

- ``TwoPhotonSeries`` / ``OnePhotonSeries`` (first one found, acquisition
  first): the movie. NWB's ``ImageSeries.data`` is ``(frame, x, y[, z])``,
  so blocks are transposed to the store's ``(frame, [plane], y, x)``; pass
  ``spatial_order="yx"`` for files written row-major against the schema.
- ``PlaneSegmentation``: ROI masks from ``pixel_mask`` (x, y, weight),
  ``voxel_mask`` (x, y, z, weight) or dense ``image_mask`` (roi, x, y).
- ``RoiResponseSeries`` inside ``Fluorescence`` (-> ``F``; a series named
  like "neuropil" -> ``Fneu``, "deconvolved"/"spikes" -> ``spks``) and
  ``DfOverF`` (-> ``dff``). NWB stores ``(time, roi)``; the store ``(roi, time)``.

The movie is copied in frame blocks (bounded memory); the HDF5 file is read
lazily by h5py, so remote files opened through fsspec stream.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, NeurodataError
from neurodata.format.imaging import ImagingStoreWriter
from neurodata.format.store import file_sha256, provenance

VERSION = "NWB 2.x core ophys"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
OPHYS_TYPES = {"TwoPhotonSeries", "OnePhotonSeries", "PlaneSegmentation", "RoiResponseSeries",
               "ImagingPlane", "Fluorescence", "DfOverF", "ImageSegmentation"}
BLOCK_BYTES = 256 << 20
#: byte-range block size when reading a remote file (blocks are cached, each fetched once)
REMOTE_BLOCK_BYTES = 4 << 20


def _is_hdf5(head: bytes) -> bool:
    # the superblock may follow a user block of 512 * 2**k bytes
    if head.startswith(HDF5_MAGIC):
        return True
    return any(head[o:o + 8] == HDF5_MAGIC for o in (512, 1024, 2048) if len(head) >= o + 8)


def sniff(path: Path, head: bytes) -> bool:
    """HDF5 magic, an NWB root (``nwb_version`` attribute / NWBFile type) and ophys content."""
    if not _is_hdf5(head):
        return False
    import h5py

    from neurodata.loaders.hdf5_spikes import check_global_heaps

    with h5py.File(path, "r") as f:
        check_global_heaps(f, path)  # raises on a damaged string heap (libhdf5 would spin)
        if "nwb_version" not in f.attrs and _text(f.attrs.get("neurodata_type")) != "NWBFile":
            return False
        if "acquisition" not in f and "processing" not in f:
            return False
        found = f.visititems(lambda name, obj: True if isinstance(obj, h5py.Group)
                             and _text(obj.attrs.get("neurodata_type")) in OPHYS_TYPES else None)
        # a file holding an ElectricalSeries belongs to nwb_ecephys (one rule, both sniffers)
        from neurodata.loaders.nwb_ecephys import electrical_series_paths

        return bool(found) and not electrical_series_paths(f)


def _text(v) -> str | None:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return None if v is None else str(v)


def _kind_of(series) -> str | None:
    """Which store trace an NWB RoiResponseSeries becomes."""
    parent = type(series.parent).__name__ if series.parent is not None else ""
    # the container's name says as much as the series' (AllenSDK: "neuropil_trace"/"traces")
    name = series.name.lower() + " " + (series.parent.name.lower() if series.parent is not None else "")
    if parent == "DfOverF" or "dff" in name or "dfoverf" in name or "df_over_f" in name:
        return "dff"
    if "neuropil" in name or "fneu" in name:
        return "Fneu"
    if "deconv" in name or "spike" in name or "spks" in name:
        return "spks"
    if parent == "Fluorescence":
        return "F"
    return None


def _series_times(series, n: int) -> tuple[np.ndarray, float | None]:
    if series.timestamps is not None:
        ts = np.asarray(series.timestamps[:], np.float64)
        if ts.shape != (n,):
            raise CorruptFileError(f"{series.name}: {ts.shape[0]} timestamps for {n} samples")
        fs = 1.0 / float(np.median(np.diff(ts))) if n > 1 else None
        return ts, fs
    rate = float(series.rate) if series.rate else None
    t0 = float(series.starting_time or 0.0)
    if rate is None:
        return np.arange(n, dtype=np.float64) + t0, None
    return t0 + np.arange(n, dtype=np.float64) / rate, rate


def _masks(ps, spatial_order: str):
    """(roi, y, x, weight, plane or None) pixel lists of a PlaneSegmentation."""
    cols = set(ps.colnames)
    n = len(ps.id)
    if "pixel_mask" in cols or "voxel_mask" in cols:
        name = "pixel_mask" if "pixel_mask" in cols else "voxel_mask"
        index = ps[name]
        ends = np.asarray(index.data[:], np.int64)
        flat = np.asarray(index.target.data[:])
        if len(ends) != n or (len(ends) and ends[-1] > len(flat)) or np.any(np.diff(ends) < 0):
            raise CorruptFileError(f"PlaneSegmentation {ps.name!r}: {name} index is inconsistent")
        counts = np.diff(np.concatenate([[0], ends]))
        roi = np.repeat(np.arange(n), counts)
        f = flat.dtype.names or ()
        if f:
            a, b = np.asarray(flat[f[0]]), np.asarray(flat[f[1]])
            w = np.asarray(flat[f[-1]], np.float32)
            z = np.asarray(flat[f[2]]) if name == "voxel_mask" else None
        else:
            a, b, w = flat[:, 0], flat[:, 1], flat[:, -1].astype(np.float32)
            z = flat[:, 2] if name == "voxel_mask" else None
        x, y = (a, b) if spatial_order == "xy" else (b, a)
        return roi, y.astype(np.int64), x.astype(np.int64), w, z
    if "image_mask" in cols:
        im = np.asarray(ps["image_mask"].data[:])
        if im.ndim == 4:
            im = im[..., 0] if im.shape[-1] == 1 else im.max(axis=-1)
        if spatial_order == "xy":
            im = np.swapaxes(im, 1, 2)
        roi, y, x = np.nonzero(im)
        return roi, y, x, im[roi, y, x].astype(np.float32), None
    return None


#: PlaneSegmentation columns that name ROIs (WormID's NeuroPAL ``ID_labels`` and common others)
LABEL_COLUMNS = ("ID_labels", "neuron_name", "neuron_names", "roi_name", "roi_names", "label",
                 "labels", "name")


def _roi_labels(ps) -> np.ndarray | None:
    """One string per ROI from a label column (ragged per-voxel labels: the first non-empty)."""
    for col in LABEL_COLUMNS:
        if col not in ps.colnames:
            continue
        vals = ps[col][:]
        out = []
        for v in vals:
            if isinstance(v, (list, tuple, np.ndarray)):
                v = next((e for e in (np.asarray(v).ravel().tolist()) if str(e).strip()), "")
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            out.append(str(v).strip())
        return np.asarray(out, dtype=str)
    return None


def _frame_shape(ps, spatial_order: str):
    if "image_mask" in ps.colnames:
        s = ps["image_mask"].data.shape[1:3]
        return (s[1], s[0]) if spatial_order == "xy" else tuple(s)
    return None


def _pick(objs, types):
    return [o for o in objs if type(o).__name__ in types]


def convert(src, out, attrs: dict | None = None, fs: float | None = None, movie: bool = True,
            spatial_order: str = "xy", block_bytes: int = BLOCK_BYTES, **kw) -> None:
    """Convert an NWB file's ophys data into an ``imaging/1`` store.

    Parameters
    ----------
    src : path-like
        The ``.nwb`` file.
    out : path-like
        The store folder to write.
    fs : float, optional
        Frame rate (Hz); needed only when no series states a rate or timestamps.
    movie : bool
        Copy the TwoPhotonSeries/OnePhotonSeries movie (default) or only traces and masks.
    spatial_order : {"xy", "yx"}
        Axis order of image data in the file: ``"xy"`` as the NWB schema
        specifies, ``"yx"`` for row-major writers.
    """
    from concurrent.futures import ThreadPoolExecutor

    if spatial_order not in ("xy", "yx"):
        raise ValueError("spatial_order must be 'xy' or 'yx'")
    src = Path(src)
    with ThreadPoolExecutor(1) as pool:  # hash the source while converting (hashlib frees the GIL)
        digest = pool.submit(file_sha256, src)
        _convert(src, out, attrs, fs, movie, spatial_order, block_bytes, digest)


def _is_url(src) -> bool:
    return isinstance(src, str) and src.split("://", 1)[0] in ("http", "https", "s3", "gs")


def _open_nwb(src):
    """``(NWBHDF5IO, nwb_version, closers)`` for a local path or a URL read by byte ranges."""
    import h5py
    from pynwb import NWBHDF5IO

    closers = []
    if _is_url(src):
        import fsspec

        fobj = fsspec.open(src, mode="rb", block_size=REMOTE_BLOCK_BYTES, cache_type="blockcache").open()
        closers.append(fobj)
        h5 = h5py.File(fobj, "r")
    else:
        from neurodata.loaders.hdf5_spikes import check_global_heaps

        h5 = h5py.File(str(src), "r")
        try:
            check_global_heaps(h5, src)  # a damaged string heap makes libhdf5 spin
        except Exception:
            h5.close()
            raise
    closers.insert(0, h5)
    io = NWBHDF5IO(file=h5, mode="r", load_namespaces=True)
    version = _text(h5.attrs.get("nwb_version"))
    return io, version, closers


def convert_url(url: str, out, overwrite: bool = False, **kw):
    """Convert a remote NWB file (http(s)/s3 URL) without downloading it whole.

    HDF5 is read through fsspec by byte ranges, so only the metadata and the
    datasets converted (traces, masks, movie blocks) cross the network; pass
    ``movie=False`` to skip the movie. Returns the store path.
    """
    from neurodata.format.store import atomic_store

    with atomic_store(out, overwrite=overwrite) as tmp:
        _convert(url, tmp, kw.pop("attrs", None), kw.pop("fs", None), kw.pop("movie", True),
                 kw.pop("spatial_order", "xy"), kw.pop("block_bytes", BLOCK_BYTES), None)
    return Path(out)


def dandi_asset_url(dandiset_id: str, path: str, version: str = "draft",
                    api_url: str = "https://api.dandiarchive.org/api", timeout: float = 30.0) -> str:
    """Download URL of one asset of a DANDI dandiset (what the ``dandi`` client resolves).

    Uses the DANDI REST API: ``GET {api}/dandisets/{id}/versions/{version}/assets/?path=...``
    gives the asset id; ``{api}/assets/{asset_id}/download/`` redirects to the file.
    """
    import requests

    from neurodata.errors import DownloadError

    ident = str(dandiset_id).removeprefix("DANDI:").zfill(6)
    q = f"{api_url.rstrip('/')}/dandisets/{ident}/versions/{version}/assets/"
    try:
        r = requests.get(q, params={"path": path}, timeout=timeout)
        r.raise_for_status()
        results = r.json().get("results", [])
    except (requests.RequestException, ValueError) as e:
        raise DownloadError(f"DANDI asset lookup failed ({e})", q) from None
    exact = [a for a in results if a.get("path") == path] or results
    if not exact:
        raise DownloadError(f"dandiset {ident} ({version}) has no asset {path!r}", q)
    return f"{api_url.rstrip('/')}/assets/{exact[0]['asset_id']}/download/"


def convert_dandi(dandiset_id: str, path: str, out, version: str = "draft",
                  api_url: str = "https://api.dandiarchive.org/api", **kw):
    """Convert one NWB asset of a DANDI dandiset, streamed (see :func:`convert_url`)."""
    url = dandi_asset_url(dandiset_id, path, version, api_url)
    attrs = dict(kw.pop("attrs", None) or {})
    attrs.setdefault("dandi", {"dandiset": str(dandiset_id), "version": version, "path": path})
    return convert_url(url, out, attrs=attrs, **kw)


def _convert(src, out, attrs, fs, movie, spatial_order, block_bytes, digest) -> None:
    try:
        io, nwb_version, closers = _open_nwb(src)
        nwb = io.read()
    except Exception as e:  # pynwb/hdmf raise many types for broken files
        raise CorruptFileError(f"cannot read as NWB ({e.__class__.__name__}: {e})", src) from None
    try:
        objs = list(nwb.objects.values())
        series_list = [s for s in _pick(objs, {"RoiResponseSeries"})]
        movies = _pick(list(nwb.acquisition.values()), {"TwoPhotonSeries", "OnePhotonSeries"}) or \
            _pick(objs, {"TwoPhotonSeries", "OnePhotonSeries"})
        psegs = _pick(objs, {"PlaneSegmentation"})
        if not series_list and not movies and not psegs:
            raise FormatError("NWB file holds no ophys data (no TwoPhotonSeries/OnePhotonSeries, "
                              "PlaneSegmentation or RoiResponseSeries)", src)
        traces, times, rates, table, rows, skipped = {}, None, [], None, None, []
        for s in sorted(series_list, key=lambda s: (_kind_of(s) is None, s.name)):
            kind = _kind_of(s)
            s_table = s.rois.table
            s_rows = np.asarray(s.rois.data[:], np.int64)
            if s_rows.size and (s_rows.min() < 0 or s_rows.max() >= len(s_table.id)):
                raise CorruptFileError(f"RoiResponseSeries {s.name!r}: ROI index outside the "
                                       f"{len(s_table.id)}-row table", src)
            if kind is None or kind in traces or (table is not None and (
                    s_table is not table or not np.array_equal(s_rows, rows))):
                skipped.append(s.name)
                continue
            data = np.asarray(s.data[:], np.float32)
            if data.ndim == 1:
                data = data[:, None]
            if data.ndim == 2 and data.shape[1] != len(s_rows) and data.shape[0] == len(s_rows):
                data = data.T  # written (roi, time) against the schema
            if data.ndim != 2 or data.shape[1] != len(s_rows):
                raise CorruptFileError(f"RoiResponseSeries {s.name!r} has shape {data.shape} for "
                                       f"{len(s_rows)} ROIs", src)
            ts, rate = _series_times(s, data.shape[0])
            if times is not None and len(ts) != len(times):
                skipped.append(s.name)
                continue
            traces[kind] = data.T
            times = ts if times is None else times
            table, rows = s_table, s_rows
            if rate:
                rates.append(rate)
        mv = movies[0] if (movies and movie) else None
        if mv is not None:
            mv_rate = float(mv.rate) if mv.rate else None
            if mv_rate is None and mv.timestamps is not None and len(mv.timestamps) > 1:
                ts = np.asarray(mv.timestamps[:2])
                mv_rate = 1.0 / float(ts[1] - ts[0])
            if mv_rate:
                rates.append(mv_rate)
        plane = (movies[0].imaging_plane if movies else
                 (table.imaging_plane if table is not None else (psegs[0].imaging_plane if psegs else None)))
        if plane is not None and getattr(plane, "imaging_rate", None):
            rates.append(float(plane.imaging_rate))
        rate = float(fs) if fs is not None else (rates[0] if rates else None)
        if rate is None:
            raise NeurodataError("the frame rate is not in this NWB file (no rate or timestamps "
                                 "on any ophys series); give it with fs=... (CLI: --fs HZ)", src)
        root_attrs = {
            "source_format": f"nwb_ophys/{VERSION}",
            "nwb_version": nwb_version,
            "session_description": nwb.session_description,
            "identifier": nwb.identifier,
            "session_start_time": nwb.session_start_time.isoformat() if nwb.session_start_time else None,
            "indicator": getattr(plane, "indicator", None) if plane is not None else None,
            "excitation_lambda_nm": getattr(plane, "excitation_lambda", None) if plane is not None else None,
            "location": getattr(plane, "location", None) if plane is not None else None,
            "n_planes": 1,
            "nwb_series_skipped": skipped,
            "spatial_order_in_source": spatial_order,
            "fs_source": "user" if fs is not None else "nwb",
        }
        root_attrs.update(attrs or {})
        w = ImagingStoreWriter(out, rate, root_attrs)
        if traces:
            tattrs = {k: {"nwb_series": s.name, "nwb_container": type(s.parent).__name__}
                      for s in series_list if (k := _kind_of(s)) in traces and s.name not in skipped}
            w.write_traces(traces, timestamps=times, trace_attrs=tattrs)
        seg = table if table is not None else (psegs[0] if psegs else None)
        if seg is not None:
            n_roi = next(iter(traces.values())).shape[0] if traces else len(seg.id)
            seg_rows = rows if rows is not None else np.arange(len(seg.id))
            ids = np.asarray(seg.id.data[:])[seg_rows]
            labels = _roi_labels(seg)
            w.write_roi_table(n_roi, extra={"roi_nwb_id": ids.astype(np.int64)},
                              roi_name=None if labels is None else labels[seg_rows])
            m = _masks(seg, spatial_order)
            if m is not None:
                roi, y, x, wt, z = m
                remap = np.full(len(seg.id), -1, np.int64)
                remap[seg_rows] = np.arange(len(seg_rows))
                r2 = remap[roi]
                keep = r2 >= 0
                w.write_masks(r2[keep], y[keep], x[keep], wt[keep], n_roi,
                              frame_shape=_frame_shape(seg, spatial_order),
                              z=None if z is None else z[keep])
        if mv is not None and mv.data is not None and getattr(mv.data, "shape", (0,))[0] > 0:
            _copy_movie(w, mv, spatial_order, block_bytes, src)
        if digest is not None:
            prov = provenance([src], loader=f"nwb_ophys/{VERSION}", checksums=[digest.result()])
        else:  # streamed from a URL: not hashed (that would read the whole file)
            prov = provenance([], loader=f"nwb_ophys/{VERSION}", source_url=str(src))
        w.close(prov)
    except NeurodataError:
        raise
    except (OSError, KeyError, RuntimeError) as e:  # h5py/libhdf5 on damaged objects and data
        raise CorruptFileError(f"cannot read NWB data ({e.__class__.__name__}: {e})".splitlines()[0],
                               src) from None
    finally:
        io.close()
        for c in closers:
            c.close()


def _copy_movie(w: ImagingStoreWriter, mv, spatial_order: str, block_bytes: int, src) -> None:
    data = mv.data
    shape = tuple(data.shape)
    if len(shape) == 3:
        dims = ("frame", "y", "x")
        perm = (0, 2, 1) if spatial_order == "xy" else (0, 1, 2)
    elif len(shape) == 4:
        dims = ("frame", "plane", "y", "x")
        perm = (0, 3, 2, 1) if spatial_order == "xy" else (0, 3, 1, 2)
    else:
        raise CorruptFileError(f"{type(mv).__name__} {mv.name!r} data has shape {shape}", src)
    out_shape = tuple(shape[p] for p in perm)
    dtype = np.dtype(data.dtype)
    w.create_movie(out_shape, dtype, dims,
                   attrs={"nwb_series": mv.name, "units": getattr(mv, "unit", None) or "a.u."})
    fpc = w.frames_per_chunk
    frame_bytes = int(np.prod(out_shape[1:])) * dtype.itemsize
    step = max(fpc, (max(1, block_bytes // max(frame_bytes, 1)) // fpc) * fpc)
    total = np.zeros(out_shape[1:], np.float64)
    for t0 in range(0, shape[0], step):
        block = np.transpose(np.asarray(data[t0:t0 + step]), perm)
        w.write_frames(t0, block)
        total += block.sum(axis=0, dtype=np.float64)
    w.write_mean_image(total / shape[0], plane_axis=len(dims) == 4)
    if len(dims) == 4:
        w.root.attrs["n_planes"] = int(out_shape[1])
