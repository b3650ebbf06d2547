"""The ``imaging/1`` store: calcium-imaging movies, ROI traces and ROI masks.

One store holds one recording (all planes of it). Layout (see docs/format.md):

- ``movie`` on ``(frame, [channel], [plane], y, x)``, chunked so that both a
  frame range and a spatial tile read few chunks; the root carries OME-Zarr
  0.5 ``ome.multiscales`` metadata pointing at it.
- ``F``, ``Fneu``, ``spks``, ``dff`` on ``(roi, time)`` float32, each with
  attributes saying how it was derived; ``time`` in seconds.
- ``iscell`` / ``cell_probability`` / ``roi_plane`` / ``roi_y`` / ``roi_x`` on ``roi``.
- ROI masks as sparse pixel lists on ``pixel`` (``mask_roi``, ``mask_y``,
  ``mask_x``, ``mask_weight``) with ``mask_start``/``mask_count`` per ROI.
- ``mean_image`` on ``([plane], y, x)``.

Writers stream the movie in frame blocks, so memory is bounded by one block.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from neurodata.errors import SchemaError
from neurodata.format.schema import parse_schema, SCHEMA_ATTR
from neurodata.format.store import codec, create_array, finalize_store, open_new_group

MODALITY = "imaging"
TRACE_NAMES = ("F", "Fneu", "spks", "dff", "denoised")
#: target bytes of one movie chunk (a few MB: fast to decode, few objects)
MOVIE_CHUNK_BYTES = 4 << 20
#: spatial tile edge of movie chunks
MOVIE_TILE = 256
#: movie codec: blosc-lz4 + bit-shuffle. Measured on 2P-like uint16 frames it
#: compresses within 7 % of zstd-5 (1.93x vs 2.07x) at ~6x the encode and ~3x
#: the decode speed, which is what bounds movie conversion and streaming.
MOVIE_CODEC = dict(cname="lz4", clevel=5, shuffle="bitshuffle")
#: trace chunks: ROIs x samples
TRACE_CHUNKS = (64, 16384)
_OME_AXIS_TYPES = {"frame": "time", "channel": "channel", "plane": "space", "y": "space",
                   "x": "space"}
_MOVIE_DIM_ORDER = ("frame", "channel", "plane", "y", "x")


def movie_chunks(shape: Sequence[int], dtype, dims: Sequence[str]) -> tuple[int, ...]:
    """Chunk shape for a movie: spatial tiles of ``MOVIE_TILE`` and enough frames for ~4 MB.

    Channel and plane get one per chunk, so a single plane reads alone.
    """
    itemsize = np.dtype(dtype).itemsize
    chunks = []
    for d, n in zip(dims, shape):
        if d in ("y", "x"):
            chunks.append(max(1, min(int(n), MOVIE_TILE)))
        else:
            chunks.append(1)
    frame_bytes = int(np.prod([c for d, c in zip(dims, chunks) if d != "frame"])) * itemsize
    nf = max(1, MOVIE_CHUNK_BYTES // max(frame_bytes, 1))
    chunks[list(dims).index("frame")] = int(max(1, min(int(shape[0]), nf)))
    return tuple(chunks)


def ome_metadata(dims: Sequence[str], fs: float | None, pixel_size_um: Sequence[float] | None,
                 path: str = "movie", name: str | None = None) -> dict:
    """OME-Zarr 0.5 ``ome`` attribute describing the movie as a one-level multiscale image."""
    axes = []
    scale = []
    for d in dims:
        ax = {"name": d, "type": _OME_AXIS_TYPES[d]}
        if d == "frame":
            ax["unit"] = "second"
            scale.append(1.0 / fs if fs else 1.0)
        elif d in ("y", "x"):
            if pixel_size_um is not None:
                ax["unit"] = "micrometer"
                scale.append(float(pixel_size_um[0 if d == "y" else 1]))
            else:
                scale.append(1.0)
        else:
            scale.append(1.0)
        axes.append(ax)
    ms = {"axes": axes,
          "datasets": [{"path": path,
                        "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}
    if name:
        ms["name"] = name
    return {"version": "0.5", "multiscales": [ms]}


class ImagingStoreWriter:
    """Write an ``imaging/1`` store piece by piece.

    Parameters
    ----------
    path : path-like
        The (temporary) store folder.
    fs : float
        Frame rate in Hz (per plane: the rate at which each ROI is sampled).
    attrs : dict, optional
        Extra root attributes (``indicator``, ``n_planes``, ``source_format``...).
    """

    def __init__(self, path, fs: float | None, attrs: dict | None = None):
        self.path = Path(path)
        self.fs = None if fs is None else float(fs)
        a = {"fs": self.fs, "fs_units": "Hz"}
        a.update(attrs or {})
        self.root = open_new_group(self.path, MODALITY, a)
        self.movie = None
        self._movie_dims: tuple[str, ...] = ()
        self._n_time = None
        self._enc = self._pool = None  # movie chunk encoder and its threads (write_frames)
        self._enc_checked = False

    # ---- movie -----------------------------------------------------------------------------
    def create_movie(self, shape: Sequence[int], dtype, dims: Sequence[str] = ("frame", "y", "x"),
                     pixel_size_um: Sequence[float] | None = None, attrs: dict | None = None):
        """Create the empty ``movie`` array; fill it with :meth:`write_frames`."""
        dims = tuple(dims)
        if dims[0] != "frame" or dims[-2:] != ("y", "x") or \
                [d for d in _MOVIE_DIM_ORDER if d in dims] != list(dims):
            raise SchemaError(f"movie dims must follow (frame, [channel], [plane], y, x), got {dims}")
        chunks = movie_chunks(shape, dtype, dims)
        a = {"units": "a.u.", "chunks_note": "frame blocks x spatial tiles"}
        a.update(attrs or {})
        self.movie = create_array(self.root, "movie", None, dims, shape=tuple(int(s) for s in shape),
                                  dtype=dtype, chunks=chunks, attrs=a, compressor=codec(**MOVIE_CODEC))
        self._movie_dims = dims
        self.root.attrs["ome"] = ome_metadata(dims, self.fs, pixel_size_um)
        self.root.attrs["movie_shape"] = [int(s) for s in shape]
        return self.movie

    @property
    def frames_per_chunk(self) -> int:
        """Frames in one movie chunk: write blocks in multiples of it."""
        return int(self.movie.chunks[0])

    def write_frames(self, start: int, block: np.ndarray) -> None:
        """Write ``block`` (frames first, same trailing shape) at frame ``start``.

        A block that covers whole frame-chunks is encoded here, one chunk per
        task on a small thread pool (blosc releases the GIL), and each chunk
        written as one file of the local store: the same bytes zarr writes,
        without its per-chunk asyncio round trips (measured ~3x faster).
        Other blocks, and stores this cannot address, go through zarr.
        """
        n = block.shape[0]
        enc = self._chunk_encoder() if n else None
        shape, chunks = self.movie.shape, self.movie.chunks
        end = start + n
        if (enc is None or start % chunks[0] or (end % chunks[0] and end != shape[0])
                or end > shape[0] or tuple(block.shape[1:]) != tuple(shape[1:])):
            self.movie[start:end] = block
            return
        block = np.asarray(block, self.movie.dtype)
        grid = [range(0, s, c) for s, c in zip(shape[1:], chunks[1:])]
        tasks = [(t0, rest) for t0 in range(start, end, chunks[0]) for rest in np.ndindex(
            *[len(g) for g in grid])]
        pool = self._encode_pool()

        def one(task):
            t0, rest = task
            sel = (slice(t0 - start, min(t0 + chunks[0], end) - start),) + tuple(
                slice(i * c, (i + 1) * c) for i, c in zip(rest, chunks[1:]))
            part = block[sel]
            if not part.any():  # an all-fill chunk is not stored (as zarr does)
                return
            if part.shape != tuple(chunks):  # edge chunks are stored padded with the fill value
                full = np.zeros(chunks, block.dtype)
                full[tuple(slice(0, k) for k in part.shape)] = part
                part = full
            data = enc.encode(np.ascontiguousarray(part).view(np.uint8).reshape(-1))
            key = self.movie.metadata.encode_chunk_key((t0 // chunks[0],) + tuple(rest))
            f = self._movie_dir / key
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)

        for _ in pool.map(one, tasks):
            pass

    def _chunk_encoder(self):
        """A numcodecs Blosc matching the movie's codecs, or None when zarr must write."""
        if self._enc_checked:
            return self._enc
        self._enc_checked = True
        try:
            import sys

            from numcodecs import Blosc
            from zarr.codecs import BloscCodec, BytesCodec
            from zarr.storage import LocalStore

            codecs = tuple(self.movie.metadata.codecs)
            store = self.movie.store
            ok = (isinstance(store, LocalStore) and len(codecs) == 2 and isinstance(codecs[0], BytesCodec)
                  and isinstance(codecs[1], BloscCodec) and self.movie.metadata.fill_value == 0
                  and (self.movie.dtype.itemsize == 1 or
                       (codecs[0].endian is not None and codecs[0].endian.value == sys.byteorder)))
            if ok:
                c = codecs[1]
                self._movie_dir = Path(store.root) / self.movie.path
                self._enc = Blosc(cname=c.cname.value, clevel=int(c.clevel),
                                  shuffle={"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE,
                                           "bitshuffle": Blosc.BITSHUFFLE}[c.shuffle.value],
                                  blocksize=int(c.blocksize), typesize=int(c.typesize))
        except (ImportError, AttributeError, TypeError, KeyError):
            self._enc = None
        return self._enc

    def _encode_pool(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)))
        return self._pool

    def write_mean_image(self, image: np.ndarray, plane_axis: bool = False) -> None:
        """Time-averaged image, ``(y, x)`` or ``(plane, y, x)``."""
        dims = ("plane", "y", "x") if plane_axis else ("y", "x")
        create_array(self.root, "mean_image", np.asarray(image, np.float32), dims,
                     chunks=(1, 4096, 4096) if plane_axis else (4096, 4096),
                     attrs={"units": "a.u.", "description": "time-averaged frame"})

    # ---- traces ----------------------------------------------------------------------------
    def write_traces(self, traces: dict, timestamps: np.ndarray | None = None,
                     trace_attrs: dict | None = None) -> None:
        """Write ``(roi, time)`` traces named in :data:`TRACE_NAMES` (or others) as float32.

        ``trace_attrs[name]`` documents each derived trace (method, baseline,
        neuropil coefficient); ``timestamps`` (seconds) default to ``arange/fs``.
        """
        shapes = {k: np.shape(v) for k, v in traces.items() if v is not None}
        if not shapes:
            return
        first = next(iter(shapes.values()))
        for k, s in shapes.items():
            if len(s) != 2 or s != first:
                raise SchemaError(f"trace {k!r} has shape {s}, expected {first} (roi, time)")
        n_roi, n_time = first
        self._n_time = n_time
        if timestamps is None:
            if not self.fs:
                raise SchemaError("traces need a frame rate fs or timestamps")
            timestamps = np.arange(n_time, dtype=np.float64) / self.fs
        timestamps = np.asarray(timestamps, np.float64)
        if timestamps.shape != (n_time,):
            raise SchemaError(f"timestamps have shape {timestamps.shape}, expected ({n_time},)")
        create_array(self.root, "time", timestamps, ("time",), chunks=(1 << 20,),
                     attrs={"units": "s"})
        for name, data in traces.items():
            if data is None:
                continue
            a = {"units": "a.u." if name != "dff" else "1", "coordinates": "time"}
            a.update((trace_attrs or {}).get(name, {}))
            create_array(self.root, name, np.asarray(data, np.float32), ("roi", "time"),
                         chunks=TRACE_CHUNKS, attrs=a)

    def write_roi_table(self, n_roi: int, iscell=None, cell_probability=None, roi_plane=None,
                        roi_name=None, extra: dict | None = None) -> None:
        """Per-ROI columns: classifier output, plane index, names."""
        if iscell is not None:
            create_array(self.root, "iscell", np.asarray(iscell, bool).reshape(n_roi), ("roi",),
                         attrs={"description": "classified as a cell"})
        if cell_probability is not None:
            create_array(self.root, "cell_probability",
                         np.asarray(cell_probability, np.float32).reshape(n_roi), ("roi",),
                         attrs={"units": "1", "description": "classifier probability of a cell"})
        plane = np.zeros(n_roi, np.int16) if roi_plane is None else np.asarray(roi_plane, np.int16)
        create_array(self.root, "roi_plane", plane, ("roi",))
        if roi_name is not None:
            create_array(self.root, "roi_name", np.asarray(roi_name, dtype=str), ("roi",))
        for k, v in (extra or {}).items():
            v = np.asarray(v)
            create_array(self.root, k, v, ("roi",) + tuple(f"{k}_dim{i}" for i in range(1, v.ndim)))

    def write_masks(self, roi: np.ndarray, y: np.ndarray, x: np.ndarray,
                    weight: np.ndarray | None, n_roi: int, frame_shape: Sequence[int] | None = None,
                    z: np.ndarray | None = None) -> None:
        """Sparse ROI masks: one row per (roi, pixel), sorted by roi.

        Also writes per-ROI ``mask_start``/``mask_count`` (direct access) and
        the weighted centres ``roi_y``/``roi_x``; volumetric (voxel) masks
        add ``mask_z`` and ``roi_z``.
        """
        roi = np.asarray(roi, np.int64)
        if len(roi) and (roi.min() < 0 or roi.max() >= n_roi):
            raise SchemaError(f"mask rows name ROIs outside 0..{n_roi - 1}")
        order = np.argsort(roi, kind="stable")
        roi, y, x = roi[order], np.asarray(y)[order], np.asarray(x)[order]
        w = np.ones(len(roi), np.float32) if weight is None else np.asarray(weight, np.float32)[order]
        count = np.bincount(roi, minlength=n_roi).astype(np.int64)
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        pix = (1 << 20,)
        create_array(self.root, "mask_roi", roi.astype(np.int32), ("pixel",), chunks=pix)
        create_array(self.root, "mask_y", y.astype(np.int32), ("pixel",), chunks=pix,
                     attrs={"units": "pixel"})
        create_array(self.root, "mask_x", x.astype(np.int32), ("pixel",), chunks=pix,
                     attrs={"units": "pixel"})
        create_array(self.root, "mask_weight", w, ("pixel",), chunks=pix)
        create_array(self.root, "mask_start", start, ("roi",))
        create_array(self.root, "mask_count", count, ("roi",))
        wsum = np.bincount(roi, weights=w, minlength=n_roi)
        with np.errstate(invalid="ignore", divide="ignore"):
            cy = np.bincount(roi, weights=w * y, minlength=n_roi) / wsum
            cx = np.bincount(roi, weights=w * x, minlength=n_roi) / wsum
        create_array(self.root, "roi_y", cy.astype(np.float32), ("roi",), attrs={"units": "pixel"})
        create_array(self.root, "roi_x", cx.astype(np.float32), ("roi",), attrs={"units": "pixel"})
        if z is not None:
            z = np.asarray(z)[order]
            create_array(self.root, "mask_z", z.astype(np.int32), ("pixel",), chunks=pix,
                         attrs={"units": "pixel"})
            with np.errstate(invalid="ignore", divide="ignore"):
                cz = np.bincount(roi, weights=w * z, minlength=n_roi) / wsum
            create_array(self.root, "roi_z", cz.astype(np.float32), ("roi",), attrs={"units": "pixel"})
        if frame_shape is not None:
            self.root.attrs["frame_shape"] = [int(v) for v in frame_shape]

    def close(self, provenance: dict | None = None) -> None:
        """Write provenance and consolidate metadata."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if provenance is not None:
            self.root.attrs["provenance"] = json.loads(json.dumps(provenance, default=str))
        finalize_store(self.path)


# ---- reading --------------------------------------------------------------------------------
class ImagingDataset:
    """An ``imaging/1`` store.

    ``len(ds)`` is the number of ROIs when the store holds traces, else the
    number of movie frames. ``ds[i]`` is then ROI ``i``'s primary trace
    (``dff`` if present, else ``F``; a 1-D float32 array over time) or movie
    frame ``i``; slices and integer arrays return stacked rows/frames.

    A local store is pinned to the version current at open: reads return that
    version or raise :class:`~neurodata.errors.StoreReplacedError` after a
    re-conversion, never a mix (see neurodata/format/snapshot.py).
    """

    def __init__(self, path, storage_options: dict | None = None):
        from neurodata.format.snapshot import open_pinned

        self.path = path
        self._snap = open_pinned(path, lambda: self._open(storage_options))

    def _open(self, storage_options) -> None:
        import zarr

        path = self.path
        kw = {"storage_options": storage_options} if storage_options else {}
        # a path, URL, or any zarr store object (e.g. a caching or logging store)
        where = os.fspath(path) if isinstance(path, os.PathLike) else path
        self.root = zarr.open_group(where, mode="r", **kw)
        self.attrs = dict(self.root.attrs)
        tag = self.attrs.get(SCHEMA_ATTR)
        if tag is None:
            raise SchemaError(f"not a neurodata store (no {SCHEMA_ATTR!r} attribute)", path)
        modality, _ = parse_schema(tag, path)
        if modality != MODALITY:
            raise SchemaError(f"store holds {modality}, not imaging", path)
        self._names = set(self.root.array_keys())

    def _read(self, read):
        """``read()`` of the pinned version (StoreReplacedError after a replacement)."""
        from neurodata.format.snapshot import checked_read

        return checked_read(self._snap, read)

    # -- contents
    def __contains__(self, name: str) -> bool:
        return name in self._names

    def array(self, name: str):
        """The zarr array ``name`` (lazy)."""
        if name not in self._names:
            raise KeyError(f"{name!r} not in store {self.path}; has {sorted(self._names)}")
        return self.root[name]

    @property
    def fs(self) -> float | None:
        return self.attrs.get("fs")

    @property
    def trace_names(self) -> list[str]:
        return [n for n in TRACE_NAMES if n in self._names]

    @property
    def primary_trace(self) -> str | None:
        for n in ("dff", "F", "spks", "Fneu"):
            if n in self._names:
                return n
        return None

    @property
    def n_rois(self) -> int:
        t = self.primary_trace
        if t is not None:
            return int(self.root[t].shape[0])
        return int(self.root["mask_start"].shape[0]) if "mask_start" in self._names else 0

    @property
    def n_frames(self) -> int:
        if self.primary_trace is not None:
            return int(self.root[self.primary_trace].shape[1])
        return int(self.root["movie"].shape[0]) if "movie" in self._names else 0

    @property
    def has_movie(self) -> bool:
        return "movie" in self._names

    @property
    def movie_dims(self) -> tuple[str, ...]:
        return tuple(self.root["movie"].metadata.dimension_names) if self.has_movie else ()

    def __len__(self) -> int:
        return self.n_rois if self.primary_trace is not None else self.n_frames

    def __getitem__(self, i):
        if self.primary_trace is not None:
            arr = self.root[self.primary_trace]
        elif self.has_movie:
            arr = self.root["movie"]
        else:
            raise IndexError(f"store {self.path} holds neither traces nor a movie")
        n = arr.shape[0]
        if isinstance(i, (int, np.integer)):
            j = int(i) + (n if i < 0 else 0)
            if not 0 <= j < n:
                raise IndexError(f"index {i} out of range for {n}")
            return self._read(lambda: np.asarray(arr[j]))
        if isinstance(i, slice):
            return self._read(lambda: np.asarray(arr[i]))
        idx = np.asarray(i)
        if idx.dtype == bool:
            idx = np.nonzero(idx)[0]
        return self._read(lambda: np.asarray(arr.get_orthogonal_selection((idx,))))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (f"<ImagingDataset {self.path!s}: {self.n_rois} ROIs, {self.n_frames} frames, "
                f"fs={self.fs} Hz, movie={list(self.root['movie'].shape) if self.has_movie else None}>")

    # -- typed accessors
    def traces(self, name: str | None = None, rois=None, start: int | None = None,
               stop: int | None = None) -> np.ndarray:
        """``(roi, time)`` float32 block of trace ``name`` (default: the primary trace)."""
        arr = self.array(name or self.primary_trace)
        sel_r = slice(None) if rois is None else rois
        sl_t = slice(start, stop)
        if isinstance(sel_r, slice):
            return self._read(lambda: np.asarray(arr[sel_r, sl_t]))
        return self._read(lambda: np.asarray(arr.get_orthogonal_selection((np.asarray(sel_r), sl_t))))

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Movie frames ``start:stop`` (reads only the chunks they overlap)."""
        arr = self.array("movie")
        return self._read(lambda: np.asarray(arr[start:stop]))

    def time(self) -> np.ndarray:
        """Sample times (seconds) of the traces."""
        if "time" in self._names:
            return self._read(lambda: np.asarray(self.root["time"][:]))
        return np.arange(self.n_frames) / float(self.fs or 1.0)

    @property
    def iscell(self) -> np.ndarray | None:
        if "iscell" not in self._names:
            return None
        return self._read(lambda: np.asarray(self.root["iscell"][:]))

    @property
    def roi_names(self) -> np.ndarray | None:
        """Neuron/ROI names when the source has them (e.g. NWB ``ID_labels``), else None."""
        if "roi_name" not in self._names:
            return None
        names = self._read(lambda: np.asarray(self.root["roi_name"][:]))
        return np.array([str(v) for v in names.tolist()], dtype=str)

    def roi_mask(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(y, x, weight)`` pixels of ROI ``i``."""
        def read():
            s = int(self.root["mask_start"][i])
            c = int(self.root["mask_count"][i])
            return (np.asarray(self.root["mask_y"][s:s + c]),
                    np.asarray(self.root["mask_x"][s:s + c]),
                    np.asarray(self.root["mask_weight"][s:s + c]))

        return self._read(read)

    def roi_image(self, i: int, shape: Sequence[int] | None = None) -> np.ndarray:
        """Dense ``(y, x)`` weight image of ROI ``i``."""
        y, x, w = self.roi_mask(i)
        shape = shape or self.attrs.get("frame_shape") or (int(y.max()) + 1, int(x.max()) + 1)
        img = np.zeros(tuple(shape), np.float32)
        img[y, x] = w
        return img

    def mean_image(self) -> np.ndarray | None:
        if "mean_image" not in self._names:
            return None
        return self._read(lambda: np.asarray(self.root["mean_image"][...]))

    def to_xarray(self):
        """The store as an ``xarray.DataTree`` (lazy, dask-backed)."""
        import xarray as xr

        where = os.fspath(self.path) if isinstance(self.path, os.PathLike) else self.path
        return xr.open_datatree(where, engine="zarr", chunks={})

    def provenance(self) -> dict:
        return dict(self.attrs.get("provenance", {}))

    def summary(self) -> dict:
        """Figures ``neurodata inspect`` prints."""
        from neurodata.format.inspect import store_bytes

        fs = self.fs
        n_frames = self.n_frames
        isc = self.iscell
        return {
            "path": os.fspath(self.path) if isinstance(self.path, (str, os.PathLike)) else str(self.path),
            "schema": self.attrs.get(SCHEMA_ATTR),
            "rois": self.n_rois,
            "frames": n_frames,
            "fs_hz": fs,
            "duration_s": (n_frames / fs) if fs else None,
            "iscell": int(isc.sum()) if isc is not None else None,
            "traces": self.trace_names,
            "planes": self.attrs.get("n_planes", 1),
            "movie_shape": list(self.root["movie"].shape) if self.has_movie else None,
            "movie_dims": list(self.movie_dims) if self.has_movie else None,
            "movie_chunks": list(self.root["movie"].chunks) if self.has_movie else None,
            "indicator": self.attrs.get("indicator"),
            "source_format": self.attrs.get("source_format"),
            "bytes_on_disk": store_bytes(self.path) if isinstance(self.path, (str, os.PathLike)) else None,
            "provenance": self.attrs.get("provenance", {}),
        }


def add_derived_trace(path, name: str, data: np.ndarray, attrs: dict | None = None,
                      overwrite: bool = False) -> None:
    """Add a derived ``(roi, time)`` trace (e.g. ``dff`` or ``spks``) to an existing local store.

    ``attrs`` records how it was derived (the ``info`` dicts that
    :func:`neurodata.transforms.calcium.dff` and ``deconvolve`` return fit
    here; numpy values are converted). Metadata is re-consolidated.
    """
    import zarr

    ds = ImagingDataset(path)
    shape = (ds.n_rois, ds.n_frames)
    data = np.asarray(data, np.float32)
    if ds.primary_trace is not None and data.shape != shape:
        raise SchemaError(f"trace {name!r} has shape {data.shape}, store traces are {shape}", path)
    if name in ds and not overwrite:
        raise SchemaError(f"store already has {name!r} (use overwrite=True)", path)
    root = zarr.open_group(os.fspath(path), mode="r+")
    if name in ds:
        del root[name]
    a = {"units": "1" if name == "dff" else "a.u.", "coordinates": "time"}
    a.update({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in (attrs or {}).items()})
    create_array(root, name, data, ("roi", "time"), chunks=TRACE_CHUNKS, attrs=a)
    finalize_store(path)


def open_store(path, storage_options: dict | None = None) -> ImagingDataset:
    """Open an ``imaging/1`` store (``neurodata.open`` calls this)."""
    return ImagingDataset(path, storage_options)


def preview(ds: ImagingDataset, out_png, n_traces: int = 5, **kw) -> Path:
    """Draw the mean image (if any) and a few traces into ``out_png`` (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    img = ds.mean_image()
    if img is None and ds.has_movie:
        m = ds.array("movie")
        k = min(m.shape[0], 64)
        img = np.asarray(m[:k]).astype(np.float32).mean(axis=0)
    while img is not None and img.ndim > 2:
        img = img[0]
    title = "mean image"
    if img is None and "mask_y" in ds:  # no image in the store: draw the ROI footprints
        y = np.asarray(ds.array("mask_y")[:])
        x = np.asarray(ds.array("mask_x")[:])
        w = np.asarray(ds.array("mask_weight")[:])
        if len(y):
            shape = ds.attrs.get("frame_shape") or (int(y.max()) + 1, int(x.max()) + 1)
            img = np.zeros(tuple(shape), np.float32)
            np.add.at(img, (y, x), w)
            title = "ROI footprints"
    has_tr = ds.primary_trace is not None
    ncols = int(img is not None) + int(has_tr)
    fig, axes = plt.subplots(1, max(ncols, 1), figsize=(5 * max(ncols, 1) + (3 if has_tr else 0), 4),
                             squeeze=False)
    ax_i = 0
    if img is not None:
        ax = axes[0, ax_i]
        if title == "mean image":
            ax.imshow(img, cmap="gray", vmin=np.percentile(img, 1), vmax=np.percentile(img, 99.5))
        else:
            ax.imshow(img, cmap="magma", vmin=0, vmax=float(img.max()) or 1.0)
        if "roi_y" in ds and title == "mean image":
            ax.scatter(np.asarray(ds.array("roi_x")[:]), np.asarray(ds.array("roi_y")[:]),
                       s=6, c="tab:orange")
        ax.set_title(title)
        ax.set_axis_off()
        ax_i += 1
    if has_tr:
        ax = axes[0, ax_i]
        rois = np.arange(min(n_traces, ds.n_rois))
        if ds.iscell is not None and ds.iscell.any():
            rois = np.nonzero(ds.iscell)[0][:n_traces]
        tr = ds.traces(None, rois=rois)
        t = ds.time()
        for k, (r, row) in enumerate(zip(rois, tr)):
            span = np.ptp(row) or 1.0
            ax.plot(t, (row - row.min()) / span + k, lw=0.5)
        ax.set_yticks(np.arange(len(rois)) + 0.5, [f"roi {r}" for r in rois])
        ax.set_xlabel("time (s)")
        ax.set_title(f"{ds.primary_trace} (normalised)")
    if ncols == 0:
        axes[0, 0].text(0.5, 0.5, "empty store", ha="center")
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
