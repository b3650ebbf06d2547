"""MOABB datasets (BCI motor imagery and more), downloaded through MOABB and converted whole.

MOABB knows where each BCI dataset lives and how to turn its files into MNE
raws with a stim channel; this module copies every subject/session/run raw
into one ``timeseries/1`` store, labelling events with the dataset's
``event_id`` names and recording the trial interval, so
``ds.windows(tmin=..., tmax=..., events=...)`` cuts the trials.
"""
from __future__ import annotations

import os
from pathlib import Path

from neurodata.errors import DownloadError, FormatError

#: registry: neurodata name -> MOABB dataset class (in ``moabb.datasets``)
MOABB_DATASETS = {
    "bnci2014_001": "BNCI2014_001",  # BCI Competition IV 2a: 4-class motor imagery, 22 EEG + 3 EOG
    "bnci2014_004": "BNCI2014_004",  # BCI Competition IV 2b: 2-class motor imagery, 3 bipolar EEG
    "physionet_mi": "PhysionetMI",   # PhysioNet eegmmidb: 109 subjects, 64 channels at 160 Hz
}

__all__ = ["MOABB_DATASETS", "moabb_dataset", "convert_moabb"]


def moabb_dataset(name):
    """A MOABB dataset instance from a registry name, a MOABB class name, or an instance."""
    if not isinstance(name, str):
        return name
    try:
        import moabb.datasets as md
    except ImportError:
        raise FormatError("MOABB datasets need the 'moabb' extra: pip install "
                          "'neurodata[moabb]'") from None
    cls = MOABB_DATASETS.get(name.lower(), name)
    if not hasattr(md, cls):
        known = ", ".join(sorted(MOABB_DATASETS))
        raise FormatError(f"unknown MOABB dataset {name!r} (registry: {known}; or any class "
                          "name in moabb.datasets)")
    return getattr(md, cls)()


def convert_moabb(dataset, out, subjects=None, *, attrs: dict | None = None,
                  overwrite: bool = False, time_chunk: int | None = None,
                  data_codec: str | None = None) -> Path:
    """Download (through MOABB) and convert a MOABB dataset into a store at ``out``.

    Parameters
    ----------
    dataset : str or moabb dataset
        ``"bnci2014_001"``, ``"bnci2014_004"``, ``"physionet_mi"``, any class name in
        ``moabb.datasets``, or a dataset instance.
    out : path-like
        Store folder (written atomically).
    subjects : list of int, optional
        Subjects to convert (default all).
    time_chunk, data_codec
        As for :func:`neurodata.loaders.eeg_mne.convert`.

    Each run becomes a recording ``sub-<s>_ses-<session>_run-<run>`` with
    ``subject``, ``session`` and ``run`` attributes; events carry the
    dataset's event names. Root attributes: ``dataset`` (MOABB code),
    ``event_id``, ``interval`` (trial window in s from the cue), ``paradigm``.
    """
    import moabb

    from neurodata.format.store import atomic_store, provenance
    from neurodata.format.timeseries import TimeseriesStoreWriter
    from neurodata.loaders.eeg_mne import write_raw

    ds = moabb_dataset(dataset)
    subjects = list(ds.subject_list if subjects is None else subjects)
    try:
        data = ds.get_data(subjects)
    except (OSError, ValueError, RuntimeError) as e:  # network, checksum, unzip
        raise DownloadError(f"MOABB could not fetch {ds.code} subjects {subjects}: {e}") from None
    names = {int(v): str(k) for k, v in ds.event_id.items()}
    root = {"dataset": ds.code, "event_id": {str(k): int(v) for k, v in ds.event_id.items()},
            "interval": [float(v) for v in ds.interval], "paradigm": ds.paradigm}
    root.update(attrs or {})
    files = []
    for s in subjects:
        try:
            files.extend(Path(p) for p in ds.data_path(s) if os.path.isfile(p))
        except Exception:  # not every dataset (or a synthetic one) lists its files
            pass
    with atomic_store(out, overwrite=overwrite) as tmp:
        w = TimeseriesStoreWriter(tmp, attrs=root, data_codec=data_codec)
        for subject, sessions in data.items():
            for session, runs in sessions.items():
                for run, raw in runs.items():
                    name = f"sub-{subject}_ses-{session}_run-{run}"
                    a = {"subject": str(subject), "session": str(session), "run": str(run),
                         "source_format": "moabb"}
                    write_raw(w, raw, name, a, time_chunk=time_chunk, event_names=names)
        w.close(provenance(files, loader=f"moabb/{ds.code} (moabb {moabb.__version__})"))
    return Path(out)
