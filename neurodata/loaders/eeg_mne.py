"""EEG/sEEG/iEEG files through MNE: EDF/EDF+, BDF, BrainVision, FIF, EEGLAB, GDF; BIDS folders.

Data are read with ``preload=False`` and copied into a ``timeseries/1`` store
one time block at a time, so memory stays bounded by the block, not the
recording. EDF/BDF headers are checked first (sizes against the file), so a
truncated or corrupt file fails with a one-line error naming it instead of
MNE reading garbage.

Channels recorded at different rates (EDF/BDF allow a rate per signal) are
never silently mixed: by default (``mixed_rate="group"``) each rate becomes
its own recording group ``<name>@<rate>Hz`` holding the samples as recorded;
``mixed_rate="resample"`` keeps one group at the highest rate, the slower
channels upsampled by MNE's reader; ``mixed_rate="error"`` refuses the file.

Epoched files (FIF ``-epo.fif``, EEGLAB sets with trials) are stored as the
epochs end to end, each epoch's event in the events table, so event-locked
windows with the same ``tmin``/``tmax`` return the epochs.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re
import struct
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, NeurodataError, TruncatedFileError

VERSION = "EDF+ 2003, BDF+, BrainVision 1.0/2.0, FIF, EEGLAB .set, GDF 1.x/2.x, BIDS 1.9 (via MNE)"

#: source kinds this module reads, with the format version each reader implements
KIND_VERSIONS = {"edf": "EDF+ 2003", "bdf": "BDF+ (BioSemi 24-bit)",
                 "brainvision": "BrainVision Core 1.0/2.0", "fif": "FIF (Neuromag/MNE)",
                 "eeglab": "EEGLAB .set (MAT v5/v7.3)", "gdf": "GDF 1.x/2.x"}
KINDS = tuple(KIND_VERSIONS)

_FIF_MAGIC = (100).to_bytes(4, "big") + (31).to_bytes(4, "big") + (20).to_bytes(4, "big")
_UNIT_SCALE = {"uv": 1e-6, "µv": 1e-6, "μv": 1e-6, "mv": 1e-3, "v": 1.0, "nv": 1e-9}


# --------------------------------------------------------------------------- detection
def source_kind(path, head: bytes | None = None) -> str | None:
    """Which EEG format ``path`` holds, from its first bytes (extension only to break ties)."""
    p = Path(path)
    if head is None:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    name = p.name.lower()
    if head[:8] == b"0       " and len(head) >= 256 and head[184:192].strip().isdigit():
        return "edf"
    if head[:8] == b"\xffBIOSEMI":
        return "bdf"
    text = head[:64].lstrip(b"\xef\xbb\xbf").lower()
    if text.startswith((b"brain vision data exchange header file",
                        b"brainvision data exchange header file")):
        return "brainvision"
    if head[:12] == _FIF_MAGIC or (head[:2] == b"\x1f\x8b" and name.endswith(".fif.gz")):
        return "fif"
    if head[:3] == b"GDF" and head[3:4] in (b" ", b"1", b"2"):
        return "gdf"
    if head[:6] == b"MATLAB" and _is_eeglab(p, head):
        return "eeglab"
    return None


def _is_eeglab(p: Path, head: bytes) -> bool:
    if p.suffix.lower() == ".set":
        return True
    if b"7.3 MAT-file" in head[:128]:  # HDF5-based: look for the EEG fields
        try:
            import h5py

            with h5py.File(p, "r") as f:
                return "EEG" in f or {"srate", "nbchan"} <= set(f.keys())
        except Exception:
            return False
    try:
        from scipy.io import whosmat

        names = {n for n, _, _ in whosmat(str(p))}
    except Exception:
        return False
    return "EEG" in names or {"srate", "nbchan", "data"} <= names


def _is_bids(p: Path) -> bool:
    return (p / "dataset_description.json").is_file() and any(p.glob("sub-*"))


def sniff(path, head: bytes) -> bool:
    """True for an EEG file MNE reads (from its magic/header) or a BIDS folder."""
    p = Path(path)
    if p.is_dir():
        return _is_bids(p)
    return source_kind(p, head) is not None


# --------------------------------------------------------------------------- EDF/BDF header
def _fixed_header(fh, p: Path, kind: str) -> bytes:
    """The 256-byte fixed header EDF, BDF and GDF start with (TruncatedFileError if short)."""
    fixed = fh.read(256)
    if len(fixed) < 256:
        raise TruncatedFileError(f"{kind} header truncated ({len(fixed)} of 256 bytes)", p)
    return fixed


def edf_header(path) -> dict:
    """Parse and check an EDF/BDF header against the file size.

    Returns the fields needed to read signals at their own rates. Raises
    :class:`CorruptFileError` / :class:`TruncatedFileError` naming the file.
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        fixed = _fixed_header(fh, p, "EDF/BDF")
        bdf = fixed[:8] == b"\xffBIOSEMI"

        def num(b: bytes, what: str, kind=float):
            s = b.decode("latin-1").strip()
            try:
                return kind(s) if kind is int else float(s)
            except ValueError:
                raise CorruptFileError(f"EDF/BDF header field {what!r} is not a number: {s!r}",
                                       p) from None

        header_bytes = num(fixed[184:192], "header bytes", int)
        n_records = num(fixed[236:244], "number of data records", int)
        record_s = num(fixed[244:252], "duration of a data record")
        ns = num(fixed[252:256], "number of signals", int)
        if ns <= 0 or ns > 100000:
            raise CorruptFileError(f"EDF/BDF header claims {ns} signals", p)
        if header_bytes != 256 * (ns + 1):
            raise CorruptFileError(f"EDF/BDF header size {header_bytes} does not match "
                                   f"{ns} signals ({256 * (ns + 1)} bytes expected)", p)
        if size < header_bytes:
            raise TruncatedFileError(f"EDF/BDF header truncated ({size} of {header_bytes} bytes)", p)
        sig = fh.read(256 * ns)

    def field(offset: int, width: int) -> list[str]:
        start = offset * ns
        return [sig[start + i * width:start + (i + 1) * width].decode("latin-1").strip()
                for i in range(ns)]

    labels = field(0, 16)
    dims = field(96, 8)
    pmin, pmax = field(104, 8), field(112, 8)
    dmin, dmax = field(120, 8), field(128, 8)
    n_samps = field(216, 8)
    try:
        pmin, pmax = np.array(pmin, float), np.array(pmax, float)
        dmin, dmax = np.array(dmin, float), np.array(dmax, float)
        n_samps = np.array(n_samps, np.int64)
    except ValueError:
        raise CorruptFileError("EDF/BDF signal header has a non-numeric min/max/samples field",
                               p) from None
    if np.any(n_samps <= 0):
        raise CorruptFileError("EDF/BDF signal header has a signal with no samples per record", p)
    bps = 3 if bdf else 2
    record_bytes = int(n_samps.sum()) * bps
    available = (size - header_bytes) // record_bytes
    if n_records < 0:  # -1: unknown (recording not closed); use what the file holds
        n_records = available
    elif n_records > available:
        raise TruncatedFileError(
            f"truncated: header announces {n_records} data records of {record_bytes} bytes, "
            f"the file holds {available}", p)
    if record_s <= 0 and n_records:
        raise CorruptFileError(f"EDF/BDF record duration {record_s} s is not positive", p)
    annot = np.array([lab.endswith("Annotations") and lab[:3] in ("EDF", "BDF") for lab in labels])
    return {"bdf": bdf, "labels": labels, "dims": dims, "pmin": pmin, "pmax": pmax,
            "dmin": dmin, "dmax": dmax, "n_samps": n_samps, "n_records": int(n_records),
            "record_s": float(record_s), "header_bytes": header_bytes,
            "record_bytes": record_bytes, "annotation": annot}


