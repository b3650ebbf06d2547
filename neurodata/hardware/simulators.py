"""Spike inputs in the forms simulators of spiking networks and chips take.

Every exporter starts from quantised spikes: ``step`` (int timestep) and
``neuron`` (flat input index, see :func:`~neurodata.hardware.quantize.flat_address`),
as :func:`spikes_from_events` returns them. Layouts follow each tool's
documented input:

- dense raster ``[T, N]`` (bool or counts) and sparse ``(step, neuron)`` lists;
- Brian2 ``SpikeGeneratorGroup(N, indices, times)``: one spike per neuron and
  timestep at most (Brian2 refuses more), times in seconds;
- NEST ``spike_generator``: per-neuron strictly increasing ``spike_times`` in
  ms, each a multiple of the resolution and > 0;
- PyNN / sPyNNaker ``SpikeSourceArray(spike_times=[...])``: per-neuron lists in ms;
- Lava ``RingBuffer(data=...)`` source: ``[N, T]`` array;
- Sinabs / Speck: structured ``x, y, t, p`` records (sinabs' ``xytp`` layout,
  ``p`` the input feature/channel) and the chip's spike fields
  ``(layer, feature, x, y, timestamp)``; time-major ``[T, C, H, W]`` rasters for
  sinabs layers.
"""
from __future__ import annotations

import numpy as np

from neurodata.hardware.quantize import flat_address, quantize


def spikes_from_events(x, y, t, p, sensor_size, dt: int, *, t0=None, budget=None,
                       policy: str = "drop", core=None):
    """Quantise pixel events into ``(step, neuron)`` spikes.

    Returns ``step``, ``neuron`` (int64 arrays in delivery order), the number
    of neurons ``width * height * polarities`` and the
    :class:`~neurodata.hardware.quantize.QuantizeReport`.
    """
    addr = flat_address(x, y, p, sensor_size)
    keep, step, report = quantize(t, dt, addr, t0=t0, budget=budget, policy=policy, core=core)
    n = int(sensor_size[0]) * int(sensor_size[1]) * int(sensor_size[2])
    return step, addr[keep], n, report


def to_raster(step, neuron, n_steps: int, n_neurons: int, dtype=bool) -> np.ndarray:
    """Dense ``[T, N]`` raster; ``bool`` marks spikes, an integer dtype counts them."""
    step = np.asarray(step, np.int64)
    neuron = np.asarray(neuron, np.int64)
    ok = (step < n_steps) & (step >= 0)
    flat = step[ok] * n_neurons + neuron[ok]
    counts = np.bincount(flat, minlength=n_steps * n_neurons).reshape(n_steps, n_neurons)
    if np.dtype(dtype) == bool:
        return counts > 0
    return counts.astype(dtype)


def to_sparse(step, neuron) -> np.ndarray:
    """``(K, 2)`` int64 array of ``(step, neuron)`` pairs, sorted by step then neuron."""
    step = np.asarray(step, np.int64)
    neuron = np.asarray(neuron, np.int64)
    order = np.lexsort((neuron, step))
    return np.stack([step[order], neuron[order]], axis=1)


def _unique_pairs(step, neuron):
    pairs = to_sparse(step, neuron)
    if len(pairs) == 0:
        return pairs
    keep = np.ones(len(pairs), bool)
    keep[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
    return pairs[keep]


def to_brian2(step, neuron, dt_us: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, times_s)`` for ``SpikeGeneratorGroup(N, indices, times * second)``.

    Spikes of one neuron within one step are merged (Brian2 allows one per
    neuron and timestep); times are step starts in seconds.
    """
    pairs = _unique_pairs(step, neuron)
    return pairs[:, 1].copy(), pairs[:, 0] * (dt_us * 1e-6)


def _per_neuron_times(step, neuron, n_neurons, dt_ms, offset_steps):
    pairs = _unique_pairs(step, neuron)
    order = np.lexsort((pairs[:, 0], pairs[:, 1]))
    pairs = pairs[order]
    bounds = np.searchsorted(pairs[:, 1], np.arange(n_neurons + 1))
    times = (pairs[:, 0] + offset_steps) * dt_ms
    return [times[bounds[i]:bounds[i + 1]] for i in range(n_neurons)]


def to_nest(step, neuron, n_neurons: int, dt_us: int) -> list[dict]:
    """Per-neuron parameter dicts for NEST ``spike_generator`` nodes.

    ``[{"spike_times": [...]}, ...]`` in ms, strictly increasing and > 0 as
    NEST requires: step ``k`` fires at ``(k + 1) * dt`` (a spike generator
    cannot fire at time 0). Use a simulation resolution dividing ``dt``.
    """
    lists = _per_neuron_times(step, neuron, n_neurons, dt_us / 1000.0, 1)
    return [{"spike_times": ts.tolist()} for ts in lists]


def to_pynn(step, neuron, n_neurons: int, dt_us: int) -> list[np.ndarray]:
    """``spike_times`` for ``SpikeSourceArray``: one array (ms) per neuron."""
    return _per_neuron_times(step, neuron, n_neurons, dt_us / 1000.0, 0)


def to_lava(step, neuron, n_steps: int, n_neurons: int) -> np.ndarray:
    """``[N, T]`` spike array for a Lava ``RingBuffer`` source process."""
    return to_raster(step, neuron, n_steps, n_neurons, dtype=np.int32).T.copy()


def to_sinabs_xytp(x, y, t, p) -> np.ndarray:
    """Structured ``x, y, t, p`` records as sinabs' DynapCNN helpers take them."""
    out = np.empty(len(t), dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "<u2")])
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


def to_speck_spikes(x, y, t, p, layer: int = 0) -> np.ndarray:
    """Speck/DynapCNN input spikes: records ``(layer, feature, x, y, timestamp)``.

    ``feature`` is the polarity (input channel); ``timestamp`` in us.
    """
    out = np.empty(len(t), dtype=[("layer", "u1"), ("feature", "<u2"), ("x", "<u2"),
                                  ("y", "<u2"), ("timestamp", "<u8")])
    out["layer"] = layer
    out["feature"], out["x"], out["y"], out["timestamp"] = p, x, y, t
    return out


def to_sinabs_raster(step, neuron, n_steps: int, sensor_size) -> np.ndarray:
    """Time-major ``[T, P, H, W]`` float32 counts, the input of sinabs layers."""
    w, h, pol = (int(v) for v in sensor_size)
    r = to_raster(step, neuron, n_steps, w * h * pol, dtype=np.float32)
    return r.reshape(n_steps, pol, h, w)
