"""Mutation fuzzing of every decoder in the format registry.

Real files (``../shared/data``, or ``--data``) are the seeds: each registered
format gets the files its detector recognises there, plus a few seeds derived
from real recordings for formats without a real sample (EVT 3.0, AEDAT 3.1,
SHD-style HDF5, numpy, AER streams, GraphML, TIFF). Every case copies a seed,
applies one seeded mutation -- bit flips, byte runs overwritten with
0x00/0xFF/random, truncation, header integers set to huge values, digits of a
text header made huge, duplicated or deleted blocks, random bytes behind a
valid magic prefix, mutated members of a zip container -- and hands the file
to a worker process that decodes it:

- event formats: ``loaders.detect`` then the format's ``read``; allowed is an
  :class:`~neurodata.events.EventRecording` whose columns have equal lengths
  and the neurodata dtypes, or a :class:`~neurodata.errors.NeurodataError`
  whose message names the file;
- other modalities: ``neurodata.convert(src, out)``; allowed is a store that
  opens, or a NeurodataError naming the file with nothing left at ``out``
  (neither a store nor a temporary sibling).

Anything else is a failure: another exception type, a malformed result, a
decode that outlives the per-input time bound (the worker is killed and
restarted), or an allocation beyond the worker's address-space limit
(``RLIMIT_AS`` = address space after imports + ``mem_mb``), which is how a
header that claims a huge size shows up. Cases are reproducible from
``(seed, format, case index)``.

Long run (documented in docs/reliability.md)::

    python -m neurodata.testing.fuzz --minutes 10
    python -m neurodata.testing.fuzz --format prophesee_raw --cases 2000 --keep /tmp/fuzz-fail
"""
from __future__ import annotations

import argparse
import io
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: mutation kinds, applied in rotation so that short runs cover all of them
MUTATIONS = ("bitflip", "overwrite", "truncate", "huge_field", "huge_number",
             "dup_block", "del_block", "magic_random", "random", "zip_member")

#: keyword arguments a conversion needs that the seeds do not carry
CONVERT_KWARGS = {"suite2p": {"fs": 30.0}, "tiff_movie": {"fs": 30.0}}

#: modules loaders import lazily; the worker imports them before limiting its
#: address space so the limit bounds decoding, not importing
_PRELOAD = ("h5py", "mne", "mne.io", "pandas", "openpyxl", "networkx", "tifffile", "scipy.io",
            "scipy.linalg", "scipy.signal", "scipy.sparse", "numba", "pyarrow", "pyarrow.csv",
            "pyarrow.compute", "lz4.frame", "zstandard", "pynwb", "xarray")

_HUGE_INTS = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF,
              0x0FFFFFFF)


@dataclass(frozen=True)
class Seed:
    """A starting input: a file (with companion files it needs) or a folder."""

    target: str
    path: Path
    companions: tuple[Path, ...] = ()
    origin: str = "real"


@dataclass
class Outcome:
    """What one case did."""

    case: int
    mutation: str
    seed: str
    status: str  # ok | error | fail | hang | crash
    detail: str = ""
    seconds: float = 0.0
    input: str = ""


@dataclass
class TargetReport:
    """Counts and failures of one target's run."""

    target: str
    op: str
    n_seeds: int = 0
    tried: int = 0
    decoded: int = 0
    rejected: int = 0
    failures: list = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"target": self.target, "op": self.op, "seeds": self.n_seeds, "tried": self.tried,
                "decoded": self.decoded, "rejected": self.rejected,
                "failures": [f.__dict__ for f in self.failures],
                "seconds": round(self.seconds, 1)}


# --------------------------------------------------------------------------- targets & seeds

def targets() -> list[tuple[str, str]]:
    """``(name, op)`` for every registered format (op ``read`` or ``convert``) plus AER streams."""
    from neurodata import loaders

    out = [(f.name, "read" if f.modality == "events" else "convert") for f in loaders.FORMATS]
    out.append(("aer", "aer"))
    return out


