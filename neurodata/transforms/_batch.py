"""Packed batches of event samples: four columns plus per-sample offsets.

A batch of ``B`` samples is held as the concatenated ``x, y, t, p`` columns
and ``offsets`` (``B + 1`` int64, sample ``i`` is ``offsets[i]:offsets[i+1]``),
the layout an events store partition is read in. Transforms run one
vectorised pass over all samples instead of a Python loop per sample.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from neurodata.events import COLUMN_DTYPES, COLUMNS, columns, to_structured


@dataclass
class EventBatch:
    """``B`` event samples packed into columns plus offsets.

    Parameters
    ----------
    x, y, t, p : numpy.ndarray
        Concatenated event columns (uint16, uint16, int64 microseconds, uint8).
    offsets : numpy.ndarray
        ``B + 1`` non-decreasing int64 positions; sample ``i`` is
        ``offsets[i]:offsets[i + 1]``.
    labels : numpy.ndarray, optional
        One label per sample (or soft labels ``(B, n_classes)`` after
        :class:`~neurodata.transforms.EventMix`).
    sensor_size : tuple, optional
        ``(width, height, polarities)`` shared by all samples.
    meta : dict
        Extra per-batch information added by transforms (e.g. mixing partners).
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None = None
    sensor_size: tuple | None = None
    meta: dict = field(default_factory=dict)

    # -- construction -------------------------------------------------------
    @classmethod
    def from_columns(cls, x, y=None, t=None, p=None, *, offsets, labels=None,
                     sensor_size=None) -> "EventBatch":
        """Wrap existing columns without copying them.

        ``x`` may also be a dict with keys ``x, y, t, p`` (the form
        :meth:`EventStoreReader.read_samples` returns). Columns already in the
        neurodata dtypes are used as they are (no copy); others are cast.
        """
        if isinstance(x, dict):
            cols = x
            x, y, t, p = (cols[k] for k in COLUMNS)
        x, y, t, p = columns((x, y, t, p))
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(t):
            raise ValueError(f"offsets must be B+1 positions from 0 to {len(t)}; "
                             f"got {offsets[:1]}..{offsets[-1:]} (length {len(offsets)})")
        if len(offsets) > 1 and np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must be non-decreasing")
        if not (len(x) == len(y) == len(t) == len(p)):
            raise ValueError("x, y, t, p must have the same length")
        return cls(x, y, t, p, offsets, None if labels is None else np.asarray(labels),
                   None if sensor_size is None else tuple(int(v) for v in sensor_size))

    @classmethod
    def from_samples(cls, samples: Sequence, labels=None, sensor_size=None) -> "EventBatch":
        """Concatenate structured event arrays (or column dicts) into one batch."""
        cols = [columns(s) for s in samples]
        counts = np.array([len(c[2]) for c in cols], dtype=np.int64)
        offsets = np.zeros(len(cols) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        packed = []
        for k, name in enumerate(COLUMNS):
            if cols:
                packed.append(np.concatenate([c[k] for c in cols]))
            else:
                packed.append(np.empty(0, COLUMN_DTYPES[name]))
        return cls.from_columns(*packed, offsets=offsets, labels=labels,
                                sensor_size=sensor_size)

    @classmethod
    def single(cls, events, sensor_size=None) -> "EventBatch":
        """A batch of one sample viewing ``events`` (no copy for neurodata dtypes)."""
        x, y, t, p = columns(events)
        return cls.from_columns(x, y, t, p, offsets=np.array([0, len(t)], np.int64),
                                sensor_size=sensor_size)

    # -- access ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        """Total number of events over all samples."""
        return int(self.offsets[-1])

    @property
    def counts(self) -> np.ndarray:
        """Events per sample (int64, length ``B``)."""
        return np.diff(self.offsets)

    def sample_index(self) -> np.ndarray:
        """The sample each event belongs to (int64, length ``n_events``)."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.counts)

    def sample(self, i: int) -> np.ndarray:
        """Sample ``i`` as a structured array (a copy)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return to_structured(self.x[a:b], self.y[a:b], self.t[a:b], self.p[a:b])

    def split(self) -> list[np.ndarray]:
        """All samples as a list of structured arrays (copies)."""
        whole = to_structured(self.x, self.y, self.t, self.p)
        return [whole[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def replace(self, x=None, y=None, t=None, p=None, offsets=None, **kw) -> "EventBatch":
        """A new batch sharing the columns that are not given."""
        out = EventBatch(self.x if x is None else x, self.y if y is None else y,
                         self.t if t is None else t, self.p if p is None else p,
                         self.offsets if offsets is None else offsets,
                         kw.get("labels", self.labels), kw.get("sensor_size", self.sensor_size),
                         dict(kw.get("meta", self.meta)))
        return out

    def take(self, keep: np.ndarray) -> "EventBatch":
        """Keep the events where the boolean mask ``keep`` is true (offsets updated)."""
        from neurodata.transforms._kernels import compact

        if keep.all():
            return self.replace()
        x, y, t, p, offsets = compact(self.x, self.y, self.t, self.p, keep, self.offsets)
        return self.replace(x, y, t, p, offsets)

    def __repr__(self) -> str:
        return (f"EventBatch(samples={len(self)}, events={self.n_events}, "
                f"sensor_size={self.sensor_size})")
