"""Lazy windows over a time-series store, for training loops and the streaming pipeline.

A :class:`WindowSource` is a table of windows (recording, first sample,
label) plus a reader: ``read(indices)`` groups the requested windows by
recording and reads each store chunk they overlap once, straight into the
batch. A 4 s window out of a ten-hour recording therefore costs one or two
chunks, never the recording.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from neurodata.errors import NeurodataError

__all__ = ["WindowSource"]


class WindowSource:
    """Fixed-length or event-locked windows of a time-series store.

    Parameters
    ----------
    ds : TimeseriesDataset or path
        The store (``neurodata.open(path)``).
    length, stride : float, optional
        Fixed-length windows: duration and step in seconds (``stride``
        defaults to ``length``: no overlap). Windows that would run past
        the end of a recording are dropped.
    events : sequence or dict, optional
        Event-locked windows: event codes (int) or labels (str) to lock on, or a
        dict mapping them to class indices. ``None`` with ``tmin``/``tmax``
        locks on every event.
    tmin, tmax : float
        Event-locked window span in seconds around each event; like MNE, the
        window holds ``round(tmax*sfreq) - round(tmin*sfreq) + 1`` samples.
    source : {"events", "annotations"}
        Where event-locked windows find their events (the stim-derived events
        table or the annotation table, matched by description).
    baseline : (float | None, float | None), optional
        Interval (s, relative to the event) whose per-channel mean is subtracted;
        ``None`` ends mean the window start / the event. Fixed-length
        windows take the interval relative to the window start.
    picks : sequence of int or str, optional
        Channels to keep (indices or names; see
        :func:`neurodata.transforms.signal.pick_channels` for type/regex picks).
    recordings : sequence of int or str, optional
        Recordings to use (default all). They must share one sampling rate.
    transform : callable, optional
        Applied to each batch ``(B, channel, time)`` before cropping; if it has
        a ``margin`` attribute (samples), that many extra samples are read on
        each side first, so filters see real signal instead of edges.
    augment : callable, optional
        Applied to the cropped, baseline-corrected batch (e.g. a seeded
        augmentation from :mod:`neurodata.transforms.signal`).
    time_major : bool
        Return ``(B, time, channel)`` instead of ``(B, channel, time)``.
    """

    def __init__(self, ds, length: float | None = None, stride: float | None = None, *,
                 events=None, tmin: float | None = None, tmax: float | None = None,
                 source: str = "events", baseline=None, picks=None, recordings=None,
                 transform: Callable | None = None, augment: Callable | None = None,
                 time_major: bool = False,
                 storage_options: dict | None = None, max_partition_windows: int | None = None):
        from neurodata.format.timeseries import TimeseriesDataset, open_store

        self._init_kw = dict(length=length, stride=stride, events=events, tmin=tmin, tmax=tmax,
                             source=source, baseline=baseline, picks=picks,
                             recordings=recordings, transform=transform, augment=augment,
                             time_major=time_major,
                             storage_options=storage_options,
                             max_partition_windows=max_partition_windows)
        self.ds = ds if isinstance(ds, TimeseriesDataset) else open_store(ds, storage_options)
        self.url = self.ds.path
        self.storage_options = storage_options
        self.max_partition_windows = max_partition_windows
        sel = range(len(self.ds)) if recordings is None else recordings
        self.recordings = [self.ds[r] for r in sel]
        if not self.recordings:
            raise NeurodataError("no recording selected", self.ds.path)
        rates = sorted({r.sfreq for r in self.recordings})
        if len(rates) > 1:
            raise NeurodataError(
                f"selected recordings have different sampling rates {rates}; select "
                "recordings= of one rate or resample first", self.ds.path)
        self.sfreq = rates[0]
        names0 = self.recordings[0].ch_names
        self.picks = self._resolve_picks(picks, names0)
        for r in self.recordings[1:]:
            if [r.ch_names[i] for i in self.picks] != [names0[i] for i in self.picks]:
                raise NeurodataError(f"recording {r.name!r} has other channels than "
                                     f"{self.recordings[0].name!r}; pass picks=", self.ds.path)
        self.ch_names = [names0[i] for i in self.picks]
        self.ch_types = [self.recordings[0].ch_types[i] for i in self.picks]
        # like MNE, baseline correction leaves stim channels alone
        self._baseline_rows = np.array([t != "stim" for t in self.ch_types])
        self.transform, self.augment = transform, augment
        self.time_major = time_major
        self.margin = int(getattr(transform, "margin", 0) or 0)
        self.class_names: list[str] = []
        if tmin is not None or tmax is not None or events is not None:
            if tmin is None or tmax is None:
                raise ValueError("event-locked windows need tmin and tmax")
            self._event_locked(events, float(tmin), float(tmax), source)
            self.event_offset = -int(round(tmin * self.sfreq))
        else:
            if length is None:
                raise ValueError("give length (fixed windows) or tmin/tmax (event-locked windows)")
            self._fixed(float(length), float(stride if stride is not None else length))
            self.event_offset = 0
        self.baseline = self._baseline_samples(baseline)

    # ------------------------------------------------------------------ window tables
    def _resolve_picks(self, picks, names) -> np.ndarray:
        if picks is None:
            return np.arange(len(names))
        out = []
        for p in picks:
            if isinstance(p, str):
                if p not in names:
                    raise NeurodataError(f"no channel {p!r}", self.ds.path)
                out.append(names.index(p))
            else:
                out.append(int(p))
        return np.asarray(out, np.int64)

    def _fixed(self, length: float, stride: float) -> None:
        L = int(round(length * self.sfreq))
        S = int(round(stride * self.sfreq))
        if L <= 0 or S <= 0:
            raise ValueError("window length and stride must be at least one sample")
        self.length = L
        recs, starts = [], []
        for k, r in enumerate(self.recordings):
            s = np.arange(0, r.n_times - L + 1, S, dtype=np.int64)
            recs.append(np.full(len(s), k, np.int64))
            starts.append(s)
        self.rec_index = np.concatenate(recs)
        self.starts = np.concatenate(starts)
        self.labels = np.full(len(self.starts), -1, np.int64)

    def _event_locked(self, events, tmin: float, tmax: float, source: str) -> None:
        a = int(round(tmin * self.sfreq))
        b = int(round(tmax * self.sfreq))
        if b < a:
            raise ValueError("tmax must not be before tmin")
        self.length = b - a + 1
        mapping = None
        if isinstance(events, dict):
            mapping = dict(events)
        elif events is not None:
            keys = list(events)
            mapping = {key: i for i, key in enumerate(keys)}
        recs, starts, labels = [], [], []
        seen: dict = {}
        for k, r in enumerate(self.recordings):
            if source == "events":
                ev = r.events()
                smp, code, text = ev["sample"], ev["code"], ev["label"].astype(str)
            elif source == "annotations":
                an = r.annotations()
                smp = np.round(an["onset"] * r.sfreq).astype(np.int64)
                text = an["description"].astype(str)
                code = np.full(len(smp), -1, np.int64)
            else:
                raise ValueError("source must be 'events' or 'annotations'")
            if mapping is None:
                keys = text
                for key in keys:
                    seen.setdefault(key, len(seen))
                lab = np.array([seen[key] for key in keys], np.int64)
                keep = np.ones(len(smp), bool)
            else:
                lab = np.full(len(smp), -1, np.int64)
                for key, cls in mapping.items():
                    hit = (code == key) if isinstance(key, (int, np.integer)) else (text == str(key))
                    lab[hit] = cls
                keep = lab >= 0
            st = smp + a
            keep &= (st >= 0) & (st + self.length <= r.n_times)
            recs.append(np.full(int(keep.sum()), k, np.int64))
            starts.append(st[keep])
            labels.append(lab[keep])
        self.rec_index = np.concatenate(recs)
        self.starts = np.concatenate(starts).astype(np.int64)
        self.labels = np.concatenate(labels)
        if mapping is None:
            self.class_names = list(seen)
        else:
            names = {}
            for key, cls in mapping.items():
                names.setdefault(int(cls), str(key))
            self.class_names = [names.get(i, "") for i in range(max(names, default=-1) + 1)]
        order = np.lexsort((self.starts, self.rec_index))
        self.rec_index, self.starts, self.labels = (self.rec_index[order], self.starts[order],
                                                    self.labels[order])

    def _baseline_samples(self, baseline):
        if baseline is None:
            return None
        b0, b1 = baseline
        i0 = 0 if b0 is None else int(round(b0 * self.sfreq)) + self.event_offset
        i1 = (self.event_offset if self.event_offset else self.length - 1) if b1 is None \
            else int(round(b1 * self.sfreq)) + self.event_offset
        i0, i1 = max(0, i0), min(self.length - 1, i1)
        if i1 < i0:
            raise ValueError(f"baseline {baseline} lies outside the window")
        return i0, i1 + 1

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.starts)

    def __repr__(self) -> str:
        return (f"<WindowSource {len(self)} windows of {self.length} samples x "
                f"{len(self.picks)} channels at {self.sfreq:g} Hz>")

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one window: ``(channel, time)`` (or ``(time, channel)`` time-major)."""
        s = (len(self.picks), self.length)
        return s[::-1] if self.time_major else s

    def __getitem__(self, i):
        x, y = self.read([int(i)])
        return x[0], int(y[0])

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``indices`` as ``(array (B, channel, time) float32, labels (B,) int64)``.

        Only the chunks the windows overlap are read, each once per call.
        """
        idx = np.asarray(indices, np.int64).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"window index out of range for {len(self)} windows")
        idx = np.where(idx < 0, idx + len(self), idx)
        m, L = self.margin, self.length
        full = L + 2 * m
        out = np.empty((len(idx), len(self.picks), full), np.float32)
        order = np.lexsort((self.starts[idx], self.rec_index[idx]))
        rec_sorted = self.rec_index[idx][order]
        st_sorted = self.starts[idx][order] - m
        picks = None if len(self.picks) == self.recordings[0].n_channels and \
            np.array_equal(self.picks, np.arange(len(self.picks))) else self.picks
        # per recording, the windows inside it in one call (each chunk is read once for
        # all the windows overlapping it, straight into the batch); windows whose margin
        # reaches past an end are read clipped and padded with the edge samples
        cuts = np.flatnonzero(rec_sorted[1:] != rec_sorted[:-1]) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(order)]):
            rec = self.recordings[int(rec_sorted[a])]
            st, rows = st_sorted[a:b], order[a:b]
            inside = (st >= 0) & (st + full <= rec.n_times)
            if inside.all():
                rec.read_windows(st, full, out, rows, picks)
                continue
            if inside.any():
                rec.read_windows(st[inside], full, out, rows[inside], picks)
            for s0, j in zip(st[~inside].tolist(), rows[~inside].tolist()):
                lo, hi = max(0, s0), min(rec.n_times, s0 + full)
                block = rec.read(lo, hi, channels=picks)
                out[j] = np.pad(block, ((0, 0), (lo - s0, s0 + full - hi)), mode="edge")
        if self.transform is not None:
            out = np.asarray(self.transform(out), np.float32)
            if m:
                out = out[..., m:m + L]
        elif m:
            out = out[..., m:m + L]
        if self.baseline is not None:
            i0, i1 = self.baseline
            mean = out[..., i0:i1].mean(axis=-1, keepdims=True, dtype=np.float64)
            mean[:, ~self._baseline_rows] = 0.0
            out = (out - mean).astype(np.float32)
        if self.augment is not None:
            out = np.asarray(self.augment(out), np.float32)
        if self.time_major:
            out = np.ascontiguousarray(np.swapaxes(out, 1, 2))
        return out, self.labels[idx]

    @property
    def time_axis(self) -> int:
        """Axis of time in a batch from :meth:`read`, for time-major streaming."""
        return 1 if self.time_major else -1

    # ------------------------------------------------------------------ stream source protocol
    # (neurodata.pipeline.source.StreamSource): pickled to workers as path + parameters
    def __getstate__(self):
        return {"url": self.url, "kw": self._init_kw}

    def __setstate__(self, state):
        self.__init__(state["url"], **state["kw"])

    def partitions(self) -> np.ndarray:
        """Partition bounds ``(n_partitions + 1,)``: contiguous window ranges, one recording each."""
        ranges = self.partition_ranges(self.max_partition_windows)
        return np.array([a for a, _ in ranges] + [len(self)], np.int64)

    def read_partition(self, k: int):
        """Windows of partition ``k``: ``(array (B, channel, time), labels, window ids)``."""
        b = self.partitions()
        ids = np.arange(int(b[k]), int(b[k + 1]), dtype=np.int64)
        x, y = self.read(ids)
        return x, y, ids

    def content_hash(self) -> str:
        """sha256 over the store metadata, the window table and the parameters."""
        import hashlib

        h = hashlib.sha256()
        h.update(repr(sorted((k, repr(v)) for k, v in self.ds.attrs.items())).encode())
        for r in self.recordings:
            h.update(f"{r.name}{r.data.shape}{r.sfreq}{r.ch_names}".encode())
        for arr in (self.rec_index, self.starts, self.labels, self.picks):
            h.update(np.ascontiguousarray(arr).tobytes())
        params = {k: v for k, v in self._init_kw.items() if k not in ("transform", "augment")}
        h.update(repr(sorted(params.items(), key=lambda kv: kv[0])).encode())
        for t in (self.transform, self.augment):
            if t is not None:
                h.update(repr(t.params() if hasattr(t, "params") else t).encode())
        return h.hexdigest()

    def describe(self, sample_ids) -> list[str]:
        """``"window i (recording @ t s)"`` for error messages."""
        ids = np.asarray(sample_ids, np.int64)
        return [f"window {i} ({self.recordings[int(self.rec_index[i])].name} @ "
                f"{self.starts[i] / self.sfreq:.3f} s)" for i in ids.tolist()]

    def partition_ranges(self, max_windows: int | None = None) -> list[tuple[int, int]]:
        """Contiguous ranges ``[start, stop)`` of window indices, one recording each.

        Windows are ordered by recording then time, so each range covers one
        contiguous stretch of one recording: a worker reading a range decodes
        each chunk once. ``max_windows`` caps a range (default: the windows
        spanning about one store shard).
        """
        from neurodata.format.timeseries import CHUNKS_PER_SHARD

        if max_windows is None:
            span = self.recordings[0].time_chunk * CHUNKS_PER_SHARD
            step = np.median(np.diff(self.starts)) if len(self.starts) > 1 else self.length
            max_windows = max(1, int(span // max(1, step)))
        out = []
        bounds = np.nonzero(np.diff(self.rec_index))[0] + 1
        edges = np.concatenate([[0], bounds, [len(self)]]).astype(int)
        for a, b in zip(edges[:-1], edges[1:]):
            for s in range(a, b, max_windows):
                out.append((s, min(b, s + max_windows)))
        return out

    def window_table(self) -> dict:
        """``recording`` (name), ``start`` (sample), ``label`` of every window."""
        return {"recording": np.array([self.recordings[k].name for k in self.rec_index], object),
                "start": self.starts.copy(), "label": self.labels.copy()}
