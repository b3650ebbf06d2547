"""Format registry: which loader reads which file, detected from content.

Each loader module defines

- ``VERSION``: the format version/specification it implements (a string);
- ``sniff(path, head) -> bool``: whether the file (``head`` = its first 4 KiB,
  ``b""`` for folders) is in this format, from magic bytes/header first and
  the file extension only where the format has no magic;
- events loaders: ``read(path, **kw) -> neurodata.events.EventRecording``;
- other modalities: ``convert(src, out, **kw)``, writing a complete store
  into the (temporary) folder ``out``.

Modules are imported only when needed, so heavy readers (MNE, pynwb, h5py)
cost nothing until used.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from neurodata.errors import FormatError, UnknownFormatError


@dataclass(frozen=True)
class FormatSpec:
    """A readable source format."""

    name: str
    modality: str
    module: str
    extensions: tuple[str, ...]
    description: str
    folder: bool = False  # the source is a folder (suite2p output, BIDS dataset)

    def load(self):
        """Import and return the loader module."""
        return importlib.import_module(self.module)


# Order matters: formats with strong magic first, extension-only formats last.
FORMATS: list[FormatSpec] = [
    # events
    FormatSpec("aedat4", "events", "neurodata.loaders.aedat4", (".aedat4",),
               "iniVation DV AEDAT 4.0 (FlatBuffers packets, LZ4/Zstd)"),
    FormatSpec("aedat", "events", "neurodata.loaders.aedat", (".aedat", ".dat"),
               "jAER/cAER AEDAT 2.0 and 3.1 (DVS128, DAVIS240/346)"),
    FormatSpec("prophesee_dat", "events", "neurodata.loaders.prophesee_dat", (".dat",),
               "Prophesee/Chronocam .dat (CD events, 8 bytes each)"),
    FormatSpec("prophesee_raw", "events", "neurodata.loaders.prophesee_raw", (".raw",),
               "Prophesee EVT 2.0 / EVT 3.0 .raw"),
    FormatSpec("nwb_ophys", "imaging", "neurodata.loaders.nwb_ophys", (".nwb",),
               "NWB 2.x optical physiology (TwoPhotonSeries, PlaneSegmentation, RoiResponseSeries)"),
    FormatSpec("nwb_ecephys", "timeseries", "neurodata.loaders.nwb_ecephys", (".nwb",),
               "NWB 2.x ElectricalSeries (EEG/ECoG/sEEG/extracellular; claims any NWB file "
               "holding one, ophys or not)"),
    FormatSpec("caiman_hdf5", "imaging", "neurodata.loaders.caiman_hdf5", (".hdf5", ".h5"),
               "CaImAn CNMF results HDF5 (estimates/C, A, S, YrA)"),
    FormatSpec("hdf5_spikes", "events", "neurodata.loaders.hdf5_spikes", (".h5", ".hdf5"),
               "HDF5 spike sets in the SHD/SSC layout (spikes/times, spikes/units, labels)"),
    FormatSpec("eeg_bnci", "timeseries", "neurodata.loaders.eeg_bnci", (".mat",),
               "BNCI Horizon 2020 MAT EEG (BCI Competition IV 2a/2b: 001-2014, 004-2014)"),
    FormatSpec("mat_events", "events", "neurodata.loaders.mat_events", (".mat",),
               "MATLAB .mat event samples (ASL-DVS, ST-MNIST)"),
    FormatSpec("numpy_events", "events", "neurodata.loaders.numpy_events", (".npy", ".npz"),
               "numpy structured arrays with x, y, t, p fields (.npy/.npz)"),
    FormatSpec("atis_bin", "events", "neurodata.loaders.atis_bin", (".bin",),
               "N-MNIST/N-Caltech101 ATIS 40-bit events"),
    # imaging
    FormatSpec("suite2p", "imaging", "neurodata.loaders.suite2p", (), "suite2p output folder "
               "(planeN/F.npy, Fneu.npy, spks.npy, iscell.npy, stat.npy, ops.npy)", folder=True),
    FormatSpec("tiff_movie", "imaging", "neurodata.loaders.tiff_movie", (".tif", ".tiff", ".btf"),
               "multi-page TIFF / BigTIFF / ImageJ hyperstack movies"),
    # time series (EEG, sEEG, iEEG) through MNE
    FormatSpec("eeg_mne", "timeseries", "neurodata.loaders.eeg_mne",
               (".edf", ".bdf", ".vhdr", ".fif", ".fif.gz", ".set", ".gdf"),
               "EEG/sEEG/iEEG via MNE: EDF/EDF+, BDF, BrainVision, FIF, EEGLAB .set, GDF"),
    FormatSpec("bids_eeg", "timeseries", "neurodata.loaders.eeg_mne", (),
               "BIDS folder of EEG/iEEG recordings (mne-bids; sEEG electrodes.tsv)", folder=True),
    # connectomes
    FormatSpec("cook2019_xlsx", "connectome", "neurodata.loaders.connectome_cook", (".xlsx",),
               "C. elegans adjacency-matrix workbooks (Cook et al. 2019 SI5: sheets per sex/type)"),
    FormatSpec("varshney_xlsx", "connectome", "neurodata.loaders.connectome_varshney", (".xlsx",),
               "C. elegans Varshney et al. 2011 NeuronConnect (Neuron 1, Neuron 2, Type, Nbr)"),
    FormatSpec("graphml", "connectome", "neurodata.loaders.connectome_graphml", (".graphml",),
               "GraphML connectomes (networkx)"),
    FormatSpec("edgelist", "connectome", "neurodata.loaders.connectome_edgelist",
               (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".xlsx", ".parquet", ".feather",
                ".arrow"),
               "edge lists: CSV/TSV/xlsx/parquet/feather (FlyWire, neuPrint, White, Witvliet)"),
]


def register(spec: FormatSpec, first: bool = False) -> None:
    """Add a format (used by modality packages and plugins)."""
    global FORMATS
    FORMATS = [f for f in FORMATS if f.name != spec.name]
    if first:
        FORMATS.insert(0, spec)
    else:
        FORMATS.append(spec)


def get(name: str) -> FormatSpec:
    """Look a format up by name."""
    for f in FORMATS:
        if f.name == name:
            return f
    raise UnknownFormatError(f"unknown format {name!r}; known: {', '.join(f.name for f in FORMATS)}")


def _modules_ok(spec: FormatSpec):
    """The loader module, or None when an optional dependency of it is not installed."""
    try:
        return spec.load()
    except ModuleNotFoundError as e:
        if e.name and not e.name.startswith("neurodata"):
            return None  # e.g. mne or pynwb absent: the format is just not detectable here
        raise


def detect(path: str | os.PathLike) -> FormatSpec:
    """Return the format of ``path`` from its content (and extension as a tie-breaker)."""
    p = Path(path)
    if not p.exists():
        raise FormatError("no such file or folder", p)
    if p.is_dir():
        head = b""
        candidates = [f for f in FORMATS if f.folder]
    else:
        if p.stat().st_size == 0:
            raise FormatError("empty file", p)
        with open(p, "rb") as fh:
            head = fh.read(4096)
        candidates = [f for f in FORMATS if not f.folder]
    for spec in candidates:
        mod = _modules_ok(spec)
        if mod is None:
            continue
        try:
            if mod.sniff(p, head):
                return spec
        except Exception:  # a sniffer must never decide by crashing
            continue
    kind = "folder" if p.is_dir() else "file"
    raise UnknownFormatError(f"no loader recognises this {kind}", p)


def read_events(path: str | os.PathLike, format: str | None = None, **kw):
    """Read an event file into an :class:`~neurodata.events.EventRecording`."""
    spec = get(format) if format else detect(path)
    if spec.modality != "events":
        raise FormatError(f"format {spec.name!r} holds {spec.modality}, not events", path)
    rec = spec.load().read(Path(path), **kw)
    if not rec.format:
        rec.format = f"{spec.name}/{spec.load().VERSION}"
    return rec


__all__ = ["FormatSpec", "FORMATS", "register", "get", "detect", "read_events"]