def edf_read_signals(path, hdr: dict, signals, r0: int, r1: int) -> np.ndarray:
    """Physical values (SI) of ``signals`` (same samples per record) for records ``[r0, r1)``."""
    signals = np.asarray(signals, np.int64)
    n = int(hdr["n_samps"][signals[0]])
    bps = 3 if hdr["bdf"] else 2
    offsets = np.concatenate([[0], np.cumsum(hdr["n_samps"])]) * bps
    with open(path, "rb") as fh:
        fh.seek(hdr["header_bytes"] + r0 * hdr["record_bytes"])
        raw = np.frombuffer(fh.read((r1 - r0) * hdr["record_bytes"]), np.uint8)
    raw = raw.reshape(r1 - r0, hdr["record_bytes"])
    out = np.empty((len(signals), (r1 - r0) * n), np.float64)
    for k, s in enumerate(signals):
        b = raw[:, offsets[s]:offsets[s] + n * bps].reshape(-1, bps)
        if bps == 2:
            d = b.copy().view("<i2").reshape(-1).astype(np.float64)
        else:
            v = b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | \
                (b[:, 2].astype(np.int32) << 16)
            d = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64)
        span = hdr["dmax"][s] - hdr["dmin"][s]
        gain = (hdr["pmax"][s] - hdr["pmin"][s]) / span if span else 1.0
        offset = hdr["pmin"][s] - hdr["dmin"][s] * gain
        scale = _UNIT_SCALE.get(hdr["dims"][s].strip().lower(), 1.0)
        out[k] = (d * gain + offset) * scale
    return out


