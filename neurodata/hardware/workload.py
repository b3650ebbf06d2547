"""Workload statistics of spike inputs: what a chip or a first layer must handle.

Per sample and per batch, vectorised over a packed batch (columns plus
offsets): event count and rate, spatial sparsity (share of inputs that never
fire), temporal sparsity (share of timesteps without input), peak and mean
events per step, and the synaptic operations a first layer of given fan-out
receives (events x fan-out) -- the inputs NeuroBench-style activation-sparsity
and synaptic-operation counts need.
"""
from __future__ import annotations

import numpy as np

from neurodata.hardware.quantize import flat_address


def workload_stats(x, y, t, p, sensor_size, dt: int, offsets=None, fan_out: int = 1) -> dict:
    """Statistics for each sample of a packed batch and for the batch.

    Parameters
    ----------
    x, y, t, p : arrays
        Event columns; samples concatenated, each sorted in time.
    sensor_size : (width, height, polarities)
    dt : int
        Timestep (us) used for per-step figures.
    offsets : array of int, optional
        ``B + 1`` sample boundaries; one sample when omitted.
    fan_out : int
        Synapses per input of the first layer.

    Returns
    -------
    dict with per-sample arrays (``n_events``, ``duration_us``,
    ``event_rate_hz``, ``active_inputs``, ``spatial_sparsity``, ``n_steps``,
    ``active_steps``, ``temporal_sparsity``, ``peak_events_per_step``,
    ``mean_events_per_step``, ``activation_sparsity``, ``synaptic_ops``) and a
    ``batch`` dict of totals and means.
    """
    t = np.asarray(t, np.int64)
    n = len(t)
    offsets = np.array([0, n], np.int64) if offsets is None else np.asarray(offsets, np.int64)
    b = len(offsets) - 1
    counts = np.diff(offsets)
    sample = np.repeat(np.arange(b), counts)
    n_inputs = int(np.prod([int(v) for v in sensor_size]))
    first = np.zeros(b, np.int64)
    last = np.zeros(b, np.int64)
    nz = counts > 0
    first[nz] = t[offsets[:-1][nz]]
    last[nz] = t[offsets[1:][nz] - 1]
    duration = np.where(nz, last - first, 0)
    n_steps = np.where(nz, duration // dt + 1, 0)
    step = (t - first[sample]) // dt if n else np.zeros(0, np.int64)
    addr = flat_address(x, y, p, sensor_size)
    active_inputs = _count_unique_per_sample(sample, addr, b)
    active_steps = _count_unique_per_sample(sample, step, b)
    # events per (sample, step): peak and mean
    peak = np.zeros(b, np.int64)
    if n:
        key = sample * (int(step.max()) + 1) + step
        uniq, per = np.unique(key, return_counts=True)
        np.maximum.at(peak, uniq // (int(step.max()) + 1), per)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(duration > 0, counts / (duration * 1e-6), 0.0)
        mean_per_step = np.where(n_steps > 0, counts / np.maximum(n_steps, 1), 0.0)
        temporal = np.where(n_steps > 0, 1 - active_steps / np.maximum(n_steps, 1), 1.0)
        # share of (step, input) slots without a spike
        activation = np.where(n_steps > 0, 1 - _count_unique_per_sample(
            sample, step * n_inputs + addr, b) / np.maximum(n_steps * n_inputs, 1), 1.0)
    out = {
        "n_events": counts,
        "duration_us": duration,
        "event_rate_hz": rate,
        "active_inputs": active_inputs,
        "spatial_sparsity": 1 - active_inputs / n_inputs,
        "n_steps": n_steps,
        "active_steps": active_steps,
        "temporal_sparsity": temporal,
        "peak_events_per_step": peak,
        "mean_events_per_step": mean_per_step,
        "activation_sparsity": activation,
        "synaptic_ops": counts * int(fan_out),
    }
    out["batch"] = {
        "samples": b,
        "n_events": int(counts.sum()),
        "synaptic_ops": int(counts.sum()) * int(fan_out),
        "peak_events_per_step": int(peak.max()) if b else 0,
        "mean_event_rate_hz": float(rate.mean()) if b else 0.0,
        "mean_spatial_sparsity": float(out["spatial_sparsity"].mean()) if b else 1.0,
        "mean_temporal_sparsity": float(temporal.mean()) if b else 1.0,
        "mean_activation_sparsity": float(activation.mean()) if b else 1.0,
    }
    return out


def _count_unique_per_sample(sample, value, b) -> np.ndarray:
    if len(sample) == 0:
        return np.zeros(b, np.int64)
    value = np.asarray(value, np.int64)
    span = int(value.max()) + 1
    uniq = np.unique(sample * span + value)
    return np.bincount(uniq // span, minlength=b)
