"""Partition plan: contiguous runs of samples aligned with the store's chunks.

A partition is the unit of work of one dask task: it is read once (whole
chunks of one or a few shards), transformed as one batch and cut into
training batches. Dask's threaded scheduler costs ~70 us per task, so a
partition should carry 10-100 ms of work. Partitions follow chunk-aligned
blocks of events, so only the chunk a block's last sample spills into is
decoded a second time (by the next block's partition).
"""
from __future__ import annotations

import numpy as np

__all__ = ["plan_partitions", "partition_sizes"]


def plan_partitions(start: np.ndarray, count: np.ndarray, unit_events: int,
                    max_samples: int | None = None) -> np.ndarray:
    """Group samples into partitions by the ``unit_events`` block their first event is in.

    Parameters
    ----------
    start, count : numpy.ndarray
        First event and number of events of every sample (samples are stored
        one after another, so ``start`` is non-decreasing).
    unit_events : int
        Events per block (a whole number of chunks, at most a shard). Samples
        whose first event lies in the same block form one partition; a sample
        crossing a block edge stays with the block it starts in.
    max_samples : int, optional
        Split partitions holding more samples into equal parts of at most
        this many (bounds a transformed partition's memory for tiny samples).

    Returns
    -------
    numpy.ndarray
        int64 bounds ``(n_partitions + 1,)``: partition ``k`` is samples
        ``bounds[k]:bounds[k + 1]``.
    """
    start = np.asarray(start, np.int64)
    n = len(start)
    if n == 0:
        return np.zeros(1, np.int64)
    if unit_events <= 0:
        raise ValueError("unit_events must be positive")
    block = start // int(unit_events)
    new = np.empty(n, bool)
    new[0] = True
    new[1:] = block[1:] != block[:-1]
    bounds = np.append(np.flatnonzero(new), n).astype(np.int64)
    if max_samples:
        sizes = np.diff(bounds)
        pieces = -(-sizes // int(max_samples))  # ceil
        if np.any(pieces > 1):
            # split run k into pieces[k] near-equal parts, vectorised over runs
            run = np.repeat(np.arange(len(sizes)), pieces)
            part = np.arange(len(run)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
            cut = bounds[run] + (sizes[run] * part) // pieces[run]
            bounds = np.append(cut, n).astype(np.int64)
    return bounds


def partition_sizes(bounds: np.ndarray) -> np.ndarray:
    """Samples per partition."""
    return np.diff(np.asarray(bounds, np.int64))