# --------------------------------------------------------------------------- GDF header
#: bytes per sample of the GDF data types MNE reads (GDFTYP code -> size)
_GDF_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 8, 8: 8, 16: 4, 17: 8}


def gdf_header(path) -> dict:
    """Check a GDF 1.x/2.x header against the file size before MNE opens it.

    MNE's reader trusts the header: a short file fails only when samples are
    read, a record count of -1 or mixed data types give garbage. Raises
    :class:`FormatError` subclasses naming the file; returns version, channel
    count, record layout, the size of a 2.x header 3 (tags) and whether an event
    table follows the records (see :func:`_gdf_for_mne` for what MNE needs then).
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        fixed = _fixed_header(fh, p, "GDF")
        try:
            version = float(fixed[4:8].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            version = 0.0
        if fixed[:4] != b"GDF " or not 1.0 <= version < 3.0:
            raise FormatError(f"unsupported GDF version string {fixed[:8]!r} "
                              "(GDF 1.x and 2.x are read)", p)
        gdf1 = version < 1.9
        if gdf1:  # header length in bytes (int64), channel count uint32
            header_bytes = struct.unpack_from("<q", fixed, 184)[0]
            n_rec, num, den, ns = struct.unpack_from("<qIII", fixed, 236)
        else:  # header length in 256-byte blocks (uint16), channel count uint16
            header_bytes = 256 * struct.unpack_from("<H", fixed, 184)[0]
            n_rec, num, den, ns = struct.unpack_from("<qIIH", fixed, 236)
        if ns <= 0:
            raise CorruptFileError(f"GDF header claims {ns} channels", p)
        if 256 * (ns + 1) > size:
            raise TruncatedFileError(f"GDF header claims {ns} channels ({256 * (ns + 1)} "
                                     f"header bytes), the file holds {size}", p)
        if header_bytes < 256 * (ns + 1) or (gdf1 and header_bytes != 256 * (ns + 1)):
            raise CorruptFileError(f"GDF header length {header_bytes} does not match "
                                   f"{ns} channel headers ({256 * (ns + 1)} bytes)", p)
        var = fh.read(256 * ns)  # stored field by field: all labels, all transducers, ...
    # samples per record and data type sit at the same place in 1.x and 2.x
    spr = np.frombuffer(var, "<u4", ns, 216 * ns)
    types = np.frombuffer(var, "<u4", ns, 220 * ns)
    unknown = sorted({int(t) for t in types} - set(_GDF_TYPE_BYTES))
    if unknown:
        raise CorruptFileError(f"GDF channel data type code(s) {unknown} unknown or not read "
                               "by MNE", p)
    if len(set(types.tolist())) > 1:
        raise FormatError(f"GDF channels of different data types {sorted(set(types.tolist()))}: "
                          "MNE reads one data type per file", p)
    if num == 0 or den == 0:
        raise CorruptFileError(f"GDF record duration {num}/{den} s is not valid", p)
    record_bytes = int(spr.astype(np.int64).sum()) * _GDF_TYPE_BYTES[int(types[0])]
    if record_bytes == 0:
        raise CorruptFileError("GDF channels have no samples per record", p)
    available = (size - header_bytes) // record_bytes
    if n_rec < 0:
        raise FormatError("GDF number of data records is unknown (-1, recording not closed); "
                          "MNE cannot read it", p)
    if n_rec > available:
        raise TruncatedFileError(f"truncated: header announces {n_rec} data records of "
                                 f"{record_bytes} bytes, the file holds {available}", p)
    has_table = _gdf_event_table(p, gdf1, header_bytes + n_rec * record_bytes, size)
    return {"version": version, "n_channels": int(ns), "header_bytes": int(header_bytes),
            "header3_bytes": int(header_bytes - 256 * (ns + 1)), "event_table": has_table,
            "n_records": int(n_rec), "record_bytes": record_bytes,
            "record_s": num / den, "spr": spr.astype(np.int64), "types": types.astype(int)}


def _gdf_event_table(p: Path, gdf1: bool, start: int, size: int) -> bool:
    """The event table after the last record must hold the events its header counts.

    Returns whether the file has one.
    """
    tail = size - start
    if tail <= 0:
        return False
    with open(p, "rb") as fh:
        fh.seek(start)
        head = fh.read(8)
    mode = head[0]
    if mode not in (1, 3):
        if gdf1:  # MNE ignores a 1.x table of another mode; a 2.x one it would misread
            return True
        raise CorruptFileError(f"GDF event table mode {mode} (1 or 3 expected)", p)
    if len(head) < 8:
        raise TruncatedFileError(f"GDF event table header truncated ({tail} of 8 bytes)", p)
    n_ev = struct.unpack_from("<I", head, 4)[0] if gdf1 else int.from_bytes(head[1:4], "little")
    need = 8 + n_ev * (12 if mode == 3 else 6)
    if need > tail:
        raise TruncatedFileError(f"truncated: GDF event table announces {n_ev} events "
                                 f"({need} bytes), the file holds {tail}", p)
    return True


def _gdf_for_mne(p: Path, hdr: dict) -> Path:
    """A path MNE's GDF reader opens: ``p`` itself, or a prepared copy in a temporary folder.

    MNE reads only names ending in ``.gdf`` (a symlink fixes that), asserts the data
    start right after header 2 (a 2.x header 3 of tags -- written by BioSig and others
    -- is cut out of a copy whose header length is patched) and needs an event table in
    1.x files (an empty one is appended to the copy). The caller removes the folder.
    """
    need_copy = hdr["header3_bytes"] > 0 or (hdr["version"] < 1.9 and not hdr["event_table"])
    if not need_copy and p.suffix.lower() == ".gdf":
        return p
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="neurodata-gdf-"))
    dst = folder / (p.stem + ".gdf")
    if not need_copy:
        try:
            dst.symlink_to(p.resolve())
            return dst
        except OSError:
            pass
    ns = hdr["n_channels"]
    with open(p, "rb") as src, open(dst, "wb") as out:
        head = bytearray(src.read(256 * (ns + 1)))
        if hdr["header3_bytes"]:
            struct.pack_into("<H", head, 184, ns + 1)  # header length in 256-byte blocks
            src.seek(hdr["header_bytes"])
        out.write(head)
        shutil.copyfileobj(src, out, 1 << 22)  # records, then the event table if any
        if hdr["version"] < 1.9 and not hdr["event_table"]:
            rate = int(round(hdr["spr"].max() / hdr["record_s"]))
            out.write(bytes([1]) + (rate & 0xFFFFFF).to_bytes(3, "little") + bytes(4))
    return dst


# --------------------------------------------------------------------------- MNE reading
def read_raw(path, kind: str | None = None, verbose="error"):
    """Open ``path`` with MNE, ``preload=False``; errors become :class:`NeurodataError`."""
    import mne

    p = Path(path)
    kind = kind or source_kind(p)
    if kind is None:
        raise FormatError("not an EEG file MNE reads (EDF, BDF, BrainVision, FIF, EEGLAB, GDF)", p)
    opened = p
    if kind in ("edf", "bdf"):
        edf_header(p)
    elif kind == "gdf":
        opened = _gdf_for_mne(p, gdf_header(p))
    readers = {
        "edf": mne.io.read_raw_edf, "bdf": mne.io.read_raw_bdf,
        "brainvision": mne.io.read_raw_brainvision, "fif": mne.io.read_raw_fif,
        "eeglab": mne.io.read_raw_eeglab, "gdf": mne.io.read_raw_gdf,
    }
    try:
        raw = readers[kind](opened, preload=False, verbose=verbose)
    except BaseException as e:
        if opened != p:
            _remove_folder(opened.parent)
        if isinstance(e, NeurodataError) or not isinstance(e, Exception):
            raise
        # MNE raises bare Exception/AssertionError on corrupt headers too
        raise CorruptFileError(f"MNE cannot read this {kind} file: {e}".splitlines()[0], p) from None
    if opened != p:  # the prepared copy lives as long as the raw reading from it
        import weakref

        weakref.finalize(raw, _remove_folder, opened.parent)
    return raw


def _remove_folder(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def read_recording(path, kind: str | None = None, verbose="error"):
    """Open ``path`` as a continuous raw or, for FIF and EEGLAB files, as epochs.

    Preprocessed EEG is often shared epoched (``-epo.fif``, EEGLAB sets with
    trials): those come back as ``mne.Epochs`` (FIF lazily), which
    :func:`write_epochs` stores. Averaged (evoked) FIF files are refused: they
    are not recordings.
    """
    import mne

    p = Path(path)
    kind = kind or source_kind(p)
    try:
        return read_raw(p, kind, verbose)
    except CorruptFileError as raw_error:
        if kind not in ("fif", "eeglab"):
            raise
        try:
            if kind == "fif":
                return mne.read_epochs(p, preload=False, verbose=verbose)
            return mne.read_epochs_eeglab(p, verbose=verbose)
        except Exception:
            pass
        if kind == "fif":
            try:
                n_evoked = len(mne.read_evokeds(p, verbose=verbose))
            except Exception:
                n_evoked = 0
            if n_evoked:
                raise FormatError(f"FIF file holds {n_evoked} averaged (evoked) response(s), "
                                  "not a recording or epochs", p) from None
        raise raw_error


_FIFF_UNITS = {107: "V", 112: "T", 201: "T/m", -1: "", 0: "", 101: "m", 108: "S",
               113: "Am", 114: "K", 118: "M", 119: "mol/m^3", 180: "V"}


def _ch_meta(raw, picks):
    types = raw.get_channel_types(picks=picks)
    units = [_FIFF_UNITS.get(int(raw.info["chs"][i]["unit"]), str(raw.info["chs"][i]["unit"]))
             for i in picks]
    names = [raw.ch_names[i] for i in picks]
    pos = np.array([raw.info["chs"][i]["loc"][:3] for i in picks], np.float64)
    if not np.any(np.isfinite(pos) & (pos != 0)):
        pos = None
    return names, types, units, pos


def _annotations(raw) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Annotation onsets in seconds from the first stored sample.

    MNE keeps a raw's annotation onsets on the clock of ``meas_date`` (or of
    sample 0 when there is none), on which the first stored sample sits at
    ``raw.first_time``.
    """
    ann = raw.annotations
    onset = np.asarray(ann.onset, np.float64) - raw.first_time
    return onset, np.asarray(ann.duration, np.float64), [str(d) for d in ann.description]