def default_data_dir() -> Path:
    """``$NEURODATA_SHARED_DATA`` or ``../shared/data`` next to the project."""
    env = os.environ.get("NEURODATA_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def discover_seeds(data_dir: str | os.PathLike,
                   work_dir: str | os.PathLike) -> dict[str, list[Seed]]:
    """Seeds per target: real files detected in ``data_dir`` plus seeds derived from them.

    Files no detector recognises but that share a stem with a recognised file
    (BrainVision ``.eeg``/``.vmrk`` next to ``.vhdr``) travel as companions.
    """
    from neurodata import loaders
    from neurodata.errors import NeurodataError

    data_dir = Path(data_dir)
    seeds: dict[str, list[Seed]] = {}
    if not data_dir.is_dir():
        return seeds
    files = sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() != ".md")
    detected, undetected = {}, []
    for p in files:
        try:
            detected[p] = loaders.detect(p).name
        except NeurodataError:
            undetected.append(p)
    for p, name in detected.items():
        comp = tuple(q for q in undetected if q.parent == p.parent and q.stem == p.stem)
        seeds.setdefault(name, []).append(Seed(name, p, comp))
    for d in sorted({p.parent for p in files}):
        try:
            spec = loaders.detect(d)
        except NeurodataError:
            continue
        seeds.setdefault(spec.name, []).append(Seed(spec.name, d))
    for name, maker in _DERIVED.items():
        try:
            made = maker(data_dir, Path(work_dir))
        except Exception:  # a derived seed is a bonus; its absence only narrows coverage
            made = None
        if made is not None:
            name = name.split("/")[0]  # "format/variant" -> format
            seeds.setdefault(name, []).append(Seed(name, made, (), "derived"))
    return seeds


def _nmnist_events(data_dir: Path):
    from neurodata.loaders import atis_bin

    p = data_dir / "events" / "sample_nmnist.bin"
    if not p.exists():
        return None
    return atis_bin.read(p)


def _derive_numpy(data_dir, work):
    rec = _nmnist_events(data_dir)
    if rec is None:
        return None
    out = work / "derived_nmnist.npy"
    np.save(out, rec.events)
    return out


def _derive_npz(data_dir, work):
    rec = _nmnist_events(data_dir)
    if rec is None:
        return None
    out = work / "derived_nmnist.npz"
    np.savez_compressed(out, x=rec.x, y=rec.y, t=rec.t, p=rec.p, sensor_size=np.array([34, 34, 2]),
                        label=np.array([3]))
    return out


def _derive_shd(data_dir, work):
    import h5py

    rec = _nmnist_events(data_dir)
    if rec is None:
        return None
    out = work / "derived_shd_train.h5"
    n = 6
    bounds = np.linspace(0, len(rec), n + 1).astype(int)
    with h5py.File(out, "w") as f:
        g = f.create_group("spikes")
        dt = g.create_dataset("times", (n,), dtype=h5py.vlen_dtype(np.float32))
        du = g.create_dataset("units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            sl = slice(bounds[i], bounds[i + 1])
            dt[i] = (rec.t[sl] - rec.t[sl][0]).astype(np.float32) / 1e6
            du[i] = (rec.y[sl].astype(np.uint16) * 34 + rec.x[sl]) % 700
        f.create_dataset("labels", data=np.arange(n, dtype=np.uint16))
    return out


def _derive_evt3(data_dir, work):
    rec = _nmnist_events(data_dir)
    if rec is None:
        return None
    t = rec.t.astype(np.int64)
    words = np.empty((len(t), 4), "<u2")
    words[:, 0] = 0x8000 | ((t >> 12) & 0xFFF)
    words[:, 1] = 0x6000 | (t & 0xFFF)
    words[:, 2] = 0x0000 | rec.y
    words[:, 3] = 0x2000 | (rec.p.astype(np.uint16) << 11) | rec.x
    header = b"% camera_integrator_name Prophesee\n% format EVT3;height=720;width=1280\n" \
             b"% geometry 1280x720\n% evt 3.0\n% end\n"
    out = work / "derived_evt3.raw"
    out.write_bytes(header + words.tobytes())
    return out


def _derive_aedat31(data_dir, work):
    rec = _nmnist_events(data_dir)
    if rec is None:
        return None
    head = b"".join(ln + b"\r\n" for ln in (b"#!AER-DAT3.1", b"#Format: RAW", b"#Source 1: DVS128",
                                           b"#Start-Time: 2026-11-21 10:00:00 (TZ+0000)",
                                           b"#!END-HEADER"))
    out = [head]
    for part in np.array_split(np.arange(len(rec)), 3):
        data = (1 | (rec.p[part].astype(np.uint32) << 1) | (rec.y[part].astype(np.uint32) << 2)
                | (rec.x[part].astype(np.uint32) << 17))
        body = np.empty((len(part), 2), "<u4")
        body[:, 0] = data
        body[:, 1] = rec.t[part].astype(np.uint32)
        n = len(part)
        out.append(struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, n, n, n) + body.tobytes())
    p = work / "derived_dvs128.aedat"
    p.write_bytes(b"".join(out))
    return p


def _derive_aer(data_dir, work):
    from neurodata.hardware.aer import DVS32, write_aer

    rec = _nmnist_events(data_dir)
    if rec is None:
        return None
    p = work / "derived_nmnist.aer"
    write_aer(p, rec.x, rec.y, rec.t, rec.p, DVS32)
    return p


