"""PyTorch side: collation to tensors and an ``IterableDataset`` over a stream.

Batches are produced whole (never sample by sample: a ``DataLoader``
fetching single samples is ~100x slower than slicing batches), so the loader
is used with ``batch_size=None``. Work is split by partition over
``DataLoader`` workers and ``torch.distributed`` ranks: consumer ``rank *
num_workers + worker`` of ``world_size * num_workers`` reads every n-th
partition of the epoch's seeded permutation, so each sample is delivered
exactly once per epoch across all ranks.
"""
from __future__ import annotations

import numpy as np

import torch
import torch.utils.data

from neurodata.pipeline.batches import is_ragged, padded_events, sparse_parts
from neurodata.pipeline.batches import time_major as time_major_view
from neurodata.pipeline.shuffle import positions_after

__all__ = ["collate", "StreamDataset"]


def collate(data, labels, mode: str = "dense", time_major: bool = True, time_axis: int = 1):
    """numpy batch -> torch tensors (zero-copy for dense data).

    Dense ``(B, T, ...)`` data becomes a time-major ``[T, B, ...]`` view when
    ``time_major`` (dense and non-overlapping: moving it to a GPU is one copy
    that keeps the layout; call ``.contiguous()`` for a CPU copy in that
    order). Sparse tensors are built time-major. Labels become int64 tensors
    (float32 for soft labels).
    """
    labels = np.asarray(labels)
    if labels.dtype.kind in "iub":
        lab = torch.from_numpy(labels.astype(np.int64, copy=False))
    else:
        lab = torch.from_numpy(labels.astype(np.float32, copy=False))
    if mode == "padded":
        ev, lengths = padded_events(data)
        return (torch.from_numpy(ev), torch.from_numpy(lengths)), lab
    if mode == "sparse":
        idx, values, shape = sparse_parts(time_major_view(data, time_axis) if time_major else data)
        return torch.sparse_coo_tensor(torch.from_numpy(idx), torch.from_numpy(values),
                                       size=shape, is_coalesced=True,
                                       check_invariants=False), lab
    if isinstance(data, np.ndarray):
        return torch.from_numpy(time_major_view(data, time_axis) if time_major else data), lab
    if is_ragged(data):
        ev, lengths = padded_events(data)
        return (torch.from_numpy(ev), torch.from_numpy(lengths)), lab
    return data, lab


class StreamDataset(torch.utils.data.IterableDataset):
    """``IterableDataset`` yielding whole collated batches of a :class:`Stream`.

    Use ``DataLoader(ds, batch_size=None, num_workers=n)``. Ranks come from
    the stream (``rank``/``world_size``, or ``torch.distributed``). Each
    iteration is one epoch; call :meth:`set_epoch` between epochs (like
    ``DistributedSampler``). For an exact mid-epoch resume, save
    ``ds.state_dict(batches_consumed, num_workers)`` and call
    :meth:`load_state_dict` before creating the next iterator.
    """

    def __init__(self, stream, collate: str | None = None):
        self.stream = stream
        self.collate = collate or stream.collate
        self.epoch = stream.epoch
        self._skip: dict[int, int] = {}  # consumer -> samples already delivered
        self._first_worker = 0  # resumed loaders start with the worker whose turn it was
        self._num_workers = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._skip = {}
        self._first_worker = 0
        self._num_workers = None

    def _consumers(self):
        info = torch.utils.data.get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        if self._num_workers is not None and self._num_workers != max(1, n_workers):
            raise ValueError(f"state was saved with {self._num_workers} loader workers, "
                             f"this loader has {n_workers}")
        worker = (worker + self._first_worker) % n_workers
        s = self.stream
        return s.rank * n_workers + worker, s.world_size * n_workers

    def __iter__(self):
        s = self.stream
        consumer, n = self._consumers()
        if s.scheduler is None and s.num_threads is None:
            if torch.utils.data.get_worker_info() is not None:  # one thread per loader worker process
                s.num_threads = 1
        plan = s.plan(consumer, n, epoch=self.epoch)
        for data, labels, ids in s.iter_plan(plan, self._skip.get(consumer, 0)):
            out, lab = collate(data, labels, self.collate, s.time_major, s.time_axis)
            if s.return_ids:
                yield out, lab, torch.from_numpy(ids)
            else:
                yield out, lab

    def batches_per_worker(self, num_workers: int) -> np.ndarray:
        """Batches each ``DataLoader`` worker of this rank delivers in this epoch."""
        s = self.stream
        nw = max(1, int(num_workers))
        return np.array([s.n_batches(len(s.plan(s.rank * nw + w, s.world_size * nw,
                                                epoch=self.epoch))) for w in range(nw)])

    def __len__(self) -> int:
        """Batches of this rank in one epoch with a single-process loader."""
        return int(self.batches_per_worker(1).sum())

    def state_dict(self, batches_consumed: int, num_workers: int = 0) -> dict:
        """State after the training loop consumed ``batches_consumed`` batches from its loader.

        Count the batches of the current loader iterator (after a resume:
        since the resume). The loader's in-order round robin over workers is
        replayed to find how far each worker got; prefetched but unconsumed
        batches are not counted, so nothing is skipped on resume.
        """
        s = self.stream
        nw = max(1, int(num_workers))
        if self._num_workers is not None and self._num_workers != nw:
            raise ValueError(f"this dataset resumed with {self._num_workers} workers, not {nw}")
        B = s.batch_size
        orig = [(j + self._first_worker) % nw for j in range(nw)]  # loader worker -> plan share
        total = self.batches_per_worker(nw)
        skipped = [self._skip.get(s.rank * nw + w, 0) // B for w in orig]
        remaining = np.array([total[w] - k for w, k in zip(orig, skipped)])
        done, turn = positions_after(remaining, batches_consumed)
        skip = {s.rank * nw + w: int((k + d) * B) for w, k, d in zip(orig, skipped, done)}
        return {"epoch": self.epoch, "num_workers": nw, "skip": skip,
                "first_worker": orig[turn], "stream": s.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration yields exactly the batches not yet consumed."""
        from neurodata.pipeline.stream import _check_state

        _check_state(self.stream, state["stream"])
        self.epoch = int(state["epoch"])
        self._skip = {int(k): int(v) for k, v in state["skip"].items()}
        self._first_worker = int(state.get("first_worker", 0))
        self._num_workers = int(state["num_workers"])
