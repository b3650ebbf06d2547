"""Spike encoders: static or continuous data into time-major spike arrays ``[T, ...]``.

- :class:`RateEncoder`: Bernoulli (or Poisson counts) per step, probability
  ``clip(gain * x + offset, 0, 1)`` (Poisson: mean ``gain * x + offset``).
- :class:`LatencyEncoder`: one spike per element, earlier for larger values
  (linear or RC/log time to first spike).
- :class:`DeltaEncoder`: ON/OFF spikes where a signal ``[T, channels]``
  changes by ``threshold`` (temporal difference, or threshold crossing of a
  moving reference), with a refractory period.
- :class:`RepeatEncoder`: the input repeated over ``T`` steps (direct coding).
- :class:`BinSpikes`: spike-audio events (SHD/SSC: ``x`` = channel, ``t`` us)
  into ``[T, channels]`` count rasters at step ``dt``.

Spikes are ``uint8`` (0/1, or counts for Poisson and binning).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from neurodata.transforms import _kernels as K
from neurodata.transforms._base import RandomMixin, Transform
from neurodata.transforms._batch import EventBatch


class Encoder(Transform):
    """Arrays in, ``[T, ...]`` spikes out."""

    def __call__(self, data):
        return self._encode(np.asarray(data), self._generator())


@dataclass
class RateEncoder(RandomMixin, Encoder):
    """Rate coding over ``n_steps``: ``[T, *data.shape]`` uint8.

    ``mode="bernoulli"``: a spike with probability ``clip(gain*x + offset, 0, 1)``
    per step; ``"poisson"``: Poisson counts with that mean (no upper clip).
    """

    n_steps: int = 100
    gain: float = 1.0
    offset: float = 0.0
    mode: str = "bernoulli"
    seed: int | np.random.Generator | None = None

    def _encode(self, data, rng):
        rate = np.asarray(data, np.float64) * self.gain + self.offset
        shape = (int(self.n_steps),) + rate.shape
        if self.mode == "bernoulli":
            prob = np.clip(rate, 0.0, 1.0)
            return (rng.random(shape) < prob).astype(np.uint8)
        if self.mode == "poisson":
            counts = rng.poisson(np.broadcast_to(np.maximum(rate, 0.0), shape))
            return np.minimum(counts, 255).astype(np.uint8)
        raise ValueError("mode must be 'bernoulli' or 'poisson'")


@dataclass
class LatencyEncoder(Encoder):
    """Time-to-first-spike coding: at most one spike per element, ``[T, *shape]`` uint8.

    Values are clipped to ``[0, 1]``; values below ``threshold`` never spike.
    ``method="linear"``: spike time ``tau * (1 - x)``; ``"log"`` (RC circuit
    charging to ``threshold``): ``tau * ln(x / (x - threshold))``. With
    ``normalize`` the spike times of ``x = 1`` and ``x = threshold`` (linear)
    or of ``x = 1`` and the smallest encoded value (log) map to steps 0 and
    ``T - 1``; otherwise times are in steps and spikes after ``T - 1`` are lost.
    """

    n_steps: int = 100
    tau: float = 5.0
    threshold: float = 0.01
    method: str = "linear"
    normalize: bool = True

    def _encode(self, data, rng):
        x = np.clip(np.asarray(data, np.float64), 0.0, 1.0)
        T = int(self.n_steps)
        thr = float(self.threshold)
        if self.method == "linear":
            fires = x >= thr if thr > 0 else x > 0
            if self.normalize:
                span = max(1.0 - thr, 1e-12)
                t = (1.0 - x) / span * (T - 1)
            else:
                t = self.tau * (1.0 - x)
        elif self.method == "log":
            fires = x > thr
            with np.errstate(divide="ignore", invalid="ignore"):
                t = self.tau * np.log(x / (x - thr))
            if self.normalize and fires.any():
                t_first = self.tau * np.log(1.0 / (1.0 - thr)) if thr < 1 else 0.0
                t_last = t[fires].max()
                scale = (T - 1) / (t_last - t_first) if t_last > t_first else 0.0
                t = (t - t_first) * scale
        else:
            raise ValueError("method must be 'linear' or 'log'")
        step = np.where(fires, np.rint(np.nan_to_num(t, nan=T, posinf=T)), T).astype(np.int64)
        fires &= (step >= 0) & (step < T)
        out = np.zeros((T,) + x.shape, np.uint8)
        flat = out.reshape(T, -1)
        cols = np.flatnonzero(fires.ravel())
        flat[step.ravel()[cols], cols] = 1
        return out


@dataclass
class DeltaEncoder(Encoder):
    """ON/OFF spikes from a signal ``[T, ...]``: output ``[T, 2, ...]`` (ON, OFF) uint8.

    ``mode="delta"``: spike when the change from the previous sample is at
    least ``threshold``; ``"threshold"`` (send-on-delta / threshold crossing):
    spike when the signal has moved ``threshold`` away from the level at the
    last spike (the reference then moves to the signal). ``refractory`` steps
    after a spike are silent. ``off_spikes=False`` returns ``[T, ...]`` ON only.
    """

    threshold: float = 0.1
    mode: str = "delta"
    refractory: int = 0
    off_spikes: bool = True

    def _encode(self, data, rng):
        if self.mode not in ("delta", "threshold"):
            raise ValueError("mode must be 'delta' or 'threshold'")
        sig = np.asarray(data, np.float64)
        if sig.ndim == 0:
            raise ValueError("DeltaEncoder needs a signal with a time axis first")
        T, rest = sig.shape[0], sig.shape[1:]
        spikes = K.threshold_crossing(sig.reshape(T, -1), self.threshold, int(self.refractory),
                                      self.mode == "threshold")
        spikes = spikes.reshape((T, 2) + rest)
        return spikes if self.off_spikes else spikes[:, 0]


@dataclass
class RepeatEncoder(Encoder):
    """Direct coding: the input repeated ``n_steps`` times, ``[T, *shape]`` (same dtype)."""

    n_steps: int = 10

    def _encode(self, data, rng):
        return np.repeat(data[None], int(self.n_steps), axis=0)


@dataclass
class BinSpikes(Transform):
    """Spike-audio events (SHD/SSC: ``x`` = channel, ``t`` us) into ``[T, n_channels]`` counts.

    Bin ``k`` holds events with ``t_start + k*dt <= t < t_start + (k+1)*dt``;
    ``t_start`` is a number or ``"first"`` (the sample's first event).
    ``n_steps`` fixes ``T`` (later events dropped; a batch stacks to
    ``(B, T, C)``); otherwise ``T`` covers the sample's last event and a batch
    gives a list. Channels ``>= n_channels`` are dropped. ``uint8`` counts
    (saturating at 255) unless ``dtype`` says otherwise.
    """

    n_channels: int = 700
    dt: float = 1000.0
    n_steps: int | None = None
    t_start: float | str = 0
    dtype: str = "uint8"

    deterministic: ClassVar[bool] = True

    def _unwrap(self, out):
        return out[0]

    def _apply(self, batch: EventBatch, rng):
        B, counts = len(batch), batch.counts
        C, dt = int(self.n_channels), float(self.dt)
        ne = counts > 0
        if self.t_start == "first":
            t0 = np.zeros(B, np.int64)
            t0[ne] = batch.t[batch.offsets[:-1][ne]]
        else:
            t0 = np.full(B, int(self.t_start), np.int64)
        step = np.floor((batch.t - np.repeat(t0, counts)) / dt).astype(np.int64)
        if self.n_steps is not None:
            n = np.full(B, int(self.n_steps), np.int64)
        else:
            last = np.full(B, -1, np.int64)
            if batch.n_events:
                last[ne] = np.maximum.reduceat(step, batch.offsets[:-1][ne])
            n = np.maximum(last + 1, 1)
        first = np.cumsum(n) - n
        seg = K.segment_ids(batch.offsets)
        ok = (step >= 0) & (step < n[seg]) & (batch.x < C)
        flat = (first[seg[ok]] + step[ok]) * C + batch.x[ok]
        total = int(n.sum())
        hist = np.bincount(flat, minlength=total * C)
        dt_out = np.dtype(self.dtype)
        if np.issubdtype(dt_out, np.integer):
            hist = np.minimum(hist, np.iinfo(dt_out).max)
        raster = hist.astype(dt_out).reshape(total, C)
        if self.n_steps is not None:
            return raster.reshape(B, int(self.n_steps), C)
        return np.split(raster, np.cumsum(n)[:-1])


__all__ = ["RateEncoder", "LatencyEncoder", "DeltaEncoder", "RepeatEncoder", "BinSpikes"]