def _derive_graphml(data_dir, work):
    import csv

    import networkx as nx

    src = data_dir / "connectome" / "herm_full_edgelist.csv"
    if not src.exists():
        return None
    g = nx.DiGraph()
    with open(src, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i >= 300:
                break
            g.add_edge(row["Source"].strip(), row["Target"].strip(), weight=int(row["Weight"]),
                       type=row["Type"].strip())
    p = work / "derived_herm.graphml"
    nx.write_graphml(g, p)
    return p


def _derive_tiff(data_dir, work):
    import tifffile

    src = data_dir / "calcium" / "suite2p" / "plane0" / "F.npy"
    if not src.exists():
        return None
    f = np.load(src)[:, :16 * 24].T.reshape(16, 24, 20)  # real fluorescence values as a movie
    p = work / "derived_movie.tif"
    tifffile.imwrite(p, np.clip(f, 0, 65535).astype(np.uint16), imagej=True,
                     metadata={"axes": "TYX", "finterval": 1 / 30})
    return p


def _real_traces(data_dir: Path, n_roi: int, n_frames: int) -> np.ndarray | None:
    """``(roi, frame)`` float32 fluorescence from the real suite2p ``F.npy``, or None."""
    src = data_dir / "calcium" / "suite2p" / "plane0" / "F.npy"
    if not src.exists():
        return None
    return np.ascontiguousarray(np.load(src)[:n_roi, :n_frames], np.float32)


def _nwb_file(description: str):
    from datetime import datetime, timezone

    from pynwb import NWBFile

    return NWBFile(session_description=description, identifier=f"neurodata-fuzz-{description}",
                   session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))


def _write_nwb(nwb, path: Path) -> Path:
    from pynwb import NWBHDF5IO

    # without the cached schema the file is a few dozen KiB, so mutations land in the data
    # and object headers the loader reads rather than in schema text
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb, cache_spec=False)
    return path


def _derive_nwb_ophys(data_dir, work):
    """NWB 2.x: TwoPhotonSeries, PlaneSegmentation (pixel masks), Fluorescence of real traces."""
    from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel, TwoPhotonSeries

    F = _real_traces(data_dir, 4, 48)
    if F is None:
        return None
    nwb = _nwb_file("ophys")
    dev = nwb.create_device(name="scope")
    oc = OpticalChannel(name="green", description="green", emission_lambda=520.0)
    plane = nwb.create_imaging_plane(name="plane0", optical_channel=oc, imaging_rate=30.0,
                                     description="plane", device=dev, excitation_lambda=920.0,
                                     indicator="GCaMP6s", location="V1")
    movie = np.clip(F[:, :, None] * np.linspace(0.5, 1.5, 10), 0, 65535)  # (roi, frame, y)
    movie = movie.transpose(1, 0, 2).repeat(3, axis=1).astype(np.uint16)  # (frame, x=12, y=10)
    nwb.add_acquisition(TwoPhotonSeries(name="TwoPhotonSeries", data=movie, imaging_plane=plane,
                                        rate=30.0, unit="n.a."))
    mod = nwb.create_processing_module(name="ophys", description="ophys")
    seg = ImageSegmentation()
    mod.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="rois",
                                       imaging_plane=plane)
    for i in range(F.shape[0]):
        ps.add_roi(pixel_mask=[(3 * i + dx, 2 + dy, 0.25 * (1 + dx + dy))
                               for dx in range(3) for dy in range(2)])
    region = ps.create_roi_table_region(region=list(range(F.shape[0])), description="all")
    fl = Fluorescence(name="Fluorescence")
    mod.add(fl)
    fl.create_roi_response_series(name="RoiResponseSeries", data=F.T, rois=region,
                                  unit="lumens", rate=30.0)
    return _write_nwb(nwb, work / "derived_ophys.nwb")


def _derive_nwb_ecephys(data_dir, work):
    """NWB 2.x: ElectricalSeries (int16 + conversion) of real EDF samples, electrodes, trials."""
    import mne
    from pynwb.ecephys import ElectricalSeries

    src = data_dir / "eeg" / "test.edf"
    if not src.exists():
        return None
    raw = mne.io.read_raw_edf(src, preload=False, verbose="error")
    volts = raw.get_data(picks=list(range(4)), start=0, stop=256)  # (channel, time)
    scale = float(np.abs(volts).max() or 1.0) / 32000.0
    counts = np.round(volts / scale).astype(np.int16).T  # NWB: (time, channel)
    nwb = _nwb_file("ecephys")
    dev = nwb.create_device(name="amp")
    group = nwb.create_electrode_group("G", description="scalp", location="scalp", device=dev)
    for k, name in enumerate(raw.ch_names[:4]):
        nwb.add_electrode(group=group, location=name, x=float(k), y=0.0, z=0.0)
    region = nwb.create_electrode_table_region(list(range(4)), "all electrodes")
    nwb.add_acquisition(ElectricalSeries(name="eeg", data=counts, electrodes=region,
                                         rate=float(raw.info["sfreq"]), conversion=scale))
    nwb.add_trial(start_time=0.1, stop_time=0.2)
    return _write_nwb(nwb, work / "derived_ecephys.nwb")


