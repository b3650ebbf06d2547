"""Event arrays: the in-memory form of DVS/ATIS/Prophesee and spike-audio events.

Inside neurodata events travel as separate ``x, y, t, p`` columns (copying
packed records costs more than most transforms). At the API edge they are a
numpy structured array with :data:`EVENT_DTYPE`, the layout tonic users know.

Conventions (also in docs/format.md): ``x`` is the column (0..width-1),
``y`` the row (0..height-1), ``t`` integer microseconds as recorded (never
re-zeroed), ``p`` 0 = OFF and 1 = ON. Sensor sizes are ``(width, height,
polarities)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
COLUMNS = ("x", "y", "t", "p")
COLUMN_DTYPES = {name: EVENT_DTYPE[name] for name in COLUMNS}


def to_structured(x, y, t, p) -> np.ndarray:
    """Pack columns into a structured array with :data:`EVENT_DTYPE`."""
    n = len(t)
    out = np.empty(n, dtype=EVENT_DTYPE)
    out["x"] = x
    out["y"] = y
    out["t"] = t
    out["p"] = p
    return out


def columns(events) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x, y, t, p)`` from a structured array, dict or 4-tuple.

    Accepts tonic-style records (int16 x/y, bool or int polarities, float or
    int t) and casts to the neurodata dtypes. Polarity values -1/0/1 are mapped
    so that anything > 0 is ON.
    """
    if isinstance(events, np.ndarray) and events.dtype.names:
        names = events.dtype.names
        if "x" not in names or "t" not in names:
            raise ValueError(f"structured events need fields x, t (and y, p); got {names}")
        x, t = events["x"], events["t"]
        y = events["y"] if "y" in names else np.zeros(len(events), np.uint16)
        p = events["p"] if "p" in names else np.zeros(len(events), np.uint8)
    elif isinstance(events, dict):
        x, t = events["x"], events["t"]
        y = events.get("y", np.zeros(len(t), np.uint16))
        p = events.get("p", np.zeros(len(t), np.uint8))
    else:
        x, y, t, p = events
    return _cast(x, "x"), _cast(y, "y"), _cast(t, "t"), _polarity(p)


def _cast(a, name):
    a = np.asarray(a)
    dt = COLUMN_DTYPES[name]
    return a if a.dtype == dt else a.astype(dt)


def _polarity(p):
    p = np.asarray(p)
    if p.dtype == np.uint8:
        return p
    if p.dtype == bool:
        return p.view(np.uint8)
    return (p > 0).astype(np.uint8)


@dataclass
class EventRecording:
    """What an event loader returns: columns plus what the file says about them.

    A file may hold one sample (most camera formats) or many (SHD-style HDF5
    spike sets); ``starts``/``counts``/``labels`` describe the samples when
    there are several, and are ``None`` for a single-sample file.
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray
    sensor_size: tuple[int, int, int] | None = None
    format: str = ""
    starts: np.ndarray | None = None
    counts: np.ndarray | None = None
    labels: np.ndarray | None = None
    class_names: Sequence[str] | None = None
    split: str | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t)

    @property
    def events(self) -> np.ndarray:
        """The events as one structured array (a copy)."""
        return to_structured(self.x, self.y, self.t, self.p)

    def infer_sensor_size(self) -> tuple[int, int, int]:
        """``sensor_size`` if the file stated it, else max coordinate + 1."""
        if self.sensor_size is not None:
            return tuple(int(v) for v in self.sensor_size)
        w = int(self.x.max()) + 1 if len(self.x) else 1
        h = int(self.y.max()) + 1 if len(self.y) else 1
        return (w, h, 2)


def empty_events() -> np.ndarray:
    """A zero-length structured event array."""
    return np.empty(0, dtype=EVENT_DTYPE)
