"""NWB 2.x extracellular/EEG/ECoG/sEEG recordings (``ElectricalSeries``) -> ``timeseries/1``.

Each ``ElectricalSeries`` (in ``acquisition`` or a ``processing`` module, e.g.
``LFP``) becomes one recording group, copied in time blocks so memory stays
bounded whatever the file's length. NWB stores ``(time, channel)`` raw values;
volts are ``data * data.conversion * channel_conversion[channel] +
data.offset`` (NWB core ``ecephys`` schema). Channel names come from the
electrodes table (``label``/``channel_name`` column, else the electrode id),
regions from its ``location`` column, positions from ``x``/``y``/``z``
(microns in the schema, stored in metres), channel types from the electrode
group's name/description/device (see :func:`group_ch_type`). ``TimeIntervals``
tables (``trials``, ``epochs``, ``invalid_times``, any other) become
annotations.

Files holding both ophys and ephys content: a file with at least one
``ElectricalSeries`` is claimed by this loader (``timeseries``); one with
ophys content and no ``ElectricalSeries`` by ``nwb_ophys`` (``imaging``).
Either can still be forced with ``format=``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, NeurodataError, TruncatedFileError

VERSION = "NWB 2.x core ecephys (ElectricalSeries)"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: bytes of float64 one copy block may hold (blocks are whole shards of the store)
BLOCK_BYTES = 32 << 20
#: electrodes-table columns naming channels, in order of preference
LABEL_COLUMNS = ("label", "channel_name", "channel_names", "electrode_name", "name", "contact")
#: TimeIntervals columns whose text labels an annotation, in order of preference
INTERVAL_LABEL_COLUMNS = ("tags", "trial_type", "condition", "stimulus", "stim_type", "label",
                          "description", "type", "name", "outcome")
#: keywords (in group name/description/device) -> channel type; first match wins
CH_TYPE_KEYWORDS = (
    ("seeg", ("seeg", "stereo-eeg", "stereoeeg", "stereotactic eeg")),
    ("ecog", ("ecog", "grid", "strip", "subdural", "electrocorticogra")),
    ("dbs", ("dbs", "deep brain")),
    # intracortical probes (Neuropixels, tetrodes, Utah arrays): no EEG-family type fits
    ("misc", ("neuropixel", "probe", "shank", "tetrode", "polytrode", "utah", "microwire",
              "silicon")),
    ("seeg", ("depth",)),
    ("eog", ("eog",)),
    ("emg", ("emg",)),
    ("ecg", ("ecg", "ekg")),
    ("eeg", ("eeg", "scalp")),
)
_POSITION_SCALE = {"um": 1e-6, "mm": 1e-3, "m": 1.0}


# --------------------------------------------------------------------------- detection
def _is_hdf5(head: bytes) -> bool:
    # the superblock may follow a user block of 512 * 2**k bytes
    return head.startswith(HDF5_MAGIC) or any(
        head[o:o + 8] == HDF5_MAGIC for o in (512, 1024, 2048) if len(head) >= o + 8)


def _text(v) -> str | None:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return None if v is None else str(v)


def electrical_series_paths(h5) -> list[str]:
    """HDF5 paths of the ``ElectricalSeries`` of an open NWB file (where NWB puts them).

    Looks in ``acquisition/*``, ``processing/<module>/*`` and
    ``processing/<module>/<container>/*`` (LFP, FilteredEphys) only, so
    sniffing never walks a large file. ``SpikeEventSeries`` (snippets) are not
    continuous recordings and are left out.
    """
    import h5py

    out = []

    def groups(g):
        return [v for v in g.values() if isinstance(v, h5py.Group)] if g is not None else []

    def is_es(g):
        return _text(g.attrs.get("neurodata_type")) == "ElectricalSeries"

    for g in groups(h5.get("acquisition")):
        if is_es(g):
            out.append(g.name)
    for mod in groups(h5.get("processing")):
        for g in groups(mod):
            if is_es(g):
                out.append(g.name)
            else:
                out.extend(s.name for s in groups(g) if is_es(s))
    return out


def is_nwb(h5) -> bool:
    """An NWB root: ``nwb_version`` attribute (or the NWBFile type)."""
    return "nwb_version" in h5.attrs or _text(h5.attrs.get("neurodata_type")) == "NWBFile"


def sniff(path: Path, head: bytes) -> bool:
    """HDF5 magic, an NWB root and at least one ``ElectricalSeries``."""
    if not _is_hdf5(head):
        return False
    import h5py

    from neurodata.loaders.hdf5_spikes import check_global_heaps

    with h5py.File(path, "r") as f:
        check_global_heaps(f, path)  # raises on a damaged string heap (libhdf5 would spin)
        return is_nwb(f) and bool(electrical_series_paths(f))


# --------------------------------------------------------------------------- metadata
def group_ch_type(*texts) -> str | None:
    """Channel type named by an electrode group's name/description/device text, or None."""
    s = " ".join(str(t) for t in texts if t).lower()
    for ty, words in CH_TYPE_KEYWORDS:
        if any(re.search(rf"(?<![a-z]){re.escape(w)}", s) for w in words):
            return ty
    return None


def _column(table, name, rows):
    """Values of a table column for the given rows (None when absent)."""
    if name not in table.colnames:
        return None
    vals = table[name][:]  # resolves object references and ragged columns
    return [vals[int(r)] for r in rows]


def _str(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def channel_info(series, ch_types=None, position_unit: str = "um", default_type: str = "eeg"):
    """``(names, types, positions or None, regions or None)`` of an ElectricalSeries' channels.

    Parameters
    ----------
    series : pynwb.ecephys.ElectricalSeries
    ch_types : str or dict, optional
        One type for every channel, or ``{channel name or group name: type}``.
    position_unit : {"um", "mm", "m"}
        Unit of the table's ``x``/``y``/``z`` (the schema says microns).
    default_type : str
        Type of channels whose group names none.
    """
    region = series.electrodes
    if region is None:  # required by the schema, absent in some hand-made files
        n = 1 if len(series.data.shape) == 1 else int(series.data.shape[1])
        ty = ch_types if isinstance(ch_types, str) else default_type
        return [str(k) for k in range(n)], [ty] * n, None, None
    table = region.table
    rows = np.asarray(region.data[:], np.int64).reshape(-1)
    n_rows = len(table.id)
    if np.any(rows < 0) or np.any(rows >= n_rows):
        raise CorruptFileError(f"ElectricalSeries {series.name!r}: electrode index outside the "
                               f"{n_rows}-row electrodes table")
    ids = np.asarray(table.id.data[:])[rows]
    names = None
    for col in LABEL_COLUMNS:
        vals = _column(table, col, rows)
        if vals is not None:
            names = [_str(v).strip() for v in vals]
            if all(names) and len(set(names)) == len(names):
                break
            names = None
    if names is None:
        names = [str(int(i)) for i in ids]
    groups = _column(table, "group", rows)
    group_names = _column(table, "group_name", rows)
    types = []
    for k in range(len(rows)):
        g = groups[k] if groups is not None else None
        gname = _str(group_names[k]) if group_names is not None else (g.name if g else "")
        ty = None
        if isinstance(ch_types, str):
            ty = ch_types
        elif isinstance(ch_types, dict):
            ty = ch_types.get(names[k], ch_types.get(gname))
        if ty is None and g is not None:
            dev = getattr(g, "device", None)
            ty = group_ch_type(g.name, g.description, g.location,
                               getattr(dev, "name", ""), getattr(dev, "description", ""))
        if ty is None:
            ty = group_ch_type(gname)
        types.append(ty or default_type)
    regions = None
    loc = _column(table, "location", rows)
    if loc is not None:
        regions = [_str(v) for v in loc]
    elif groups is not None and all(g is not None for g in groups):
        regions = [_str(g.location) for g in groups]
    pos = None
    if all(c in table.colnames for c in ("x", "y", "z")):
        if position_unit not in _POSITION_SCALE:
            raise ValueError("position_unit must be 'um', 'mm' or 'm'")
        pos = np.stack([np.asarray(_column(table, c, rows), np.float64) for c in "xyz"], axis=1)
        pos = pos * _POSITION_SCALE[position_unit]
    return names, types, pos, regions


def _intervals(nwb, t0: float):
    """Annotations from every TimeIntervals table: onsets in s from ``t0``."""
    onset, duration, desc = [], [], []
    for tname, table in sorted((nwb.intervals or {}).items()):
        n = len(table.id)
        if n == 0:
            continue
        start = np.asarray(table["start_time"].data[:], np.float64)
        stop = np.asarray(table["stop_time"].data[:], np.float64) if "stop_time" in \
            table.colnames else np.full(n, np.nan)
        labels = None
        for col in INTERVAL_LABEL_COLUMNS:
            vals = _column(table, col, range(n))
            if vals is None:
                continue
            vals = [",".join(_str(e) for e in v) if isinstance(v, (list, tuple, np.ndarray))
                    else _str(v) for v in vals]
            if any(vals):
                labels = vals
                break
        onset.append(start - t0)
        duration.append(np.where(np.isfinite(stop), stop - start, 0.0))
        desc.extend(tname if not lab else f"{tname}/{lab}" for lab in
                    (labels if labels is not None else [""] * n))
    if not onset:
        return np.zeros(0), np.zeros(0), []
    onset, duration = np.concatenate(onset), np.concatenate(duration)
    order = np.argsort(onset, kind="stable")
    return onset[order], duration[order], [desc[i] for i in order]


def _subject_attrs(nwb, src: Path, deidentify: bool, salt: str) -> dict:
    from neurodata.loaders.eeg_mne import pseudonym

    subj = nwb.subject
    sid = getattr(subj, "subject_id", None) if subj is not None else None
    if deidentify:
        return {"subject": pseudonym(str(sid or nwb.identifier or src.stem), salt),
                "session": None, "deidentified": True}
    out = {"subject": sid, "session": nwb.session_id, "deidentified": False,
           "meas_date": nwb.session_start_time.isoformat() if nwb.session_start_time else None,
           "session_description": nwb.session_description, "identifier": nwb.identifier}
    if subj is not None:
        info = {}
        for k in ("subject_id", "age", "sex", "species", "genotype", "strain", "weight",
                  "description", "date_of_birth"):
            v = getattr(subj, k, None)
            if v is not None:
                info[k] = v.isoformat() if hasattr(v, "isoformat") else _str(v)
        out["subject_info"] = info
    if nwb.experimenter:
        out["experimenter"] = [_str(e) for e in nwb.experimenter]
    return out


# --------------------------------------------------------------------------- timing
def series_timing(series, src, tolerance: float = 0.01, resample: bool = False,
                  sfreq: float | None = None, block: int = 1 << 20):
    """``(sfreq, t0, timestamps or None)`` of a series.

    With ``rate``: ``(rate, starting_time, None)``. With ``timestamps``: the
    rate fitting first and last stamps; every stamp must lie within
    ``tolerance`` sample periods of that uniform grid (checked block by block),
    else :class:`FormatError` -- unless ``resample``, which returns the stamps
    for interpolation onto the grid at ``sfreq`` (default the fitted rate).
    """
    n = int(series.data.shape[0])
    if series.rate is not None and series.timestamps is None:
        rate = float(series.rate)
        if not np.isfinite(rate) or rate <= 0:
            raise CorruptFileError(f"ElectricalSeries {series.name!r}: rate {rate!r} Hz", src)
        return rate, float(series.starting_time or 0.0), None
    ts = series.timestamps
    if ts is None:
        raise CorruptFileError(f"ElectricalSeries {series.name!r} has neither rate nor "
                               "timestamps", src)
    if len(ts) != n:
        raise CorruptFileError(f"ElectricalSeries {series.name!r}: {len(ts)} timestamps for "
                               f"{n} samples", src)
    if n < 2:
        raise FormatError(f"ElectricalSeries {series.name!r}: fewer than 2 timestamps, no "
                          "sampling rate", src)
    first, last = float(ts[0]), float(ts[n - 1])
    if not last > first:
        raise CorruptFileError(f"ElectricalSeries {series.name!r}: timestamps do not increase", src)
    fs = (n - 1) / (last - first)
    rounded = round(fs, 6)
    if abs(rounded - fs) <= 1e-9 * fs:
        fs = rounded
    worst, prev = 0.0, -np.inf
    for s in range(0, n, block):
        t = np.asarray(ts[s:min(n, s + block)], np.float64)
        if t[0] <= prev or np.any(np.diff(t) <= 0):
            raise CorruptFileError(f"ElectricalSeries {series.name!r}: timestamps are not "
                                   "strictly increasing", src)
        prev = t[-1]
        grid = first + (s + np.arange(len(t))) / fs
        worst = max(worst, float(np.max(np.abs(t - grid))) * fs)
    if worst <= tolerance:
        return fs, first, None
    if not resample:
        raise FormatError(
            f"ElectricalSeries {series.name!r}: irregular timestamps (a stamp is {worst:.3g} "
            f"sample periods off a uniform {fs:g} Hz grid); convert with resample=True to "
            "interpolate onto a uniform grid", src)
    return float(sfreq or fs), first, np.asarray(ts[:], np.float64)


# --------------------------------------------------------------------------- conversion
def _scale(series, src):
    """``(gain per channel or scalar, offset)`` from raw values to volts."""
    conv = float(series.conversion if series.conversion is not None else 1.0)
    off = float(getattr(series, "offset", 0.0) or 0.0)
    cc = getattr(series, "channel_conversion", None)
    gain = conv * np.asarray(cc[:], np.float64) if cc is not None else conv
    unit = (series.unit or "volts").strip().lower()
    if unit not in ("volts", "volt", "v"):
        # the schema fixes volts; honour a common deviation rather than mislabel it
        scale = {"mv": 1e-3, "millivolts": 1e-3, "uv": 1e-6, "microvolts": 1e-6,
                 "µv": 1e-6}.get(unit)
        if scale is None:
            raise FormatError(f"ElectricalSeries {series.name!r}: unit {series.unit!r} is not "
                              "a voltage", src)
        gain, off = gain * scale, off * scale
    return gain, off


def _copy(w, series, n_ch: int, n_out: int, step: int, src, timestamps=None, t0=0.0,
          fs=None) -> None:
    data = series.data
    gain, off = _scale(series, src)
    n_src = int(data.shape[0])
    for s in range(0, n_out, step):
        e = min(n_out, s + step)
        try:
            if timestamps is None:
                raw = np.asarray(data[s:e], np.float64).reshape(e - s, n_ch)
            else:
                t = t0 + np.arange(s, e) / fs
                i0 = max(0, int(np.searchsorted(timestamps, t[0], "right")) - 1)
                i1 = min(n_src, int(np.searchsorted(timestamps, t[-1], "left")) + 1)
                part = np.asarray(data[i0:i1], np.float64).reshape(i1 - i0, n_ch)
                raw = _interp_rows(t, timestamps[i0:i1], part)
        except (OSError, ValueError, KeyError) as exc:
            raise CorruptFileError(f"cannot read ElectricalSeries {series.name!r} samples "
                                   f"{s}-{e} ({exc})".splitlines()[0], src) from None
        if raw.shape != (e - s, n_ch):
            raise CorruptFileError(f"ElectricalSeries {series.name!r}: block of shape {raw.shape}"
                                   f" where ({e - s}, {n_ch}) was expected", src)
        raw *= gain
        raw += off
        w.write(raw.T)


def _interp_rows(t: np.ndarray, tt: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Linear interpolation of the rows of ``part`` (stamped ``tt``) at times ``t``, all
    channels at once (``np.interp`` per column, ends held)."""
    if len(tt) == 1:
        return np.repeat(part, len(t), axis=0)
    j = np.clip(np.searchsorted(tt, t, "right") - 1, 0, len(tt) - 2)
    w = np.clip((t - tt[j]) / (tt[j + 1] - tt[j]), 0.0, 1.0)[:, None]
    return part[j] * (1.0 - w) + part[j + 1] * w


def _open(src: Path):
    """``(NWBHDF5IO, nwbfile)``; unreadable files raise errors naming ``src``."""
    import h5py
    from pynwb import NWBHDF5IO

    try:
        h5 = h5py.File(src, "r")
    except OSError as e:
        msg = str(e)
        if "truncated" in msg.lower() or "eof" in msg.lower():
            raise TruncatedFileError(f"truncated HDF5/NWB file ({msg})".splitlines()[0],
                                     src) from None
        raise CorruptFileError(f"not a readable HDF5/NWB file ({msg})".splitlines()[0],
                               src) from None
    try:
        from neurodata.loaders.hdf5_spikes import check_global_heaps

        check_global_heaps(h5, src)  # a damaged string heap makes libhdf5 spin
        nwb_file = is_nwb(h5)
    except NeurodataError:
        h5.close()
        raise
    except (OSError, KeyError, RuntimeError) as e:  # damaged root object header
        h5.close()
        raise CorruptFileError(f"unreadable HDF5 root attributes ({e})".splitlines()[0],
                               src) from None
    if not nwb_file:
        h5.close()
        raise FormatError("HDF5 file is not NWB (no nwb_version attribute)", src)
    try:
        io = NWBHDF5IO(file=h5, mode="r", load_namespaces=True)
        return io, io.read(), h5
    except Exception as e:  # pynwb/hdmf raise many types for broken files
        h5.close()
        raise CorruptFileError(f"cannot read as NWB ({e.__class__.__name__}: {e})".splitlines()[0],
                               src) from None


def electrical_series(nwb) -> list:
    """The continuous ElectricalSeries of a file (extension subclasses too), acquisition first."""
    from pynwb.ecephys import ElectricalSeries, SpikeEventSeries

    found = [o for o in nwb.objects.values()
             if isinstance(o, ElectricalSeries) and not isinstance(o, SpikeEventSeries)]
    acq = set(id(o) for o in nwb.acquisition.values())
    return sorted(found, key=lambda o: (id(o) not in acq, _path(o)))


def _path(obj) -> str:
    parts = []
    while obj is not None and obj.parent is not None:
        parts.append(obj.name)
        obj = obj.parent
    return "/".join(reversed(parts))


def convert(src, out, attrs: dict | None = None, *, series: str | list | None = None,
            ch_types=None, default_type: str = "eeg", position_unit: str = "um",
            resample: bool = False, sfreq: float | None = None,
            timestamp_tolerance: float = 0.01, deidentify: bool = False,
            pseudonym_salt: str = "", time_chunk: int | None = None,
            block_bytes: int = BLOCK_BYTES, data_codec: str | None = None) -> None:
    """Convert the ElectricalSeries of an NWB file into a ``timeseries/1`` store at ``out``.

    Parameters
    ----------
    src : path-like
        NWB 2.x HDF5 file.
    out : path-like
        Folder to create (``neurodata.convert`` passes a temporary one).
    attrs : dict, optional
        Extra root attributes.
    series : str or list of str, optional
        Names of the ElectricalSeries to convert (default: all).
    ch_types : str or dict, optional
        Channel type for every channel, or ``{channel or electrode-group name: type}``;
        otherwise read from the electrode group (``seeg``/``ecog``/... keywords).
    default_type : str
        Type of channels nothing names (default ``"eeg"``).
    position_unit : {"um", "mm", "m"}
        Unit of the electrodes table's ``x``/``y``/``z`` (NWB says microns).
    resample : bool
        Series with irregular timestamps are linearly interpolated onto a
        uniform grid (at ``sfreq``, default the rate fitting first/last stamps)
        instead of refused.
    timestamp_tolerance : float
        Largest deviation (in sample periods) of a timestamp from the uniform
        grid still counted as regular.
    deidentify : bool
        Keep no session date, subject details or experimenter; subject and
        source names become pseudonyms.
    time_chunk : int, optional
        Samples per stored chunk.
    block_bytes : int
        Float64 bytes one copy block may hold (memory bound of the copy).
    data_codec : {"none", "lz4", "zstd"}, optional
        Compression of the signal (see :data:`neurodata.format.timeseries.DATA_CODECS`).
    """
    from neurodata.format.store import file_sha256, provenance
    from neurodata.format.timeseries import (CHUNKS_PER_SHARD, TimeseriesStoreWriter,
                                             default_time_chunk)
    from neurodata.loaders.eeg_mne import pseudonym

    src = Path(src)
    io, nwb, h5 = _open(src)
    try:
        found = electrical_series(nwb)
        if series is not None:
            wanted = [series] if isinstance(series, str) else list(series)
            missing = sorted(set(wanted) - {s.name for s in found})
            if missing:
                raise FormatError(f"no ElectricalSeries named {missing}; the file has "
                                  f"{[s.name for s in found]}", src)
            found = [s for s in found if s.name in wanted]
        if not found:
            raise FormatError("NWB file holds no ElectricalSeries", src)
        w = TimeseriesStoreWriter(out, attrs=attrs, data_codec=data_codec)
        base = _subject_attrs(nwb, src, deidentify, pseudonym_salt)
        base["source_format"] = "nwb"
        base["nwb_version"] = _text(h5.attrs.get("nwb_version"))
        base["source"] = pseudonym(src.name, pseudonym_salt) + src.suffix if deidentify \
            else src.name
        names_used: set[str] = set()
        for es in found:
            shape = es.data.shape
            if len(shape) not in (1, 2):
                raise FormatError(f"ElectricalSeries {es.name!r} has shape {shape}; only "
                                  "(time, channel) series are continuous recordings", src)
            try:
                names, types, pos, regions = channel_info(es, ch_types, position_unit,
                                                          default_type)
            except NeurodataError as e:
                if e.path is not None:
                    raise
                raise type(e)(str(e), src) from None  # channel_info does not know the file
            n_data_ch = 1 if len(shape) == 1 else int(shape[1])  # 1-D: one channel
            if len(names) != n_data_ch:
                raise CorruptFileError(f"ElectricalSeries {es.name!r}: {n_data_ch} channels in "
                                       f"data, {len(names)} electrodes referenced", src)
            fs, t0, stamps = series_timing(es, src, timestamp_tolerance, resample, sfreq)
            n = int(shape[0]) if stamps is None else \
                int(np.floor((stamps[-1] - t0) * fs + 1e-9)) + 1
            name = es.name if es.name not in names_used else _path(es).replace("/", ".")
            names_used.add(name)
            a = dict(base, nwb_path=_path(es), starting_time=t0,
                     description=_str(es.description or ""))
            if stamps is not None:
                a["resampled_by"] = "linear interpolation of irregular timestamps"
            tc = int(time_chunk or default_time_chunk(len(names)))
            rw = w.add_recording(name, names, types, fs, n, positions=pos, regions=regions,
                                 attrs=a, time_chunk=tc)
            shard = tc * CHUNKS_PER_SHARD
            step = max(1, block_bytes // (8 * max(1, len(names)) * shard)) * shard
            _copy(rw, es, len(names), n, step, src, stamps, t0, fs)
            rw.set_annotations(*_intervals(nwb, t0))
            rw.close()
        prov = provenance([src], loader=loader_tag(), checksums=[file_sha256(src)])
        if deidentify:
            for entry in prov["sources"]:
                entry["name"] = base["source"]
        w.close(prov)
    except NeurodataError:
        raise
    except (OSError, KeyError, RuntimeError) as e:  # h5py/libhdf5 on damaged objects and data
        raise CorruptFileError(f"cannot convert NWB file ({e})".splitlines()[0], src) from None
    finally:
        io.close()
        h5.close()


def loader_tag() -> str:
    """``"nwb_ecephys/<version> (pynwb X.Y)"`` for provenance."""
    import pynwb

    return f"nwb_ecephys/{VERSION} (pynwb {pynwb.__version__})"


__all__ = ["VERSION", "sniff", "convert", "electrical_series_paths", "electrical_series",
           "channel_info", "series_timing", "group_ch_type"]