def _derive_bnci(data_dir, work):
    """BNCI MAT (BCI Competition IV layout): two runs of real EDF signal in microvolts."""
    import mne
    from scipy.io import savemat

    src = data_dir / "eeg" / "test.edf"
    if not src.exists():
        return None
    raw = mne.io.read_raw_edf(src, preload=False, verbose="error")
    x = raw.get_data(picks=list(range(6)), start=0, stop=1024).T * 1e6  # (time, channel) uV
    runs = np.empty((1, 2), dtype=object)
    for k in range(2):
        runs[0, k] = {"X": x, "trial": np.array([[1], [300], [700]], np.int32),
                      "y": np.array([[1], [2], [1]], np.uint8), "fs": np.array([[512]]),
                      "classes": np.array(["left hand", "right hand"], dtype=object),
                      "artifacts": np.array([[0], [1], [0]], np.uint8), "gender": "f",
                      "age": 30.0}
    out = work / "derived_bnci.mat"
    savemat(out, {"data": runs}, do_compression=True)
    return out


def _derive_caiman(data_dir, work):
    """CaImAn CNMF results laid out as ``cnm.save()`` writes them, with real traces as ``C``."""
    import h5py
    import scipy.sparse

    C = _real_traces(data_dir, 3, 64)
    if C is None:
        return None
    d1, d2 = 12, 10
    imgs = np.zeros((len(C), d1, d2), np.float32)
    for k in range(len(C)):
        imgs[k, k:k + 3, 2 * k:2 * k + 4] = 0.5 + 0.1 * np.arange(12).reshape(3, 4)
    # footprints: column k is image k flattened in Fortran order
    A = scipy.sparse.csc_matrix(np.stack([im.ravel(order="F") for im in imgs], axis=1))
    p = work / "derived_caiman_results.hdf5"
    with h5py.File(p, "w") as f:
        est = f.create_group("estimates")
        est["C"] = C
        est["YrA"] = C[:, ::-1] * 0.05
        est["S"] = np.maximum(np.diff(C, axis=1, prepend=C[:, :1]), 0)
        est["F_dff"] = "NoneType"
        est["idx_components"] = np.array([0, 2])
        est["dims"] = np.array([d1, d2])
        for name in ("data", "indptr", "indices"):
            est[f"A/{name}"] = getattr(A, name)
        est["A/shape"] = A.shape
        f["params/data/fr"] = 30.0
        f["params/data/decay_time"] = 0.4
        f["dview"] = "NoneType"
    return p


def _derive_bids_eeg(data_dir, work):
    """A BIDS EEG folder (mne-bids) of 4 channels and 2 s of the real EDF recording."""
    import warnings

    import mne
    import mne_bids

    src = data_dir / "eeg" / "test.edf"
    if not src.exists():
        return None
    raw = mne.io.read_raw_edf(src, preload=True, verbose="error")
    raw.pick(raw.ch_names[:4]).crop(0, 2.0)
    raw.set_channel_types({c: "eeg" for c in raw.ch_names})
    raw.info["line_freq"] = 50
    root = work / "derived_bids"
    bp = mne_bids.BIDSPath(subject="01", task="rest", datatype="eeg", root=root)
    with warnings.catch_warnings():  # mne-bids notes the conversion to EDF
        warnings.simplefilter("ignore")
        mne_bids.write_raw_bids(raw, bp, format="EDF", allow_preload=True, verbose=False)
    return root


_DERIVED = {"numpy_events": _derive_numpy, "numpy_events/npz": _derive_npz,
            "hdf5_spikes": _derive_shd,
            "prophesee_raw": _derive_evt3, "aedat": _derive_aedat31, "aer": _derive_aer,
            "graphml": _derive_graphml, "tiff_movie": _derive_tiff,
            "nwb_ophys": _derive_nwb_ophys, "nwb_ecephys": _derive_nwb_ecephys,
            "caiman_hdf5": _derive_caiman, "bids_eeg": _derive_bids_eeg,
            "eeg_bnci": _derive_bnci}


