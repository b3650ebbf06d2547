"""What every transform shares: calling conventions, parameters, randomness.

A transform is a dataclass whose fields are its parameters. It accepts a
structured event array (one sample, returned as the same kind) or an
:class:`EventBatch` (all samples in one vectorised pass). Subclasses
implement ``_apply(batch, rng)``.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from neurodata.events import to_structured
from neurodata.transforms._batch import EventBatch


def jsonable(v):
    """Parameters as JSON types (tuples -> lists, numpy scalars -> python, dtypes -> str)."""
    if isinstance(v, np.random.Generator):
        return "<Generator>"
    if isinstance(v, (np.dtype, type)):
        return np.dtype(v).str if isinstance(v, np.dtype) or issubclass(v, np.generic) else str(v)
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [jsonable(e) for e in v]
    if isinstance(v, dict):
        return {str(k): jsonable(e) for k, e in v.items()}
    if hasattr(v, "params") and callable(v.params):
        return v.params()
    return v


class Transform:
    """Base class; subclasses are dataclasses."""

    deterministic: ClassVar[bool] = True

    def params(self) -> dict:
        """The transform's name and parameters as a JSON-able dict (for pipeline hashing)."""
        out = {"name": type(self).__name__}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            out[f.name] = jsonable(getattr(self, f.name))
        return out

    def __call__(self, events):
        if isinstance(events, EventBatch):
            return self._apply(events, self._generator())
        batch = EventBatch.single(events, getattr(self, "sensor_size", None))
        return self._unwrap(self._apply(batch, self._generator()))

    def _generator(self):
        return None

    def _unwrap(self, out):
        return out

    def _apply(self, batch: EventBatch, rng):  # pragma: no cover - abstract
        raise NotImplementedError


class EventTransform(Transform):
    """Events in, events out (filters, geometry, augmentation)."""

    def _unwrap(self, out: EventBatch):
        return to_structured(out.x, out.y, out.t, out.p)


class RandomMixin:
    """Random transforms: ``seed`` is an int, a numpy Generator or None (fresh entropy).

    An int seed creates the transform's own generator once, so the same seed
    gives the same sequence of outputs; successive calls draw new values.
    """

    deterministic: ClassVar[bool] = False

    def __post_init__(self):
        s = getattr(self, "seed", None)
        self._rng = s if isinstance(s, np.random.Generator) else np.random.default_rng(s)

    def _generator(self):
        return self._rng


def resolve_sensor(transform_size, batch: EventBatch, need=True):
    """Sensor size ``(W, H, P)``: the transform's, else the batch's, else inferred from the data."""
    size = transform_size if transform_size is not None else batch.sensor_size
    if size is None:
        if not need:
            return None
        if batch.n_events == 0:
            return (1, 1, 2)
        return (int(batch.x.max()) + 1, int(batch.y.max()) + 1, 2)
    size = tuple(int(v) for v in size)
    if len(size) == 2:
        size = size + (2,)
    return size


def per_sample(value, B, rng, integer=False):
    """A scalar parameter, or a ``(low, high)`` range drawn once per sample (vectorised)."""
    if isinstance(value, (tuple, list)):
        lo, hi = value
        v = lo + (hi - lo) * rng.random(B)
        return v.astype(np.int64) if integer else v
    return np.full(B, value, dtype=np.int64 if integer else np.float64)
