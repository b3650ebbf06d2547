"""BNCI Horizon 2020 MAT files: BCI Competition IV 2a (001-2014) and 2b (004-2014).

BNCI Horizon 2020 distributes these Graz motor-imagery data sets as MATLAB v5
files (``A01T.mat`` .. ``A09E.mat``, ``B01T.mat`` .. ``B09E.mat``) holding one
variable ``data``: a cell array of runs (or a single struct), each run a
struct with

- ``X``: samples x channels, microvolts (stored here in volts, float32);
- ``trial``: 1-based first sample of each trial (its t = 0: fixation cross and
  beep; the cue follows at 2 s in 2a and 2b screening, at 3 s in 2b feedback runs);
- ``y``: class code 1..K of each trial, ``classes``: the K class names;
- ``fs``: sampling rate in Hz;
- ``artifacts``: 1 for each trial an expert flagged as artefactual;
- ``gender``, ``age``: the subject's.

Every run becomes one recording group ``<file stem>_run-<k>`` (``k`` counts
the runs of the file from 1, in file order), runs without trials included:
in 001-2014 the first runs of each session are the EOG calibration recordings
(eyes open, eyes closed, eye movements). The events table holds one event per
trial (sample ``trial - 1``, code ``y``, label the class name), so
``ds.windows(tmin=2.0, tmax=6.0 - 1/250, events=[...])`` cuts the imagery
periods. A flagged trial becomes an annotation ``BAD_artifact`` from its first
sample to the first sample of the next trial (or the end of the run): the
file flags whole trials, and the time between two trial starts is the trial
plus its inter-trial break.

The files carry no channel names. They come from the data set descriptions,
chosen by the file name: ``A<ss><T|E>`` is 001-2014 (22 EEG + 3 EOG),
``B<ss><T|E>`` 004-2014 (3 bipolar EEG + 3 EOG); the channel count of every run
must match. Other files get ``EEG1..EEGn`` unless ``ch_names=`` names them.

The whole ``data`` variable is read with ``scipy.io.loadmat`` (it is one MAT
element, zlib-compressed in the BNCI files; scipy never unpickles) and checked
before anything is written; the signal is then copied into the store one
block of whole shards at a time.

MOABB (``BNCI2014_001``/``_004``) reads the same files differently in form,
not in values: it drops the runs without trials, numbers the others from 0
(a 004-2014 run becomes a session of its own), adds a ``STI`` stim channel,
renames classes (``left hand`` -> ``left_hand``) and annotates flagged trials
only on request, over its 2-6 s imagery interval.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError

VERSION = "BNCI Horizon 2020 MAT v5 (data sets 001-2014 / BCI IV 2a, 004-2014 / BCI IV 2b)"
MAGIC_V5 = b"MATLAB 5.0 MAT-file"
#: fields every run struct must have (the others are optional)
RUN_FIELDS = ("X", "trial", "y", "fs")
#: annotation description of an expert-flagged trial (``BAD_`` so MNE rejects it)
ARTIFACT_DESCRIPTION = "BAD_artifact"

_EEG_001_2014 = ("Fz FC3 FC1 FCz FC2 FC4 C5 C3 C1 Cz C2 C4 C6 CP3 CP1 CPz CP2 CP4 "
                 "P1 Pz P2 POz").split()
#: file-name letter -> (data set, channel names, channel types), from the data set descriptions
DATASETS = {
    "A": ("BNCI 001-2014", tuple(_EEG_001_2014) + ("EOG1", "EOG2", "EOG3"),
          ("eeg",) * 22 + ("eog",) * 3),
    "B": ("BNCI 004-2014", ("C3", "Cz", "C4", "EOG1", "EOG2", "EOG3"),
          ("eeg",) * 3 + ("eog",) * 3),
}
_FILE_NAME = re.compile(r"^([AB])(\d{2})([TE])$")

__all__ = ["VERSION", "DATASETS", "sniff", "read_runs", "add_file", "convert", "BnciRun",
           "file_identity", "channel_layout"]


# --------------------------------------------------------------------------- detection
def sniff(path, head: bytes) -> bool:
    """A MAT v5 file whose only variable is ``data``, a cell array or struct (headers only)."""
    if not head.startswith(MAGIC_V5):
        return False
    try:
        from scipy.io import whosmat

        found = whosmat(str(path))
    except Exception:
        return False
    return len(found) == 1 and found[0][0] == "data" and found[0][2] in ("cell", "struct")


# --------------------------------------------------------------------------- reading
@dataclass
class BnciRun:
    """One run of a BNCI file, checked: ``X`` (samples, channels) in microvolts."""

    index: int  # 1-based position in the file
    X: np.ndarray
    sfreq: float
    trial: np.ndarray  # 0-based first sample of each trial (int64)
    y: np.ndarray  # class code per trial (int64)
    classes: list[str]
    artifacts: np.ndarray  # bool per trial
    gender: str | None
    age: float | None


def _text(v) -> str:
    """A MATLAB char array (or a number) as one string."""
    a = np.asarray(v)
    if a.dtype.kind == "U":
        return " ".join(str(s) for s in a.ravel(order="F")).strip()
    if a.dtype == object:
        return " ".join(_text(e) for e in a.ravel(order="F")).strip()
    return " ".join(f"{x:g}" for x in a.ravel().astype(float)) if a.size else ""


def _numbers(v, what: str, path) -> np.ndarray:
    a = np.asarray(v)
    if a.size == 0:
        return np.zeros(0, np.float64)
    if a.dtype.kind not in "biuf":
        raise CorruptFileError(f"{what} is {a.dtype}, expected numbers", path)
    if a.ndim > 2 or (a.ndim == 2 and min(a.shape) > 1):
        raise CorruptFileError(f"{what} has shape {a.shape}, expected a vector", path)
    return a.ravel().astype(np.float64)


def _integers(v, what: str, path) -> np.ndarray:
    a = _numbers(v, what, path)
    if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
        raise CorruptFileError(f"{what} holds values that are not whole numbers", path)
    return a.astype(np.int64)


def _run_records(data, path) -> list:
    """The run structs of ``data`` (cell array of structs, struct array or one struct)."""
    a = np.asarray(data)
    if a.dtype.names:
        return list(a.ravel(order="F"))
    if a.dtype != object:
        raise FormatError(f"variable 'data' is a {a.dtype} array, not a BNCI cell array of runs",
                          path)
    runs = []
    for k, cell in enumerate(a.ravel(order="F"), 1):
        c = np.asarray(cell)
        if not c.dtype.names or c.size != 1:
            raise FormatError(f"cell {k} of 'data' is not a run struct (X, trial, y, fs)", path)
        runs.append(c.ravel()[0])
    return runs


def _parse_run(rec, k: int, path) -> BnciRun:
    names = rec.dtype.names
    missing = [f for f in RUN_FIELDS if f not in names]
    if missing:
        raise FormatError(f"run {k} lacks field(s) {', '.join(missing)} of the BNCI layout "
                          f"(has {', '.join(names)})", path)
    X = np.asarray(rec["X"])
    if X.dtype.kind not in "biuf" or X.ndim != 2:
        raise CorruptFileError(f"run {k}: X is {X.dtype} of shape {X.shape}, expected a "
                               "samples x channels matrix of numbers", path)
    n, n_ch = X.shape
    if n == 0 or n_ch == 0:
        raise CorruptFileError(f"run {k}: X has shape {X.shape}, no samples or channels", path)
    fs = _numbers(rec["fs"], f"run {k}: fs", path)
    if fs.size != 1 or not np.isfinite(fs[0]) or fs[0] <= 0:
        raise CorruptFileError(f"run {k}: fs {fs.tolist()} is not one positive rate", path)
    trial = _integers(rec["trial"], f"run {k}: trial", path)
    y = _integers(rec["y"], f"run {k}: y", path)
    if len(y) != len(trial):
        raise CorruptFileError(f"run {k}: {len(trial)} trial starts but {len(y)} labels y",
                               path)
    bad = np.nonzero((trial < 1) | (trial > n))[0]
    if len(bad):
        i = int(bad[0])
        raise CorruptFileError(f"run {k}: trial {i + 1} starts at sample {trial[i]}, outside "
                               f"the run's samples 1..{n}", path)
    classes = [_text(c) for c in np.asarray(rec["classes"]).ravel(order="F")] \
        if "classes" in names else []
    if classes and len(y) and (y.min() < 1 or y.max() > len(classes)):
        raise CorruptFileError(f"run {k}: class codes y {int(y.min())}..{int(y.max())} outside "
                               f"1..{len(classes)} (the classes listed)", path)
    artifacts = _integers(rec["artifacts"], f"run {k}: artifacts", path) \
        if "artifacts" in names else np.zeros(0, np.int64)
    if len(artifacts) == 0:
        artifacts = np.zeros(len(trial), np.int64)
    if len(artifacts) != len(trial):
        raise CorruptFileError(f"run {k}: {len(artifacts)} artifact flags for {len(trial)} "
                               "trials", path)
    gender = (_text(rec["gender"]) or None) if "gender" in names else None
    age = None
    if "age" in names:
        a = np.asarray(rec["age"])
        if a.dtype.kind in "biuf" and a.size == 1 and np.isfinite(a.ravel()[0]):
            age = float(a.ravel()[0])
    return BnciRun(k, X, float(fs[0]), trial - 1, y, classes, artifacts != 0, gender, age)


def read_runs(path) -> list[BnciRun]:
    """Read and check every run of a BNCI MAT file.

    Raises :class:`~neurodata.errors.FormatError` (not the BNCI layout) or
    :class:`~neurodata.errors.CorruptFileError` (unreadable, or trials outside
    their run, label counts that differ from trial counts, ...) naming the file.
    """
    import scipy.io

    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(128)
    if not head:
        raise FormatError("empty file", p)
    if not head.startswith(MAGIC_V5):
        raise FormatError(f"not a MATLAB v5 MAT-file: starts with {head[:19]!r}", p)
    try:
        mat = scipy.io.loadmat(p, squeeze_me=False, struct_as_record=True,
                               chars_as_strings=True)
    except Exception as e:  # scipy raises ValueError/TypeError/OSError/zlib.error on damage
        raise CorruptFileError(f"cannot read as a MATLAB v5 file ({e.__class__.__name__}: "
                               f"{e})".splitlines()[0], p) from None
    found = sorted(k for k in mat if not k.startswith("__"))
    if found != ["data"]:
        raise FormatError(f"variables {found}: a BNCI file holds one variable 'data'", p)
    records = _run_records(mat["data"], p)
    if not records:
        raise FormatError("variable 'data' holds no runs", p)
    return [_parse_run(rec, k, p) for k, rec in enumerate(records, 1)]


# --------------------------------------------------------------------------- naming
def file_identity(path) -> dict:
    """``{"letter", "subject", "session"}`` from a BNCI file name (``A01T`` -> A, "01", "T").

    Empty for names outside the 001-2014 / 004-2014 pattern.
    """
    m = _FILE_NAME.match(Path(path).stem)
    if not m:
        return {}
    return {"letter": m.group(1), "subject": m.group(2), "session": m.group(3)}


def _types_of(names) -> list[str]:
    return ["eog" if str(n).upper().startswith("EOG") else "eeg" for n in names]


def channel_layout(path, n_channels: int, ch_names=None, run: int | None = None):
    """Channel names, types and data set name for a run of ``n_channels`` channels.

    ``ch_names`` (names starting with "EOG" are typed ``eog``, others ``eeg``)
    wins; else the data set the file name says, whose channel count must match;
    else ``EEG1..EEGn``.
    """
    where = f"run {run}" if run is not None else "the file"
    ident = file_identity(path)
    dataset = DATASETS[ident["letter"]][0] if ident else None
    if ch_names is not None:
        names = [str(n) for n in ch_names]
        if len(names) != n_channels:
            raise FormatError(f"ch_names gives {len(names)} names, {where} has {n_channels} "
                              "channels", path)
        return names, _types_of(names), dataset
    if ident:
        dataset, names, types = DATASETS[ident["letter"]]
        if len(names) != n_channels:
            raise CorruptFileError(f"{where} has {n_channels} channels; {dataset} files "
                                   f"({Path(path).stem}) have {len(names)} (pass ch_names= "
                                   "to name them)", path)
        return list(names), list(types), dataset
    names = [f"EEG{i}" for i in range(1, n_channels + 1)]
    return names, ["eeg"] * n_channels, None


# --------------------------------------------------------------------------- writing
def artifact_annotations(run: BnciRun) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``BAD_artifact`` spans: each flagged trial's start to the next trial's start (or the
    run end), in seconds from the first sample."""
    n = run.X.shape[0]
    order = np.argsort(run.trial, kind="stable")
    start = run.trial[order]
    end = np.append(start[1:], n)
    flagged = run.artifacts[order]
    onset = start[flagged] / run.sfreq
    duration = (end[flagged] - start[flagged]) / run.sfreq
    return onset, duration, [ARTIFACT_DESCRIPTION] * int(flagged.sum())


