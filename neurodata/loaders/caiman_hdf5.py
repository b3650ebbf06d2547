"""CaImAn CNMF/CNMF-E results (``cnm.save("results.hdf5")``) -> ``imaging/1`` store.

CaImAn writes its ``CNMF`` object's ``__dict__`` recursively into HDF5
(``caiman.utils.utils.save_dict_to_hdf5``): ``estimates/`` holds ``C``
(denoised traces, K x T), ``S`` (deconvolved activity), ``YrA`` (residuals;
``C + YrA`` is the raw trace), ``F_dff``, ``idx_components`` (accepted
components), ``cnn_preds``, ``dims`` and ``A``, the spatial footprints as a
scipy CSC matrix stored as a group ``data``/``indices``/``indptr``/``shape``
of shape (pixels, K) whose pixel index runs in Fortran order over ``dims``
(``p = y + x * d1``). ``params/data/fr`` is the frame rate and
``params/data/decay_time`` the indicator decay. ``None`` is stored as the
string ``"NoneType"``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, NeurodataError
from neurodata.format.imaging import ImagingStoreWriter
from neurodata.format.store import provenance

VERSION = "CaImAn 1.x CNMF save_dict_to_hdf5"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def sniff(path: Path, head: bytes) -> bool:
    """HDF5 with ``estimates/C`` and an ``estimates/A`` sparse group (CaImAn's layout)."""
    if not head.startswith(HDF5_MAGIC):
        return False
    import h5py

    from neurodata.loaders.hdf5_spikes import check_global_heaps

    with h5py.File(path, "r") as f:
        check_global_heaps(f, path)  # raises on a damaged string heap (libhdf5 would spin)
        est = f.get("estimates")
        if not isinstance(est, h5py.Group) or "C" not in est:
            return False
        A = est.get("A")
        return isinstance(A, h5py.Group) and {"data", "indices", "indptr", "shape"} <= set(A.keys())


def _value(node):
    """Dataset value with CaImAn's ``"NoneType"`` placeholder as None."""
    if node is None:
        return None
    v = node[()]
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str) and v == "NoneType":
        return None
    return v


def _array(est, name, path, n_rows=None):
    v = _value(est.get(name))
    if v is None:
        return None
    a = np.asarray(v)
    if a.dtype.kind not in "fiub":
        return None
    if n_rows is not None and a.ndim >= 1 and a.shape[0] != n_rows:
        raise CorruptFileError(f"estimates/{name} has {a.shape[0]} rows for {n_rows} components", path)
    return a


def convert(src, out, attrs: dict | None = None, fs: float | None = None,
            indicator: str | None = None, **kw) -> None:
    """Convert a CaImAn results HDF5 file into an ``imaging/1`` store.

    ``F`` is ``C + YrA`` (the raw trace CaImAn's ``F_dff`` is computed
    from), ``denoised`` is ``C``, ``spks`` is ``S``, ``dff`` is ``F_dff``;
    ``iscell`` marks ``idx_components`` when CaImAn's evaluation ran.
    """
    src = Path(src)
    try:
        traces, K, rate, decay, dims, iscell, prob, roi, y, x, data, n = _read_results(src, fs)
    except NeurodataError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError,
            AttributeError, OverflowError) as e:  # h5py/libhdf5 on damaged files
        raise CorruptFileError(f"unreadable CaImAn HDF5 ({type(e).__name__}: {e})", src) from None
    root_attrs = {"source_format": f"caiman_hdf5/{VERSION}", "n_planes": 1, "indicator": indicator,
                  "fs_source": "user" if fs is not None else "caiman params",
                  "caiman": {"decay_time_s": None if decay is None else float(decay),
                             "dims": list(dims)}}
    root_attrs.update(attrs or {})
    w = ImagingStoreWriter(out, rate, root_attrs)
    tattrs = {"F": {"description": "CaImAn C + YrA (denoised trace plus residual)"},
              "denoised": {"description": "CaImAn C (CNMF denoised trace)"},
              "spks": {"description": "CaImAn S (deconvolved activity)", "method": "CaImAn OASIS",
                       "tau_s": None if decay is None else float(decay)},
              "dff": {"description": "CaImAn F_dff (detrend_df_f)", "method": "caiman detrend_df_f"}}
    w.write_traces({k: v for k, v in traces.items() if v is not None}, trace_attrs=tattrs)
    w.write_roi_table(K, iscell=iscell, cell_probability=prob)
    w.write_masks(roi, y, x, data[:n], K, frame_shape=dims[:2])
    w.close(provenance([src], loader=f"caiman_hdf5/{VERSION}"))