def stim_events(values: np.ndarray, previous: float = 0.0, offset: int = 0):
    """Samples where a stim channel steps to a new non-zero value (vectorised).

    ``previous`` is the value just before ``values`` (carried across blocks);
    returns ``(sample + offset, code)``. Matches ``mne.find_events`` with
    ``consecutive=True, shortest_event=1``.
    """
    v = np.asarray(values)
    before = np.concatenate([[previous], v[:-1]])
    idx = np.nonzero((v != before) & (v != 0))[0]
    return idx + offset, v[idx].astype(np.int64)


def _subject_attrs(raw, src: Path, deidentify: bool, salt: str, subject, session) -> dict:
    info = raw.info
    si = info.get("subject_info") or {}
    if deidentify:
        ident = subject or si.get("his_id") or " ".join(
            str(si.get(k, "")) for k in ("first_name", "last_name")).strip() or src.stem
        out = {"subject": pseudonym(str(ident), salt), "session": session,
               "deidentified": True}
        return out
    out = {"subject": subject or (si.get("his_id") or None), "session": session,
           "deidentified": False}
    if info.get("meas_date") is not None:
        out["meas_date"] = info["meas_date"].isoformat()
    if si:
        out["subject_info"] = {k: (v.isoformat() if isinstance(v, (_dt.date, _dt.datetime))
                                   else v.tolist() if isinstance(v, np.ndarray) else v)
                               for k, v in si.items()}
    if info.get("experimenter"):
        out["experimenter"] = str(info["experimenter"])
    return out