def _sex(gender: str | None) -> str | None:
    if gender is None:
        return None
    g = gender.strip().lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(g, gender)


def _write_run(writer, run: BnciRun, name: str, names, types, attrs: dict,
               time_chunk: int | None) -> None:
    from neurodata.format.timeseries import default_time_chunk
    from neurodata.loaders.eeg_mne import _block_samples

    n, n_ch = run.X.shape
    tc = int(time_chunk or default_time_chunk(n_ch))
    w = writer.add_recording(name, names, types, run.sfreq, n, attrs=attrs, time_chunk=tc)
    step = _block_samples(n_ch, tc)
    for s in range(0, n, step):
        w.write(run.X[s:s + step].T * 1e-6)  # microvolts -> volts, cast to float32 by write
    order = np.argsort(run.trial, kind="stable")
    code = run.y[order]
    labels = [run.classes[c - 1] for c in code] if run.classes else [str(c) for c in code]
    w.set_events(run.trial[order], code, labels)
    w.set_annotations(*artifact_annotations(run))
    w.close()


def add_file(writer, src, *, name: str | None = None, deidentify: bool = False, salt: str = "",
             time_chunk: int | None = None, extra_attrs: dict | None = None,
             ch_names=None) -> list[str]:
    """Add every run of one BNCI MAT file to an open ``TimeseriesStoreWriter``.

    Parameters
    ----------
    writer : neurodata.format.timeseries.TimeseriesStoreWriter
    src : path-like
        ``A01T.mat`` .. ``B09E.mat`` or any file in the BNCI layout.
    name : str, optional
        Prefix of the group names (default the file stem): ``<name>_run-<k>``.
    deidentify : bool
        Replace subject and file names by pseudonyms (salted sha256) and drop
        the subject's sex and age.
    salt : str
        Pseudonym salt.
    time_chunk : int, optional
        Samples per stored chunk.
    extra_attrs : dict, optional
        Added to every group's attributes.
    ch_names : sequence of str, optional
        Channel names (overrides those the file name implies).

    Returns
    -------
    list of str
        The recording groups written, one per run (runs without trials included).
    """
    src = Path(src)
    return _add_runs(writer, src, read_runs(src), name=name, deidentify=deidentify, salt=salt,
                     time_chunk=time_chunk, extra_attrs=extra_attrs, ch_names=ch_names)


