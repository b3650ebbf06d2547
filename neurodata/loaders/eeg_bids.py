"""BIDS folders of EEG/iEEG recordings, converted whole through mne-bids.

Every recording (``sub-*/[ses-*/]{eeg,ieeg}/*_{eeg,ieeg}.<ext>``) becomes a
group named by its BIDS entities; ``read_raw_bids`` applies ``channels.tsv``
(types, bad channels) and ``events.tsv`` (annotations). For sEEG/ECoG,
contact positions and anatomical labels come straight from
``electrodes.tsv`` (coordinates converted to metres from the units
``coordsystem.json`` states), so they are stored as the dataset gives them.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, NeurodataError

#: electrodes.tsv columns taken as the anatomical label, first found wins
REGION_COLUMNS = ("region", "anatomical_label", "anatomy", "label", "location", "destrieux",
                  "desikan_killiany", "aal")
_UNITS = {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6}
_EXTENSIONS = [".edf", ".bdf", ".vhdr", ".set", ".fif", ".gdf"]


def _read_tsv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def electrodes(bids_path) -> tuple[dict, str | None]:
    """``{name: (xyz in m, region)}`` from the recording's ``electrodes.tsv`` (or {}).

    Returns the mapping and the coordinate system name.
    """
    folder = Path(bids_path.directory)
    stem = f"sub-{bids_path.subject}" + (f"_ses-{bids_path.session}" if bids_path.session else "")
    cands = sorted(folder.glob(f"{stem}*_electrodes.tsv"))
    if not cands:
        return {}, None
    tsv = cands[0]
    coord = sorted(folder.glob(tsv.name.replace("_electrodes.tsv", "_coordsystem.json")))
    scale, system = 1.0, None
    if coord:
        meta = json.loads(coord[0].read_text())
        unit = meta.get("iEEGCoordinateUnits") or meta.get("EEGCoordinateUnits") or "m"
        scale = _UNITS.get(str(unit).lower(), 1.0)
        system = meta.get("iEEGCoordinateSystem") or meta.get("EEGCoordinateSystem")
    rows = _read_tsv(tsv)
    if not rows:
        return {}, system
    region_col = next((c for c in REGION_COLUMNS if c in rows[0]), None)
    out = {}
    for r in rows:
        xyz = []
        for k in ("x", "y", "z"):
            try:
                xyz.append(float(r.get(k, "n/a")) * scale)
            except ValueError:
                xyz.append(np.nan)
        out[r["name"]] = (xyz, r.get(region_col, "") if region_col else "")
    return out, system


def recordings(root, datatype=None, subjects=None, tasks=None) -> list:
    """The BIDSPaths of every EEG/iEEG recording below ``root``."""
    from mne_bids import find_matching_paths

    datatypes = [datatype] if isinstance(datatype, str) else (datatype or ["eeg", "ieeg"])
    found = find_matching_paths(root, subjects=subjects, tasks=tasks, datatypes=datatypes,
                                suffixes=datatypes, extensions=_EXTENSIONS)
    # BrainVision/EEGLAB companions share the stem: keep one path per recording
    seen, out = set(), []
    for bp in sorted(found, key=lambda b: str(b.fpath)):
        key = bp.copy().update(extension=None).basename
        if key not in seen:
            seen.add(key)
            out.append(bp)
    return out


def _read_recording(bp, fpath: Path, read_raw_bids):
    """``(raw, electrodes, coordinate system)`` of one recording; damaged files name themselves."""
    from neurodata.loaders.eeg_mne import edf_header, source_kind

    if source_kind(fpath) in ("edf", "bdf"):
        edf_header(fpath)  # sizes checked against the file before MNE allocates from them
    try:
        raw = read_raw_bids(bp, verbose="error")
        elec, system = electrodes(bp)
    except (NeurodataError, MemoryError):
        raise
    except Exception as e:  # mne-bids/MNE raise many types on damaged sidecars, TSVs and data
        msg = f"cannot read BIDS recording {fpath.name} or its sidecars ({type(e).__name__}: {e})"
        raise CorruptFileError(msg.splitlines()[0], fpath) from None
    return raw, elec, system


def convert_bids(src, out, attrs: dict | None = None, *, deidentify: bool = False,
                 pseudonym_salt: str = "", mixed_rate: str = "group", time_chunk=None,
                 datatype=None, subjects=None, tasks=None, data_codec: str | None = None) -> None:
    """Convert a whole BIDS folder (every EEG/iEEG recording) into one ``timeseries/1`` store.

    Parameters
    ----------
    src : path-like
        BIDS root (holds ``dataset_description.json``).
    out : path-like
        Store folder to create.
    datatype : "eeg" or "ieeg", optional
        Restrict to one datatype (default both).
    subjects, tasks : list of str, optional
        Restrict to these BIDS entities.
    deidentify, pseudonym_salt, mixed_rate, time_chunk, data_codec
        As for :func:`neurodata.loaders.eeg_mne.convert`.
    """
    from mne_bids import read_raw_bids

    from neurodata.format.store import provenance
    from neurodata.format.timeseries import TimeseriesStoreWriter
    from neurodata.loaders.eeg_mne import add_file, loader_tag, pseudonym, source_kind

    src = Path(src)
    paths = recordings(src, datatype, subjects, tasks)
    if not paths:
        raise FormatError("BIDS folder holds no EEG/iEEG recording", src)
    desc = {}
    if (src / "dataset_description.json").is_file():
        try:
            desc = json.loads((src / "dataset_description.json").read_text(encoding="utf-8"))
        except ValueError as e:  # not UTF-8 or not JSON
            raise CorruptFileError(f"unreadable dataset_description.json ({type(e).__name__}: "
                                   f"{e})", src / "dataset_description.json") from None
        desc = desc if isinstance(desc, dict) else {}
    root_attrs = {"dataset": desc.get("Name"), "licence": desc.get("License"),
                  "bids_version": desc.get("BIDSVersion")}
    root_attrs = {k: v for k, v in root_attrs.items() if v}
    root_attrs.update(attrs or {})
    w = TimeseriesStoreWriter(out, attrs=root_attrs, data_codec=data_codec)
    files, kinds = [], set()
    for bp in paths:
        fpath = Path(bp.fpath)
        raw, elec, system = _read_recording(bp, fpath, read_raw_bids)
        positions = regions = None
        if elec:
            positions = np.array([elec.get(n, ([np.nan] * 3, ""))[0] for n in raw.ch_names])
            regions = [elec.get(n, ([], ""))[1] or "" for n in raw.ch_names]
            if not any(regions):
                regions = None
        subject = bp.subject
        name = bp.copy().update(extension=None, suffix=None).basename
        if deidentify:
            subject = pseudonym(f"sub-{bp.subject}", pseudonym_salt)
            name = name.replace(f"sub-{bp.subject}", subject)
        extra = {"task": bp.task, "run": bp.run, "datatype": bp.datatype,
                 "bids_path": None if deidentify else str(fpath.relative_to(src))}
        if system:
            extra["coordinate_system"] = system
        kind = source_kind(fpath)
        kinds.add(kind)
        add_file(w, fpath, kind=kind, name=name, deidentify=deidentify,
                 salt=pseudonym_salt, mixed_rate=mixed_rate, subject=subject,
                 session=bp.session, positions=positions, regions=regions,
                 time_chunk=time_chunk, extra_attrs={k: v for k, v in extra.items()
                                                     if v is not None}, raw=raw)
        files.append(fpath)
    listed = sorted({f for p in files for f in p.parent.iterdir() if f.is_file()})
    import mne_bids

    prov = provenance(listed, loader=f"bids/BIDS {root_attrs.get('bids_version', '?')} "
                                     f"(mne-bids {mne_bids.__version__}; "
                                     f"{', '.join(sorted({loader_tag(k) for k in kinds}))})")
    if deidentify:
        for entry in prov["sources"]:
            entry["name"] = pseudonym(entry["name"], pseudonym_salt) + Path(entry["name"]).suffix
    w.close(prov)