# --------------------------------------------------------------------------- mutations

def _header_end(data: bytes) -> int:
    """End of leading text header lines (``%``/``#`` prefixed), else 0."""
    pos, n = 0, min(len(data), 1 << 20)
    while pos < n and data[pos:pos + 1] in (b"%", b"#"):
        end = data.find(b"\n", pos, n)
        if end < 0:
            return n
        pos = end + 1
    return pos


def _field_offset(data: bytes, rng, width: int) -> int:
    """An offset near the start or just after a text header, where size fields live."""
    hdr = _header_end(data)
    base = hdr if rng.random() < 0.5 else 0
    hi = max(1, min(len(data) - width, base + 256) - base)
    return int(base + rng.integers(0, hi))


def mutate(data: bytes, rng: np.random.Generator, kind: str) -> bytes:
    """Return ``data`` changed by one mutation of ``kind`` (see :data:`MUTATIONS`)."""
    n = len(data)
    b = bytearray(data)
    if kind == "zip_member":
        return _mutate_zip(data, rng)
    if n == 0 and kind not in ("random", "magic_random"):
        return bytes(rng.integers(0, 256, 64, dtype=np.uint8))
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(0, n)) if rng.random() < 0.5 else _field_offset(data, rng, 1)
            b[min(pos, n - 1)] ^= 1 << int(rng.integers(0, 8))
    elif kind == "overwrite":
        length = int(rng.integers(1, 17))
        pos = int(rng.integers(0, n)) if rng.random() < 0.5 else _field_offset(data, rng, 1)
        fill = rng.choice(["zero", "ff", "random"])
        chunk = (bytes(length) if fill == "zero" else b"\xff" * length if fill == "ff"
                 else bytes(rng.integers(0, 256, length, dtype=np.uint8)))
        b[pos:pos + length] = chunk[:max(0, n - pos)]
    elif kind == "truncate":
        hdr = _header_end(data)
        cut = int(rng.integers(0, n)) if rng.random() < 0.5 else \
            int(min(n - 1, hdr + rng.integers(0, 64)))
        del b[cut:]
    elif kind == "huge_field":
        value = int(rng.choice(_HUGE_INTS))
        width = 8 if value > 0xFFFFFFFF or rng.random() < 0.3 else 4
        order = "<" if rng.random() < 0.7 else ">"
        pos = _field_offset(data, rng, width)
        if pos % 2 and rng.random() < 0.7:
            pos -= 1  # fields are mostly aligned
        b[pos:pos + width] = struct.pack(order + ("Q" if width == 8 else "I"),
                                         value & ((1 << (8 * width)) - 1))[:max(0, n - pos)]
    elif kind == "huge_number":
        head = bytes(b[:4096])
        digits = np.frombuffer(head, np.uint8)
        isdig = (digits >= 0x30) & (digits <= 0x39)
        starts = np.nonzero(isdig & ~np.concatenate([[False], isdig[:-1]]))[0]
        if len(starts) == 0:
            return mutate(data, rng, "huge_field")
        s = int(rng.choice(starts))
        e = s
        while e < len(head) and isdig[e]:
            e += 1
        same = rng.random() < 0.6
        b[s:e] = b"9" * (e - s) if same else b"9" * int(rng.integers(e - s + 1, 20))
    elif kind in ("dup_block", "del_block"):
        a = int(rng.integers(0, n))
        length = int(rng.integers(1, max(2, min(n - a, 4096)) + 1))
        block = bytes(b[a:a + length])
        if kind == "dup_block":
            at = a + length if rng.random() < 0.5 else int(rng.integers(0, n + 1))
            b[at:at] = block
        else:
            del b[a:a + length]
    elif kind == "magic_random":
        keep = _header_end(data) or int(rng.integers(4, 65))
        keep = min(keep, n)
        b = bytearray(data[:keep]) + bytearray(rng.integers(0, 256, int(rng.integers(0, 8192)),
                                                            dtype=np.uint8).tobytes())
    elif kind == "random":
        b = bytearray(rng.integers(0, 256, int(rng.integers(1, 8192)), dtype=np.uint8).tobytes())
    else:
        raise ValueError(f"unknown mutation {kind!r}")
    return bytes(b)