def _add_runs(writer, src: Path, runs: list[BnciRun], *, name, deidentify, salt, time_chunk,
              extra_attrs, ch_names) -> list[str]:
    from neurodata.loaders.eeg_mne import pseudonym

    layouts = [channel_layout(src, r.X.shape[1], ch_names, r.index) for r in runs]
    ident = file_identity(src)
    subject = ident.get("subject")
    stem = pseudonym(src.stem, salt) if deidentify else src.stem
    prefix = name or stem
    base = {"subject": pseudonym(f"{ident['letter']}{subject}", salt) if deidentify and ident
            else subject,
            "session": ident.get("session"), "source_format": "bnci_mat",
            "source": stem + src.suffix, "deidentified": bool(deidentify)}
    out = []
    for run, (names, types, dataset) in zip(runs, layouts):
        a = dict(base, run=run.index, n_trials=int(len(run.trial)),
                 n_artifact_trials=int(run.artifacts.sum()),
                 event_id={c: i for i, c in enumerate(run.classes, 1)})
        if dataset:
            a["dataset"] = dataset
        if not deidentify and (run.gender is not None or run.age is not None):
            a["subject_info"] = {"sex": _sex(run.gender), "age": run.age}
        a.update(extra_attrs or {})
        gname = f"{prefix}_run-{run.index}"
        _write_run(writer, run, gname, names, types, a, time_chunk)
        out.append(gname)
    return out


