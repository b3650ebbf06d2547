"""Cutting transformed partitions into training batches.

A partition's transformed data is either a dense array with one row per
sample (frames, EEG windows), ragged events (columns plus offsets), or a list
of per-sample objects (what an arbitrary per-sample callable returned). Each
kind is gathered by row without a Python loop over samples for the first two.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["is_ragged", "n_rows", "gather", "concat", "time_major", "nbytes", "padded_events",
           "sparse_parts", "collate_numpy"]


def is_ragged(data) -> bool:
    """True for event batches (``x, y, t, p`` columns plus ``offsets``)."""
    return hasattr(data, "offsets") and hasattr(data, "t") and hasattr(data, "replace")


def n_rows(data) -> int:
    if isinstance(data, np.ndarray):
        return data.shape[0]
    return len(data)


def nbytes(data) -> int:
    """Memory held by a partition's data (for bounds and reports)."""
    if isinstance(data, np.ndarray):
        return data.nbytes
    if is_ragged(data):
        return sum(getattr(data, c).nbytes for c in ("x", "y", "t", "p", "offsets"))
    if isinstance(data, (list, tuple)):
        return sum(nbytes(d) for d in data)
    return int(getattr(data, "nbytes", 0))


def _gather_ragged(data, rows: np.ndarray):
    off = np.asarray(data.offsets, np.int64)
    a, b = off[rows], off[rows + 1]
    counts = b - a
    new_off = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(counts, out=new_off[1:])
    # event index of every output event: a[k] + (position within sample k)
    src = np.repeat(a - new_off[:-1], counts) + np.arange(int(new_off[-1]), dtype=np.int64)
    labels = None if getattr(data, "labels", None) is None else np.asarray(data.labels)[rows]
    return data.replace(data.x[src], data.y[src], data.t[src], data.p[src], new_off,
                        labels=labels)


def gather(parts: Sequence[Any], part_pos: np.ndarray, rows: np.ndarray):
    """Rows ``rows[k]`` of ``parts[part_pos[k]]`` in order, as one batch.

    Parameters
    ----------
    parts : sequence
        Transformed data of the partitions of the current window.
    part_pos, rows : numpy.ndarray
        Which partition and row each output sample comes from. Callers sort
        them by ``part_pos`` so each partition fills a contiguous slice (one
        ``np.take`` of whole contiguous rows per partition).
    """
    first = parts[int(part_pos[0])] if len(part_pos) else parts[0]
    edges = np.flatnonzero(np.diff(part_pos)) + 1
    runs = list(zip(np.r_[0, edges], np.r_[edges, len(rows)]))
    if isinstance(first, np.ndarray):
        out = np.empty((len(rows),) + first.shape[1:], first.dtype)
        for a, b in runs:
            np.take(parts[int(part_pos[a])], rows[a:b], axis=0, out=out[a:b], mode="clip")
        return out
    if is_ragged(first):
        return concat([_gather_ragged(parts[int(part_pos[a])], rows[a:b]) for a, b in runs])
    return [parts[int(p)][int(r)] for p, r in zip(part_pos, rows)]


def time_major(data, axis: int = 1):
    """``(B, T, ...)`` -> ``(T, B, ...)`` as a view (no copy).

    ``axis`` is where time sits in the batch: 1 for frames and rasters
    ``(B, T, ...)``, -1 for signal windows ``(B, channel, time)``, which then
    become ``(time, B, channel)``.

    The view is dense and non-overlapping, so ``tensor.to("cuda")`` copies it
    in one transfer and keeps the layout; a transposing copy on the CPU would
    cost more than the whole gather.
    """
    if isinstance(data, np.ndarray) and data.ndim >= 2:
        return np.moveaxis(data, axis, 0)
    return data


def concat(pieces: Sequence[Any]):
    """Join batch pieces (consecutive windows) along the sample axis."""
    if len(pieces) == 1:
        return pieces[0]
    first = pieces[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(pieces, axis=0)
    if is_ragged(first):
        counts = [np.diff(p.offsets) for p in pieces]
        off = np.zeros(sum(len(c) for c in counts) + 1, np.int64)
        np.cumsum(np.concatenate(counts), out=off[1:])
        labs = [getattr(p, "labels", None) for p in pieces]
        labels = None if any(lb is None for lb in labs) else np.concatenate(labs)
        return first.replace(*(np.concatenate([getattr(p, c) for p in pieces])
                               for c in ("x", "y", "t", "p")), off, labels=labels)
    out = []
    for p in pieces:
        out.extend(p)
    return out


def padded_events(data) -> tuple[np.ndarray, np.ndarray]:
    """Ragged events -> ``(events [B, L, 4] int64 (x, y, t, p), lengths [B] int64)``.

    Padding is zero; ``lengths`` says how many rows of each sample are real.
    """
    if not is_ragged(data):
        raise ValueError("collate='padded' needs event data (the transform returned "
                         f"{type(data).__name__}); use collate='dense'")
    off = np.asarray(data.offsets, np.int64)
    lengths = np.diff(off)
    B, L = len(lengths), int(lengths.max()) if len(lengths) else 0
    out = np.zeros((B, L, 4), np.int64)
    sample = np.repeat(np.arange(B), lengths)
    pos = np.arange(int(off[-1]), dtype=np.int64) - off[:-1][sample]
    for k, col in enumerate(("x", "y", "t", "p")):
        out[sample, pos, k] = getattr(data, col)
    return out, lengths


def sparse_parts(data: np.ndarray):
    if not isinstance(data, np.ndarray):
        raise ValueError("collate='sparse' needs dense per-sample arrays (e.g. frames); "
                         f"got {type(data).__name__}; use collate='padded' for events")
    idx = np.nonzero(data)
    return np.stack(idx).astype(np.int64), data[idx], data.shape


def collate_numpy(data, mode: str):
    """numpy form of the non-dense collations: ``(events, lengths)`` or ``(indices, values, shape)``."""
    if mode == "padded":
        return padded_events(data)
    if mode == "sparse":
        return sparse_parts(data)
    return data
