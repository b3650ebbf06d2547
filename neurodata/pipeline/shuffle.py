"""Deterministic epoch order: seeded partition shuffle plus a bounded shuffle window.

The whole order of an epoch is a pure function of ``(seed, epoch, partition
plan, consumer)``, computed up front from indices only (no data). Partitions
are permuted, dealt round-robin to consumers (``DataLoader`` workers times
``torch.distributed`` ranks, so every sample goes to exactly one of them),
and within each window of ``window`` consecutive partitions the samples are
permuted: the shuffle buffer is a window of partitions, so memory stays
bounded by its size while samples of different shards mix. Because the order
is known, resuming is exact: a state is just "how many samples of this order
were consumed".
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["EpochPlan", "make_epoch_plan", "plan_digest", "positions_after"]


@dataclass(frozen=True)
class EpochPlan:
    """Which partitions one consumer reads, in which order, and its sample order.

    Attributes
    ----------
    parts : numpy.ndarray
        Partition ids this consumer reads, in reading order.
    window : int
        Partitions per shuffle window (consecutive entries of ``parts``).
    part_pos : numpy.ndarray
        For each sample of the order: its partition's position in ``parts``.
    row : numpy.ndarray
        For each sample of the order: its row within its partition.
    ids : numpy.ndarray
        Global sample ids in yield order.
    epoch : int
        The epoch planned (random transforms are seeded per epoch and partition).
    """

    parts: np.ndarray
    window: int
    part_pos: np.ndarray
    row: np.ndarray
    ids: np.ndarray
    epoch: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_windows(self) -> int:
        return -(-len(self.parts) // self.window)

    def window_parts(self, w: int) -> np.ndarray:
        """Positions (into ``parts``) of the partitions of window ``w``."""
        return np.arange(w * self.window, min((w + 1) * self.window, len(self.parts)))

    def window_span(self) -> np.ndarray:
        """Bounds of every window in the order: ``(n_windows + 1,)`` sample positions."""
        win_of_sample = self.part_pos // self.window
        return np.searchsorted(win_of_sample, np.arange(self.n_windows + 1), "left")


def make_epoch_plan(bounds: np.ndarray, *, seed: int, epoch: int, shuffle: bool = True,
                    window: int = 2, consumer: int = 0, n_consumers: int = 1) -> EpochPlan:
    """Compute one consumer's order for one epoch.

    Parameters
    ----------
    bounds : numpy.ndarray
        Partition bounds from :func:`~neurodata.pipeline.partitions.plan_partitions`.
    seed, epoch : int
        The order is a function of both: same seed and epoch, same order.
    shuffle : bool
        False keeps store order (partitions still dealt to consumers).
    window : int
        Partitions per shuffle window (the shuffle buffer).
    consumer, n_consumers : int
        This consumer's index and the total (``rank * workers + worker``).
    """
    bounds = np.asarray(bounds, np.int64)
    n_parts = len(bounds) - 1
    if not 0 <= consumer < n_consumers:
        raise ValueError(f"consumer {consumer} out of range for {n_consumers} consumers")
    window = max(1, int(window))
    if shuffle:
        perm = np.random.default_rng([int(seed), int(epoch)]).permutation(n_parts)
    else:
        perm = np.arange(n_parts)
    parts = perm[consumer::n_consumers].astype(np.int64)
    sizes = bounds[parts + 1] - bounds[parts]
    total = int(sizes.sum())
    part_pos = np.repeat(np.arange(len(parts), dtype=np.int64), sizes)
    first = np.cumsum(sizes) - sizes
    row = np.arange(total, dtype=np.int64) - np.repeat(first, sizes)
    if shuffle and total:
        keys = np.random.default_rng([int(seed), int(epoch), 1, consumer, n_consumers]).random(total)
        order = np.lexsort((keys, part_pos // window))
        part_pos, row = part_pos[order], row[order]
    ids = bounds[parts][part_pos] + row
    return EpochPlan(parts, window, part_pos, row, ids, int(epoch))


def consumer_totals(bounds: np.ndarray, *, seed: int, epoch: int, shuffle: bool = True,
                    n_consumers: int = 1) -> np.ndarray:
    """Samples each of ``n_consumers`` consumers gets in one epoch (as :func:`make_epoch_plan`
    deals partitions), without building their orders."""
    bounds = np.asarray(bounds, np.int64)
    n_parts = len(bounds) - 1
    perm = (np.random.default_rng([int(seed), int(epoch)]).permutation(n_parts) if shuffle
            else np.arange(n_parts))
    sizes = (bounds[1:] - bounds[:-1])[perm]
    return np.array([int(sizes[c::n_consumers].sum()) for c in range(n_consumers)], np.int64)


def resize_plan(plan: EpochPlan, n: int) -> EpochPlan:
    """``plan`` cut to its first ``n`` samples, or repeated from its start up to ``n``.

    Used to give every distributed consumer the same number of samples (and so
    of batches): a rank that runs out early would leave the others waiting in a
    collective forever. Repeated samples keep their order and partitions.
    """
    n = int(n)
    m = len(plan)
    if n <= m:
        return EpochPlan(plan.parts, plan.window, plan.part_pos[:n], plan.row[:n],
                         plan.ids[:n], plan.epoch)
    if m == 0:
        raise ValueError("cannot pad an empty plan")
    reps = -(-n // m)
    # each repeat starts on a shuffle-window boundary, so samples stay grouped by window;
    # the few partitions filling the gap are read and not used
    stride = -(-len(plan.parts) // plan.window) * plan.window
    part_pos = (plan.part_pos[None, :] + stride * np.arange(reps)[:, None]).reshape(-1)[:n]
    return EpochPlan(np.tile(np.resize(plan.parts, stride), reps), plan.window, part_pos,
                     np.tile(plan.row, reps)[:n], np.tile(plan.ids, reps)[:n], plan.epoch)


def plan_digest(bounds: np.ndarray) -> str:
    """Short digest of a partition plan, stored in states to refuse a mismatched resume."""
    return hashlib.sha256(np.asarray(bounds, np.int64).tobytes()).hexdigest()[:16]


def positions_after(batches_per_consumer: np.ndarray, consumed: int) -> tuple[np.ndarray, int]:
    """Replay a ``DataLoader``'s in-order round robin over its workers.

    The loader asks its workers in turn, skipping one once it is exhausted.
    Returns how many batches each worker had delivered after ``consumed``
    batches, and which worker's turn is next (so a resumed loader can start
    there and continue the same sequence).
    """
    left = np.asarray(batches_per_consumer, np.int64).copy()
    done = np.zeros_like(left)
    consumed = int(consumed)
    nxt = 0
    while consumed > 0 and left.sum() > 0:
        active = np.flatnonzero(left > 0)
        rounds = min(int(left[active].min()), consumed // len(active))
        if rounds:  # whole rounds start and end at the start of the cycle
            done[active] += rounds
            left[active] -= rounds
            consumed -= rounds * len(active)
            nxt = 0
            continue
        take = active[:consumed]
        done[take] += 1
        left[take] -= 1
        consumed = 0
        nxt = int(take[-1]) + 1
    n = len(left)
    for k in range(n):  # first worker with batches left, cyclically from nxt
        w = (nxt + k) % n
        if left[w] > 0:
            return done, w
    return done, 0