def _read_results(src: Path, fs):
    """Traces, rate, footprints and labels of a results file (h5py errors escape)."""
    import h5py

    from neurodata.loaders.hdf5_spikes import check_global_heaps

    with h5py.File(src, "r") as f:
        check_global_heaps(f, src)  # "NoneType" strings live in heaps; damaged ones make libhdf5 spin
        est = f.get("estimates")
        if not isinstance(est, h5py.Group):
            raise FormatError("not a CaImAn results file (no estimates group)", src)
        C = _array(est, "C", src)
        if C is None or C.ndim != 2:
            raise CorruptFileError("estimates/C is missing or not a 2-D (components, frames) array", src)
        C = C.astype(np.float32)
        K, T = C.shape
        traces = {"F": None, "denoised": C}
        YrA = _array(est, "YrA", src, K)
        if YrA is not None:
            if YrA.shape != C.shape:
                raise CorruptFileError(f"estimates/YrA shape {YrA.shape} differs from C {C.shape}", src)
            traces["F"] = C + YrA.astype(np.float32)
        S = _array(est, "S", src, K)
        if S is not None and S.shape == C.shape:
            traces["spks"] = S
        dff = _array(est, "F_dff", src, K)
        if dff is not None and dff.shape == C.shape:
            traces["dff"] = dff
        fr = _value(f.get("params/data/fr"))
        decay = _value(f.get("params/data/decay_time"))
        rate = float(fs) if fs is not None else (float(fr) if fr is not None else None)
        if rate is None or not rate > 0:
            raise NeurodataError("the frame rate is not in this CaImAn file (params/data/fr); "
                                 "give it with fs=... (CLI: --fs HZ)", src)
        dims = _value(est.get("dims"))
        if dims is None:
            dims = _value(f.get("params/data/dims")) or _value(f.get("dims"))
        dims = tuple(int(d) for d in np.asarray(dims).ravel()) if dims is not None else None
        idx = _array(est, "idx_components", src)
        iscell = None
        if idx is not None:
            iscell = np.zeros(K, bool)
            idx = idx.astype(np.int64).ravel()
            if idx.size and (idx.min() < 0 or idx.max() >= K):
                raise CorruptFileError("estimates/idx_components indexes beyond the components", src)
            iscell[idx] = True
        cnn = _array(est, "cnn_preds", src)
        prob = cnn.astype(np.float32) if cnn is not None and cnn.shape == (K,) else None
        A = est["A"]
        shape = tuple(int(v) for v in np.asarray(A["shape"][()]).ravel())
        indptr = np.asarray(A["indptr"][()], np.int64)
        indices = np.asarray(A["indices"][()], np.int64)
        data = np.asarray(A["data"][()], np.float32)
        if len(shape) != 2 or shape[1] != K or len(indptr) != K + 1 or indptr[-1] > len(indices) \
                or len(indices) != len(data) or np.any(np.diff(indptr) < 0):
            raise CorruptFileError(f"estimates/A is not a consistent CSC matrix of {K} components "
                                   f"(shape {shape}, {len(indptr)} indptr, {len(indices)} indices)", src)
        if dims is None or int(np.prod(dims[:2])) != shape[0]:
            raise CorruptFileError(f"estimates/A has {shape[0]} pixels, dims {dims} do not match", src)
        if indices.size and (indices.min() < 0 or indices.max() >= shape[0]):
            raise CorruptFileError("estimates/A pixel indices out of range", src)
        n = int(indptr[-1])
        roi = np.repeat(np.arange(K), np.diff(indptr))
        pix = indices[:n]
        y, x = pix % dims[0], pix // dims[0]
    return traces, K, rate, decay, dims, iscell, prob, roi, y, x, data, n