def convert(src, out, attrs: dict | None = None, *, deidentify: bool = False,
            pseudonym_salt: str = "", time_chunk: int | None = None,
            data_codec: str | None = None, ch_names=None) -> None:
    """Convert a BNCI MAT file into a ``timeseries/1`` store at ``out``.

    Parameters
    ----------
    src : path-like
        ``A01T.mat`` .. ``A09E.mat`` (001-2014), ``B01T.mat`` .. ``B09E.mat``
        (004-2014) or another file in the BNCI layout.
    out : path-like
        Folder to create (``neurodata.convert`` passes a temporary one).
    attrs : dict, optional
        Extra root attributes.
    deidentify, pseudonym_salt
        See :func:`add_file`.
    time_chunk : int, optional
        Samples per stored chunk (default: about 256 KiB per chunk).
    data_codec : {"none", "lz4", "zstd"}, optional
        Compression of the signal (see :data:`neurodata.format.timeseries.DATA_CODECS`).
    ch_names : sequence of str, optional
        Channel names for files the name does not identify.
    """
    from neurodata.format.store import file_sha256, provenance
    from neurodata.format.timeseries import TimeseriesStoreWriter
    from neurodata.loaders.eeg_mne import pseudonym

    src = Path(src)
    runs = read_runs(src)  # checked whole before anything is written
    for r in runs:
        channel_layout(src, r.X.shape[1], ch_names, r.index)
    ident = file_identity(src)
    root = {"dataset": DATASETS[ident["letter"]][0]} if ident else {}
    root.update(attrs or {})
    w = TimeseriesStoreWriter(out, attrs=root, data_codec=data_codec)
    _add_runs(w, src, runs, name=None, deidentify=deidentify, salt=pseudonym_salt,
              time_chunk=time_chunk, extra_attrs=None, ch_names=ch_names)
    prov = provenance([src], loader=f"eeg_bnci/{VERSION}", checksums=[file_sha256(src)])
    if deidentify:
        for entry in prov["sources"]:
            entry["name"] = pseudonym(src.stem, pseudonym_salt) + src.suffix
    w.close(prov)
