"""Time quantisation of events to a hardware timestep, with input budgets.

A chip advances in timesteps of ``dt`` and accepts at most ``budget`` input
events per step (per core, when inputs are split over cores). What happens to
the excess is a policy, and its cost is reported, never hidden:

``"drop"``
    The first ``budget`` events of a step (in time order) are kept; the rest
    are lost.
``"defer"``
    Excess events wait, first in first out, for the next step with room; no
    event is lost, some arrive late (the report gives how many and by how
    many steps).
``"saturate"``
    Events to the same address within one step merge into one (an input
    line carries at most one spike per step); if a step is still over
    budget, the excess is dropped as with ``"drop"``.

All three are vectorised: the FIFO of ``"defer"`` is a running maximum
(event ``k`` of a core leaves in slot ``max_j<=k(step_j * budget - j) + k``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

POLICIES = ("drop", "defer", "saturate")


@dataclass
class QuantizeReport:
    """What quantisation did to the events.

    Attributes
    ----------
    n_in, n_out : int
        Events before and after.
    dropped : int
        Events removed because a step was over budget.
    merged : int
        Events merged into another at the same address and step (saturate).
    deferred : int
        Events delivered at a later step than their own (defer).
    max_delay_steps : int
        Largest delay of a deferred event, in steps.
    peak_per_step : int
        Largest number of input events any step (and core) received before the policy.
    n_steps : int
        Steps spanned by the output.
    """

    n_in: int
    n_out: int
    dropped: int = 0
    merged: int = 0
    deferred: int = 0
    max_delay_steps: int = 0
    peak_per_step: int = 0
    n_steps: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def flat_address(x, y, p, sensor_size) -> np.ndarray:
    """Neuron index of pixel events: ``(p * height + y) * width + x``.

    The same order as a flattened ``(P, H, W)`` frame, so rasters and frames
    agree.
    """
    w, h = int(sensor_size[0]), int(sensor_size[1])
    return (np.asarray(p, np.int64) * h + np.asarray(y, np.int64)) * w + np.asarray(x, np.int64)


def quantize(t, dt: int, address=None, *, t0: int | None = None, budget: int | None = None,
             policy: str = "drop", core=None):
    """Assign events to timesteps of ``dt`` and apply an input budget.

    Parameters
    ----------
    t : array of int
        Timestamps (microseconds), sorted in time (as stored events are).
    dt : int
        Timestep in the same unit.
    address : array of int, optional
        Neuron/input address of each event (needed for ``"saturate"``).
    t0 : int, optional
        Time of step 0 (default: the first timestamp).
    budget : int, optional
        Maximum events per step (per core); ``None`` for no limit.
    policy : {"drop", "defer", "saturate"}
    core : array of int, optional
        Core/tile of each event; budgets then apply per core and step.

    Returns
    -------
    keep : ndarray of int64
        Indices into the input of the events that are delivered, in delivery order.
    step : ndarray of int64
        Delivery step of each kept event.
    report : QuantizeReport
    """
    t = np.asarray(t, np.int64)
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
    if dt <= 0:
        raise ValueError("dt must be positive")
    n = len(t)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), QuantizeReport(0, 0)
    if n > 1 and np.any(t[1:] < t[:-1]):
        raise ValueError("timestamps must be sorted")
    base = int(t[0]) if t0 is None else int(t0)
    step = (t - base) // dt
    if np.any(step < 0):
        raise ValueError("t0 is after some timestamps")
    single_core = core is None
    core = None if single_core else np.asarray(core, np.int64)
    idx = np.arange(n, dtype=np.int64)
    merged = 0
    if budget is None and policy != "saturate":
        report = QuantizeReport(n_in=n, n_out=n, peak_per_step=_peak(step),
                                n_steps=int(step[-1]) + 1)
        return idx, step, report
    if policy == "saturate":
        if address is None:
            raise ValueError("policy 'saturate' needs addresses")
        address = np.asarray(address, np.int64)
        survivors = _first_per_step_address(step, address)
        merged = n - len(survivors)
        idx, step = survivors, step[survivors]
        core = None if single_core else core[survivors]
    # group by (core, step) keeping time order; one core: groups are already contiguous
    if single_core:
        order = None
        g_step, g_idx = step, idx
        core_new = np.zeros(len(idx), bool)
        if len(idx):
            core_new[0] = True
    else:
        order = np.argsort(core, kind="stable")
        g_core, g_step, g_idx = core[order], step[order], idx[order]
        core_new = np.ones(len(order), bool)
        core_new[1:] = g_core[1:] != g_core[:-1]
    new = core_new.copy()
    new[1:] |= g_step[1:] != g_step[:-1]
    pos = np.arange(len(g_idx))
    rank = pos - np.maximum.accumulate(np.where(new, pos, 0))
    peak = int(rank.max()) + 1 if len(rank) else 0
    report = QuantizeReport(n_in=n, n_out=0, merged=merged, peak_per_step=peak)
    if budget is None or peak <= budget:
        keep, out_step = g_idx, g_step
    elif policy in ("drop", "saturate"):
        ok = rank < budget
        keep, out_step = g_idx[ok], g_step[ok]
        report.dropped = int(len(ok) - np.count_nonzero(ok))
    else:  # defer: FIFO per core with `budget` slots per step
        out_step = np.empty_like(g_step)
        bounds = np.append(np.nonzero(core_new)[0], len(g_idx))
        for a, b in zip(bounds[:-1], bounds[1:]):  # loop over cores, not events
            k = np.arange(b - a, dtype=np.int64)
            slot = k + np.maximum.accumulate(g_step[a:b] * budget - k)
            out_step[a:b] = slot // budget
        keep = g_idx
        delay = out_step - g_step
        report.deferred = int(np.count_nonzero(delay))
        report.max_delay_steps = int(delay.max()) if len(delay) else 0
    if not single_core:
        # delivery order: by step, then by original time order
        final = np.lexsort((keep, out_step))
        keep, out_step = keep[final], out_step[final]
    report.n_out = len(keep)
    report.n_steps = int(out_step.max()) + 1 if len(out_step) else 0
    return keep, out_step, report


def _first_per_step_address(step, address) -> np.ndarray:
    """Indices of the first event of each (step, address), in time order."""
    from neurodata.transforms._kernels import _nb

    if _nb() and len(address) and int(address.max()) < (1 << 28):
        return _first_kernel(step, address, int(address.max()) + 1)
    # numpy: a stable sort on the (step, address) key keeps time order within a key
    key = step * (int(address.max()) + 1) + address
    order = np.argsort(key, kind="stable")
    k = key[order]
    first = np.ones(len(k), bool)
    first[1:] = k[1:] != k[:-1]
    return np.sort(order[first])


def _first_kernel_py(step, address, n_addr):
    # one pass over time-sorted events: an address fires once per step
    last = np.full(n_addr, -1, np.int64)
    keep = np.empty(len(step), np.int64)
    m = 0
    for i in range(len(step)):
        a = address[i]
        if last[a] != step[i]:
            last[a] = step[i]
            keep[m] = i
            m += 1
    return keep[:m]


def _make_first_kernel():
    from neurodata.transforms._kernels import _jit

    return _jit(_first_kernel_py)


_first_kernel = _make_first_kernel()


def _peak(step) -> int:
    """Most events in one step, for sorted steps."""
    if len(step) == 0:
        return 0
    edges = np.flatnonzero(np.diff(step)) + 1
    return int(np.diff(np.concatenate(([0], edges, [len(step)]))).max())


def dequantize(step, dt: int, t0: int = 0) -> np.ndarray:
    """Timestamps of steps: the start of each step, ``t0 + step * dt``.

    Without deferral this is within ``dt`` of the original timestamp
    (``0 <= t - dequantize(step) < dt``).
    """
    return int(t0) + np.asarray(step, np.int64) * int(dt)