def _mutate_zip(data: bytes, rng) -> bytes:
    """Mutate one member of a zip container (xlsx, npz) and re-pack it validly."""
    if not data.startswith(b"PK\x03\x04"):
        return mutate(data, rng, "overwrite")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = [(i, z.read(i)) for i in z.infolist()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error):
        return mutate(data, rng, "overwrite")
    if not members:
        return data
    # prefer the large members (sheets, arrays) where the parsers work hardest
    sizes = np.array([len(m[1]) for m in members], float) + 1
    k = int(rng.choice(len(members), p=sizes / sizes.sum()))
    kind = str(rng.choice([m for m in MUTATIONS if m not in ("zip_member", "random")]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, (info, content) in enumerate(members):
            z.writestr(info.filename, mutate(content, rng, kind) if i == k else content)
    return buf.getvalue()


def case_rng(seed: int, target: str, case: int) -> np.random.Generator:
    """The generator of one case, reproducible from ``(seed, target, case)``."""
    return np.random.default_rng([int(seed), zlib.crc32(target.encode()), int(case)])


def prepare_case(seeds: list[Seed], target: str, case: int, seed: int, case_dir: Path):
    """Write case ``case`` of ``target`` into ``case_dir``; return (input path, mutation, seed)."""
    rng = case_rng(seed, target, case)
    s = seeds[case % len(seeds)]
    kind = MUTATIONS[(case // len(seeds)) % len(MUTATIONS)]
    case_dir.mkdir(parents=True, exist_ok=True)
    if s.path.is_dir():
        inp = case_dir / s.path.name
        shutil.copytree(s.path, inp)
        members = sorted(p for p in inp.rglob("*") if p.is_file())
        victim = members[int(rng.integers(0, len(members)))] if members else None
    else:
        inp = case_dir / s.path.name
        shutil.copyfile(s.path, inp)
        for c in s.companions:
            shutil.copyfile(c, case_dir / c.name)
        victim = inp
        if s.companions and rng.random() < 0.3:
            victim = case_dir / s.companions[int(rng.integers(0, len(s.companions)))].name
    if victim is not None:
        victim.write_bytes(mutate(victim.read_bytes(), rng, kind))
    label = f"{s.path.name}" + (f"[{victim.relative_to(case_dir)}]" if victim is not None
                                and victim != inp else "")
    return inp, kind, label


# --------------------------------------------------------------------------- worker

class Worker:
    """A decoding subprocess with an address-space limit, restarted after a hang or crash."""

    def __init__(self, mem_mb: int = 1024, log: str | os.PathLike | None = None,
                 max_jobs: int = 500):
        self.mem_mb = mem_mb
        self.log = log
        self.max_jobs = max_jobs
        self.jobs = 0
        self.proc = None
        self._buf = b""

    def start(self) -> None:
        env = dict(os.environ, MALLOC_ARENA_MAX="2", PYTHONWARNINGS="ignore",
                   NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
        self.jobs = 0
        err = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "neurodata.testing.fuzz", "--worker",
                 "--mem-mb", str(self.mem_mb)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                start_new_session=True)
        finally:
            if self.log:
                err.close()
        self._buf = b""
        hello = self._readline(120.0)
        if hello is None or json.loads(hello).get("ready") is not True:
            self.close()
            raise RuntimeError(f"fuzz worker did not start (log: {self.log})")

    def _readline(self, timeout: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def run(self, job: dict, timeout: float) -> dict:
        """Run one job; ``status`` is ``hang`` or ``crash`` when the worker did not answer."""
        if self.proc is not None and self.jobs >= self.max_jobs:
            self.close()  # a long-lived worker's heap grows into its address-space bound
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.jobs += 1
        t0 = time.monotonic()
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._readline(timeout)
        if line is None:
            alive = self.proc.poll() is None
            code = self.proc.returncode
            self.close()
            if alive:
                return {"status": "hang", "detail": f"no result within {timeout:.0f} s",
                        "seconds": time.monotonic() - t0}
            how = (f"killed by signal {-code}" if code is not None and code < 0
                   else f"exit code {code}")
            return {"status": "crash", "detail": f"worker died ({how})",
                    "seconds": time.monotonic() - t0}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self.proc = None


def _vm_size_bytes() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _limit_address_space(mem_mb: int) -> None:
    try:
        import resource
    except ImportError:  # not POSIX: no bound, hangs are still caught
        return
    vm = _vm_size_bytes()
    if vm is None:
        return
    limit = vm + (mem_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _worker_main(mem_mb: int) -> None:
    import importlib
    import warnings

    warnings.simplefilter("ignore")
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints from libraries go to the log, not the protocol
    import neurodata  # noqa: F401
    from neurodata import loaders

    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    for spec in loaders.FORMATS:
        try:
            spec.load()
        except Exception:
            pass
    _limit_address_space(mem_mb)
    proto.write(json.dumps({"ready": True}) + "\n")
    proto.flush()
    for line in sys.stdin:
        job = json.loads(line)
        t0 = time.monotonic()
        try:
            status, detail = _run_job(job)
        except MemoryError as e:
            status, detail = "fail", f"MemoryError (allocation beyond {mem_mb} MiB bound): {e}"
        except BaseException as e:  # noqa: BLE001 - reporting every escape is the point
            status, detail = "fail", f"{type(e).__name__}: {e}"[:500]
        proto.write(json.dumps({"status": status, "detail": detail[:500],
                                "seconds": time.monotonic() - t0}) + "\n")
        proto.flush()


def _names_case(exc, case_dir: str) -> bool:
    return case_dir in str(exc)


def _run_job(job: dict) -> tuple[str, str]:
    """``(status, detail)`` of one decode; exceptions other than NeurodataError escape."""
    from neurodata import loaders
    from neurodata.errors import NeurodataError

    path = Path(job["path"])
    case_dir = job["case_dir"]
    op = job["op"]
    try:
        if op == "read":
            try:
                loaders.detect(path)  # sniffers must not crash or hang either
            except NeurodataError:
                pass
            rec = loaders.read_events(path, job["format"])
            problem = check_recording(rec)
            return ("fail", problem) if problem else ("ok", f"{len(rec)} events")
        if op == "aer":
            from neurodata.hardware.aer import read_aer

            cols = read_aer(path)
            problem = check_columns(cols)
            return ("fail", problem) if problem else ("ok", f"{len(cols['t'])} events")
        if op == "convert":
            return _run_convert(job, path)
        raise ValueError(f"unknown op {op!r}")
    except NeurodataError as e:
        if not _names_case(e, case_dir):
            return "fail", f"{type(e).__name__} does not name the file: {e}"
        if op == "convert":
            left = _leftovers(Path(job["out"]))
            if left:
                return "fail", f"failed conversion left {left} behind ({type(e).__name__}: {e})"
        return "error", f"{type(e).__name__}: {e}"


def _run_convert(job: dict, path: Path) -> tuple[str, str]:
    import neurodata

    out = Path(job["out"])
    neurodata.convert(path, out, job["format"], **job.get("kwargs", {}))
    if not (out / "zarr.json").exists():
        return "fail", "convert returned but wrote no store"
    ds = neurodata.open(str(out))
    n = len(ds)
    shutil.rmtree(out, ignore_errors=True)
    return "ok", f"store with {n} items"


def _leftovers(out: Path) -> list[str]:
    left = [out.name] if out.exists() else []
    left += [p.name for p in out.parent.glob(f".{out.name}.*")]
    return left


def check_columns(cols: dict) -> str | None:
    """Why event columns are malformed, or None."""
    from neurodata.events import COLUMN_DTYPES, COLUMNS

    n = None
    for c in COLUMNS:
        a = cols.get(c)
        if not isinstance(a, np.ndarray) or a.ndim != 1:
            return f"column {c} is {type(a).__name__}, not a 1-d array"
        if a.dtype != COLUMN_DTYPES[c]:
            return f"column {c} has dtype {a.dtype}, expected {COLUMN_DTYPES[c]}"
        if n is None:
            n = len(a)
        elif len(a) != n:
            return f"column {c} has {len(a)} values, column x has {n}"
    return None


def check_recording(rec) -> str | None:
    """Why a loader's result is not a consistent EventRecording, or None."""
    from neurodata.events import EventRecording

    if not isinstance(rec, EventRecording):
        return f"read returned {type(rec).__name__}, not EventRecording"
    problem = check_columns({c: getattr(rec, c) for c in ("x", "y", "t", "p")})
    if problem:
        return problem
    n = len(rec.t)
    if (rec.starts is None) != (rec.counts is None):
        return "starts and counts must both be set or both be None"
    if rec.starts is not None:
        s, c = np.asarray(rec.starts), np.asarray(rec.counts)
        if s.shape != c.shape or s.ndim != 1:
            return f"starts {s.shape} and counts {c.shape} differ"
        if len(c) and (c.min() < 0 or s.min() < 0 or int((s + c).max()) > n):
            return "a sample's start/count lies outside the events"
        if rec.labels is not None and len(rec.labels) != len(s):
            return f"{len(rec.labels)} labels for {len(s)} samples"
    if rec.sensor_size is not None and len(tuple(rec.sensor_size)) != 3:
        return f"sensor_size {rec.sensor_size!r} is not (width, height, polarities)"
    return None


# --------------------------------------------------------------------------- driver

def fuzz_target(target: str, op: str, seeds: list[Seed], worker: Worker, work_dir: Path, *,
                seed: int = 0, cases: int | None = 100, seconds: float | None = None,
                first_case: int = 0, timeout: float = 30.0, keep: Path | None = None,
                min_cases: int = 1) -> TargetReport:
    """Run cases ``first_case..`` of one target until ``cases`` or ``seconds`` is reached
    (but at least ``min_cases``)."""
    rep = TargetReport(target, op, n_seeds=len(seeds))
    t_start = time.monotonic()
    i = first_case
    while seeds:
        if cases is not None and rep.tried >= cases:
            break
        if (seconds is not None and rep.tried >= min_cases
                and time.monotonic() - t_start >= seconds):
            break
        case_dir = Path(tempfile.mkdtemp(prefix=f"{target}-{i}-", dir=work_dir))
        try:
            inp, kind, label = prepare_case(seeds, target, i, seed, case_dir)
            job = {"op": op, "format": target, "path": str(inp), "case_dir": str(case_dir),
                   "out": str(case_dir / "out.zarr"), "kwargs": CONVERT_KWARGS.get(target, {})}
            res = worker.run(job, timeout)
            out = Outcome(i, kind, label, res["status"], res.get("detail", ""),
                          res.get("seconds", 0.0), str(inp))
            rep.tried += 1
            if out.status == "ok":
                rep.decoded += 1
            elif out.status == "error":
                rep.rejected += 1
            else:
                rep.failures.append(out)
                if keep is not None:
                    dest = Path(keep) / f"{target}-case{i}"
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(case_dir, dest, ignore=shutil.ignore_patterns("*.zarr"))
                    out.input = str(dest / inp.name)
        finally:
            shutil.rmtree(case_dir, ignore_errors=True)
        i += 1
    rep.seconds = time.monotonic() - t_start
    return rep


def run(formats=None, *, data_dir=None, seed: int = 0, cases: int | None = None,
        minutes: float | None = None, timeout: float = 30.0, mem_mb: int = 1024,
        keep=None, verbose: bool = True) -> list[TargetReport]:
    """Fuzz ``formats`` (default: every target with a seed) and return one report each.

    With ``minutes`` the time is split evenly over the targets.
    """
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    reports = []
    with tempfile.TemporaryDirectory(prefix="neurodata-fuzz-") as tmp:
        tmp = Path(tmp)
        seed_dir = tmp / "seeds"
        seed_dir.mkdir()
        all_seeds = discover_seeds(data_dir, seed_dir)
        todo = [(n, op) for n, op in targets() if (formats is None or n in formats)
                and all_seeds.get(n)]
        if not todo:
            raise SystemExit(f"no seeds for {formats or 'any format'} in {data_dir}")
        per = None if minutes is None else minutes * 60 / len(todo)
        worker = Worker(mem_mb, log=tmp / "worker.log")
        try:
            for name, op in todo:
                worker.close()  # a fresh worker (and address-space bound) per format
                rep = fuzz_target(name, op, all_seeds[name], worker, tmp, seed=seed,
                                  cases=cases, seconds=per, timeout=timeout,
                                  keep=Path(keep) if keep else None)
                reports.append(rep)
                if verbose:
                    print(f"{name:>15} {op:>7}: {rep.tried:6d} inputs ({rep.n_seeds} seeds), "
                          f"{rep.decoded} decoded, {rep.rejected} rejected, "
                          f"{len(rep.failures)} failures, {rep.seconds:.0f} s", flush=True)
                    for f in rep.failures[:20]:
                        print(f"    case {f.case} {f.mutation} of {f.seed}: {f.status}: "
                              f"{f.detail}", flush=True)
        finally:
            worker.close()
    return reports


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m neurodata.testing.fuzz",
                                 description="Mutation-fuzz every neurodata decoder.")
    ap.add_argument("--minutes", type=float, help="total time, split over the formats")
    ap.add_argument("--cases", type=int, help="inputs per format (default 200 without --minutes)")
    ap.add_argument("--format", action="append", help="only this format (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", help="folder of real sample files (default ../shared/data)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per input")
    ap.add_argument("--mem-mb", type=int, default=1024, help="address space per decode")
    ap.add_argument("--keep", help="copy failing inputs into this folder")
    ap.add_argument("--json", help="write the reports to this JSON file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker_main(args.mem_mb)
        return 0
    cases = args.cases if args.cases is not None else (None if args.minutes else 200)
    reports = run(args.format, data_dir=args.data, seed=args.seed, cases=cases,
                  minutes=args.minutes, timeout=args.timeout, mem_mb=args.mem_mb, keep=args.keep)
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in reports], indent=1))
    total = sum(r.tried for r in reports)
    bad = sum(len(r.failures) for r in reports)
    print(f"total: {total} inputs, {bad} failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