def pseudonym(identity: str, salt: str = "") -> str:
    """A stable pseudonym ``anon-<12 hex>`` (sha256 of salt + identity): links, never reveals."""
    return "anon-" + hashlib.sha256((salt + "\x00" + identity).encode()).hexdigest()[:12]


def _block_samples(n_channels: int, time_chunk: int, max_bytes: int = 8 << 20) -> int:
    """Samples per copy block: whole shards, at most ``max_bytes`` of float64."""
    from neurodata.format.timeseries import CHUNKS_PER_SHARD

    shard = time_chunk * CHUNKS_PER_SHARD
    k = max(1, max_bytes // (8 * max(1, n_channels) * shard))
    return int(k * shard)


def write_raw(writer, raw, name: str, attrs: dict, *, picks=None, positions=None, regions=None,
              time_chunk: int | None = None, event_names: dict | None = None):
    """Copy an MNE raw (``preload=False`` fine) into ``writer`` block by block.

    Stim channels become the events table (labelled by ``event_names``, a
    ``{code: name}`` dict, where given); annotations the annotation table.
    """
    from neurodata.format.timeseries import default_time_chunk

    picks = np.arange(len(raw.ch_names)) if picks is None else np.asarray(picks)
    names, types, units, pos = _ch_meta(raw, picks)
    if positions is not None:
        pos = positions
    n = raw.n_times
    tc = int(time_chunk or default_time_chunk(len(picks)))
    w = writer.add_recording(name, names, types, raw.info["sfreq"], n, units=units,
                             positions=pos, regions=regions, attrs=attrs, time_chunk=tc)
    stim = [k for k, t in enumerate(types) if t == "stim"]
    prev = np.zeros(len(stim))
    ev_s, ev_c, ev_l = [], [], []
    step = _block_samples(len(picks), tc)
    for s in range(0, n, step):
        block = raw.get_data(picks=picks, start=s, stop=min(n, s + step))
        w.write(block)
        for j, k in enumerate(stim):
            smp, code = stim_events(block[k], prev[j], s)
            ev_s.append(smp)
            ev_c.append(code)
            text = [event_names.get(int(c), str(c)) for c in code] if event_names else \
                [str(c) for c in code]
            ev_l.extend(text if len(stim) == 1 else [f"{names[k]}/{t}" for t in text])
            prev[j] = block[k, -1] if block.shape[1] else prev[j]
    if ev_s:
        sample = np.concatenate(ev_s)
        code = np.concatenate(ev_c)
        order = np.argsort(sample, kind="stable")
        w.set_events(sample[order], code[order], np.asarray(ev_l, dtype=object)[order])
    onset, duration, desc = _annotations(raw)
    w.set_annotations(onset, duration, desc)
    w.close()
    return w


def write_epochs(writer, epochs, name: str, attrs: dict, *, time_chunk: int | None = None,
                 max_bytes: int = 8 << 20):
    """Store ``mne.Epochs`` as one recording: the epochs end to end along time.

    Epoch ``e`` fills samples ``[e * L, (e + 1) * L)`` (``L`` samples per
    epoch). The events table holds each epoch's event at its time 0 (sample
    ``e * L - round(tmin * sfreq)``) with its code and name, so event-locked
    windows with the epochs' ``tmin``/``tmax`` give the epochs back exactly;
    ``EDGE boundary`` annotations mark the joins (MNE's filters then treat
    each epoch as its own segment). The group attribute ``epochs`` keeps
    ``tmin``, ``tmax``, ``baseline`` and the events' samples in the source.
    Epochs are copied a block at a time (FIF epochs are read lazily).
    """
    from neurodata.format.timeseries import default_time_chunk

    picks = np.arange(len(epochs.ch_names))
    names, types, units, pos = _ch_meta(epochs, picks)
    sfreq = float(epochs.info["sfreq"])
    L = len(epochs.times)
    n_ep = len(epochs.events)
    tc = int(time_chunk or default_time_chunk(len(picks)))
    lock = -int(round(epochs.tmin * sfreq))
    a = dict(attrs)
    a["epochs"] = {"n_epochs": n_ep, "samples_per_epoch": L, "tmin": float(epochs.tmin),
                   "tmax": float(epochs.tmax),
                   "baseline": None if epochs.baseline is None else
                   [None if b is None else float(b) for b in epochs.baseline],
                   "source_event_samples": [int(v) for v in epochs.events[:, 0]]}
    w = writer.add_recording(name, names, types, sfreq, n_ep * L, units=units, positions=pos,
                             attrs=a, time_chunk=tc)
    per = max(1, max_bytes // (8 * max(1, len(picks)) * L))
    for e0 in range(0, n_ep, per):
        e1 = min(n_ep, e0 + per)
        block = epochs.get_data(item=np.arange(e0, e1))  # (epoch, channel, time)
        if block.shape[0] != e1 - e0:
            raise FormatError(f"epochs {e0}-{e1 - 1} could not all be read "
                              f"({block.shape[0]} returned; rejected on reading?)",
                              epochs.filename or name)
        w.write(block.transpose(1, 0, 2).reshape(len(picks), -1))
    code = epochs.events[:, 2].astype(np.int64)
    by_code = {}
    for label, c in epochs.event_id.items():
        by_code.setdefault(int(c), label)
    w.set_events(np.arange(n_ep, dtype=np.int64) * L + lock, code,
                 np.asarray([by_code.get(int(c), str(c)) for c in code], dtype=object))
    joins = np.arange(1, n_ep, dtype=np.float64) * L / sfreq
    w.set_annotations(joins, np.zeros(len(joins)), ["EDGE boundary"] * len(joins))
    w.close()
    return w


def _write_edf_group(writer, path, hdr, signals, name, attrs, raw, time_chunk=None):
    """A slower-rate EDF/BDF group, read from the records at its own rate (block by block)."""
    from neurodata.format.timeseries import default_time_chunk

    n_per_rec = int(hdr["n_samps"][signals[0]])
    sfreq = n_per_rec / hdr["record_s"]
    n = hdr["n_records"] * n_per_rec
    names = [hdr["labels"][s] for s in signals]
    # channel types as MNE assigned them to the same labels
    mtypes = dict(zip(raw.ch_names, raw.get_channel_types()))
    types = [mtypes.get(nm, "misc") for nm in names]
    units = ["" if t == "stim" else "V" if hdr["dims"][s].strip().lower() in _UNIT_SCALE else
             hdr["dims"][s] for s, t in zip(signals, types)]
    tc = int(time_chunk or default_time_chunk(len(signals)))
    w = writer.add_recording(name, names, types, sfreq, n, units=units, attrs=attrs,
                             time_chunk=tc)
    recs_per_block = max(1, _block_samples(len(signals), tc) // n_per_rec)
    stim = [k for k, t in enumerate(types) if t == "stim"]
    prev = np.zeros(len(stim))
    ev_s, ev_c = [], []
    for r0 in range(0, hdr["n_records"], recs_per_block):
        r1 = min(hdr["n_records"], r0 + recs_per_block)
        block = edf_read_signals(path, hdr, signals, r0, r1)
        w.write(block)
        for j, k in enumerate(stim):
            smp, code = stim_events(block[k], prev[j], r0 * n_per_rec)
            ev_s.append(smp)
            ev_c.append(code)
            prev[j] = block[k, -1]
    if ev_s:
        sample, code = np.concatenate(ev_s), np.concatenate(ev_c)
        order = np.argsort(sample, kind="stable")
        w.set_events(sample[order], code[order])
    onset, duration, desc = _annotations(raw)
    w.set_annotations(onset, duration, desc)
    w.close()


def add_file(writer, src, *, kind: str | None = None, name: str | None = None,
             deidentify: bool = False, salt: str = "", mixed_rate: str = "group",
             subject=None, session=None, positions=None, regions=None,
             time_chunk: int | None = None, extra_attrs: dict | None = None,
             raw=None) -> list[str]:
    """Add one EEG file's recording(s) to an open :class:`TimeseriesStoreWriter`.

    ``raw`` may be the file already opened by MNE (``preload=False``), e.g. by
    mne-bids with channel types from ``channels.tsv``. Returns the recording
    group names written (several for a mixed-rate file).
    """
    import mne

    src = Path(src)
    kind = kind or source_kind(src)
    if raw is None:
        raw = read_recording(src, kind)
    elif kind in ("edf", "bdf"):
        edf_header(src)
    # a clinical file is often named after the patient: no file name survives deidentification
    rec_name = name or (pseudonym(src.stem, salt) if deidentify else src.stem)
    attrs = _subject_attrs(raw, src, deidentify, salt, subject, session)
    attrs["source_format"] = kind
    attrs["source"] = pseudonym(src.name, salt) + src.suffix if deidentify else src.name
    attrs.update(extra_attrs or {})
    if mixed_rate not in ("group", "resample", "error"):
        raise ValueError("mixed_rate must be 'group', 'resample' or 'error'")
    if isinstance(raw, mne.BaseEpochs):
        write_epochs(writer, raw, rec_name, attrs, time_chunk=time_chunk)
        return [rec_name]
    rates = None
    if kind in ("edf", "bdf"):
        hdr = edf_header(src)
        data_sigs = np.nonzero(~hdr["annotation"])[0]
        rates = hdr["n_samps"][data_sigs]
    if rates is not None and len(np.unique(rates)) > 1:
        if mixed_rate == "error":
            listed = ", ".join(f"{r / hdr['record_s']:g}" for r in np.unique(rates))
            raise FormatError(f"channels recorded at different rates ({listed} Hz); convert "
                              "with mixed_rate='group' or 'resample'", src)
        if mixed_rate == "group":
            out = []
            top = rates.max()
            for r in sorted(np.unique(rates), reverse=True):
                sigs = data_sigs[rates == r]
                sfreq = r / hdr["record_s"]
                gname = f"{rec_name}@{sfreq:g}Hz"
                a = dict(attrs, rate_group=f"{sfreq:g}Hz")
                if r == top:  # MNE reads the top-rate channels unchanged
                    labels = [hdr["labels"][s] for s in sigs]
                    picks = [raw.ch_names.index(lb) for lb in labels if lb in raw.ch_names]
                    if len(picks) == len(sigs):
                        write_raw(writer, raw, gname, a, picks=picks, time_chunk=time_chunk)
                        out.append(gname)
                        continue
                _write_edf_group(writer, src, hdr, sigs, gname, a, raw, time_chunk)
                out.append(gname)
            return out
        attrs["resampled_by"] = "mne (slower channels upsampled to the highest rate)"
    elif kind == "gdf":
        # GDF also allows a rate per channel; MNE upsamples the slower ones and the
        # native samples are not read here, so say so (or refuse, if asked)
        n_samps = np.asarray(raw._raw_extras[0].get("n_samps", [1]))
        if len(np.unique(n_samps)) > 1:
            if mixed_rate == "error":
                raise FormatError("GDF channels recorded at different rates; convert with "
                                  "mixed_rate='resample'", src)
            attrs["resampled_by"] = "mne (slower channels upsampled to the highest rate)"
    write_raw(writer, raw, rec_name, attrs, positions=positions, regions=regions,
              time_chunk=time_chunk)
    return [rec_name]


def convert(src, out, attrs: dict | None = None, *, kind: str | None = None,
            deidentify: bool = False, pseudonym_salt: str = "", mixed_rate: str = "group",
            subject=None, session=None, time_chunk: int | None = None,
            data_codec: str | None = None, **bids_kw) -> None:
    """Convert an EEG file (or a BIDS folder) into a ``timeseries/1`` store at ``out``.

    Parameters
    ----------
    src : path-like
        EDF/EDF+, BDF, BrainVision ``.vhdr``, FIF, EEGLAB ``.set``, GDF file, or a BIDS
        folder. Epoched FIF (``-epo.fif``) and EEGLAB files become one recording of the
        epochs end to end (see :func:`write_epochs`).
    out : path-like
        Folder to create (``neurodata.convert`` passes a temporary one).
    attrs : dict, optional
        Extra root attributes.
    kind : str, optional
        Force the reader (one of :data:`KINDS`) instead of detecting it.
    deidentify : bool
        Drop the measurement date, subject details and experimenter; replace the
        subject and source file names by pseudonyms (sha256 of ``pseudonym_salt``
        and the identity: stable across files, not reversible without the salt).
    mixed_rate : {"group", "resample", "error"}
        Channels at different rates: one group per rate (default), one group
        upsampled by MNE, or an error.
    subject, session : str, optional
        Identifiers to record (BIDS entities fill them in for BIDS folders).
    time_chunk : int, optional
        Samples per stored chunk (default: about 256 KiB per chunk).
    data_codec : {"none", "lz4", "zstd"}, optional
        Compression of the signal (``-o data_codec=zstd`` on the command line). Default
        raw ("none"): windows read fastest; "zstd" makes the smallest store (see
        :data:`neurodata.format.timeseries.DATA_CODECS`).
    **bids_kw
        For BIDS folders: ``datatype``, ``subjects``, ``tasks`` (see
        :func:`neurodata.loaders.eeg_bids.convert_bids`).
    """
    from neurodata.format.store import file_sha256, provenance
    from neurodata.format.timeseries import TimeseriesStoreWriter

    src = Path(src)
    if src.is_dir():
        from neurodata.loaders.eeg_bids import convert_bids

        convert_bids(src, out, attrs=attrs, deidentify=deidentify, pseudonym_salt=pseudonym_salt,
                     mixed_rate=mixed_rate, time_chunk=time_chunk, data_codec=data_codec,
                     **bids_kw)
        return
    if bids_kw:
        raise TypeError(f"unexpected arguments {sorted(bids_kw)}")
    kind = kind or source_kind(src)
    if kind is None:
        raise FormatError("not an EEG file MNE reads (EDF, BDF, BrainVision, FIF, EEGLAB, GDF)",
                          src)
    w = TimeseriesStoreWriter(out, attrs=attrs, data_codec=data_codec)
    add_file(w, src, kind=kind, deidentify=deidentify, salt=pseudonym_salt,
             mixed_rate=mixed_rate, subject=subject, session=session, time_chunk=time_chunk)
    files = companion_files(src, kind)
    prov = provenance(files, loader=loader_tag(kind), checksums=[file_sha256(f) for f in files])
    if deidentify:
        for entry in prov["sources"]:
            entry["name"] = pseudonym(entry["name"], pseudonym_salt) + Path(entry["name"]).suffix
    w.close(prov)


def loader_tag(kind: str) -> str:
    """``"<kind>/<format version> (mne X.Y)"`` for provenance."""
    import mne

    return f"{kind}/{KIND_VERSIONS.get(kind, kind)} (mne {mne.__version__})"


def companion_files(src: Path, kind: str) -> list[Path]:
    """The source file plus the files it refers to (BrainVision .vmrk/.eeg, EEGLAB .fdt)."""
    files = [src]
    if kind == "brainvision":
        text = src.read_bytes().decode("latin-1", "replace")
        for key in ("DataFile", "MarkerFile"):
            m = re.search(rf"^{key}=(.+?)\s*$", text, re.M)
            if m and (src.parent / m.group(1)).is_file():
                files.append(src.parent / m.group(1))
    elif kind == "eeglab":
        fdt = src.with_suffix(".fdt")
        if fdt.is_file():
            files.append(fdt)
    return files


__all__ = ["VERSION", "KINDS", "sniff", "source_kind", "convert", "add_file", "write_raw",
           "write_epochs", "read_raw", "read_recording", "edf_header", "edf_read_signals", "gdf_header", "stim_events", "pseudonym"]
