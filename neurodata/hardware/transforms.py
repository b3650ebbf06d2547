"""Hardware-layer steps as transforms, so ``neurodata.stream`` feeds simulators too.

They follow the transform conventions of :mod:`neurodata.transforms` (one
sample or a packed :class:`~neurodata.transforms.EventBatch` in one
vectorised pass; ``params()`` for cache keys):

- :class:`QuantizeTime`: events moved to the start of their hardware
  timestep, with an input budget per step and sample; the batch's
  ``meta["quantize"]`` holds the per-sample counts each policy changed;
- :class:`ToSpikeRaster`: ``(T, N)`` rasters per sample, ``(B, T, N)`` for a
  batch (the stream hands them on time-major as ``[T, B, N]``);
- :class:`WorkloadStats`: one record of workload figures per sample
  (structured array), to stream beside the data with the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurodata.hardware.quantize import flat_address, quantize
from neurodata.hardware.simulators import to_raster
from neurodata.hardware.workload import workload_stats
from neurodata.transforms._base import EventTransform, Transform, resolve_sensor
from neurodata.transforms._batch import EventBatch


def _batch_steps(batch: EventBatch, dt: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-sample step of each event (step 0 at the sample's first event), sample ids, span."""
    sample = batch.sample_index()
    counts = batch.counts
    first = np.zeros(len(counts), np.int64)
    nz = counts > 0
    first[nz] = batch.t[batch.offsets[:-1][nz]]
    local = (batch.t - first[sample]) // dt if batch.n_events else np.zeros(0, np.int64)
    span = int(local.max()) + 2 if len(local) else 1
    return local, sample, span


@dataclass
class QuantizeTime(EventTransform):
    """Move events to the start of their ``dt`` step, with a per-step input budget.

    Parameters
    ----------
    dt : int
        Hardware timestep in microseconds.
    budget : int, optional
        Maximum events per step of one sample; ``None`` for no limit.
    policy : {"drop", "defer", "saturate"}
        What happens to events over budget (see :mod:`neurodata.hardware.quantize`).
    sensor_size : tuple, optional
        Needed by ``"saturate"`` (addresses).
    """

    dt: int = 1000
    budget: int | None = None
    policy: str = "drop"
    sensor_size: tuple | None = None

    def _apply(self, batch: EventBatch, rng):
        local, sample, span = _batch_steps(batch, self.dt)
        # samples laid end to end on one step axis: budgets stay per sample
        glob = sample * span + local
        addr = None
        if self.policy == "saturate":
            addr = flat_address(batch.x, batch.y, batch.p, resolve_sensor(self.sensor_size, batch))
        keep, step, report = quantize(glob, 1, addr, t0=0, budget=self.budget, policy=self.policy)
        out_sample = sample[keep]
        counts = np.bincount(out_sample, minlength=len(batch))
        offsets = np.zeros(len(batch) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        first_t = np.zeros(len(batch), np.int64)
        nz = batch.counts > 0
        first_t[nz] = batch.t[batch.offsets[:-1][nz]]
        t = first_t[out_sample] + (step - out_sample * span) * self.dt
        out = batch.replace(batch.x[keep], batch.y[keep], t, batch.p[keep], offsets)
        out.meta = dict(batch.meta)
        out.meta["quantize"] = {"report": report.as_dict(),
                                "dropped_per_sample": batch.counts - counts
                                if self.policy != "defer" else np.zeros(len(batch), np.int64)}
        return out


@dataclass
class ToSpikeRaster(Transform):
    """Spike rasters ``(T, N)`` with ``N = width * height * polarities`` inputs.

    Parameters
    ----------
    sensor_size : tuple, optional
    dt : int
        Timestep (us); step 0 starts at each sample's first event.
    n_steps : int
        Steps kept (later events are cut off; shorter samples are zero-padded).
    budget, policy :
        Input budget per step, as in :class:`QuantizeTime`.
    dtype : str
        ``"bool"`` marks spikes; an integer dtype counts them per step.
    """

    sensor_size: tuple | None = None
    dt: int = 1000
    n_steps: int = 100
    budget: int | None = None
    policy: str = "drop"
    dtype: str = "bool"

    def _apply(self, batch: EventBatch, rng):
        sensor = resolve_sensor(self.sensor_size, batch)
        if self.budget is not None:
            batch = QuantizeTime(self.dt, self.budget, self.policy, sensor)(batch)
        local, sample, _ = _batch_steps(batch, self.dt)
        n = sensor[0] * sensor[1] * sensor[2]
        # events outside the sensor, or after the last kept step of their sample, are left out
        ok = ((batch.x < sensor[0]) & (batch.y < sensor[1]) & (batch.p < sensor[2])
              & (local < self.n_steps))
        addr = flat_address(batch.x[ok], batch.y[ok], batch.p[ok], sensor)
        rows = sample[ok] * self.n_steps + local[ok]
        r = to_raster(rows, addr, len(batch) * self.n_steps, n,
                      dtype=bool if self.dtype == "bool" else np.dtype(self.dtype))
        return r.reshape(len(batch), self.n_steps, n)

    def _unwrap(self, out):
        return out[0]


WORKLOAD_DTYPE = np.dtype([
    ("n_events", "i8"), ("duration_us", "i8"), ("event_rate_hz", "f8"), ("active_inputs", "i8"),
    ("spatial_sparsity", "f8"), ("n_steps", "i8"), ("active_steps", "i8"),
    ("temporal_sparsity", "f8"), ("peak_events_per_step", "i8"), ("mean_events_per_step", "f8"),
    ("activation_sparsity", "f8"), ("synaptic_ops", "i8"),
])


@dataclass
class WorkloadStats(Transform):
    """One record of workload figures per sample (:data:`WORKLOAD_DTYPE`).

    Stream it beside the data with the same ``seed`` to get the figures of
    exactly the samples of each data batch.
    """

    sensor_size: tuple | None = None
    dt: int = 1000
    fan_out: int = 1

    def _apply(self, batch: EventBatch, rng):
        sensor = resolve_sensor(self.sensor_size, batch)
        st = workload_stats(batch.x, batch.y, batch.t, batch.p, sensor, self.dt, batch.offsets,
                            self.fan_out)
        out = np.empty(len(batch), WORKLOAD_DTYPE)
        for name in WORKLOAD_DTYPE.names:
            out[name] = st[name]
        return out

    def _unwrap(self, out):
        return out[0]
