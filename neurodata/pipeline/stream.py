"""``neurodata.stream``: batches from a store into a training loop, GPU never waiting.

Each partition (a run of samples aligned with the store's chunks) is read
once, transformed as one batch by a dask task, and cut into batches;
partitions are computed ahead of the consumer in background threads (or on
a dask cluster). The epoch order is deterministic and resumable (see
:mod:`neurodata.pipeline.shuffle`).
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from neurodata.pipeline.apply import load_partition
from neurodata.pipeline.batches import collate_numpy, concat, gather, time_major
from neurodata.pipeline.cache import TransformCache
from neurodata.pipeline.runners import make_runner
from neurodata.pipeline.shuffle import (EpochPlan, consumer_totals, make_epoch_plan,
                                        plan_digest, resize_plan)
from neurodata.pipeline.source import open_source

__all__ = ["stream", "Stream"]

_STATE_VERSION = 1


class Stream:
    """An iterable over one epoch of batches; iterate again for the next epoch.

    Create with :func:`stream`. Each full pass advances ``epoch`` by one (so
    repeated loops see fresh orders); :meth:`set_epoch` sets it explicitly.
    :meth:`state_dict` / :meth:`load_state_dict` save and restore the exact
    position inside an epoch.
    """

    def __init__(self, source, transform=None, batch_size: int = 128, *, shuffle: bool = True,
                 seed: int = 0, epoch: int = 0, drop_last: bool = False, prefetch: int = 2,
                 shuffle_window: int = 2, as_: str = "numpy", collate: str = "dense",
                 time_major: bool | None = None, scheduler=None, num_threads: int | None = None,
                 cache: bool = False, cache_dir=None, rank: int | None = None,
                 world_size: int | None = None, return_ids: bool = False,
                 even: str | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if as_ not in ("numpy", "torch"):
            raise ValueError(f"as_ must be 'numpy' or 'torch', got {as_!r}")
        if collate not in ("dense", "padded", "sparse"):
            raise ValueError(f"collate must be 'dense', 'padded' or 'sparse', got {collate!r}")
        self.source = source
        self.transform = transform
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.drop_last = bool(drop_last)
        self.prefetch = int(prefetch)
        self.shuffle_window = int(shuffle_window)
        self.as_ = as_
        self.collate = collate
        self.time_major = True if time_major is None else bool(time_major)
        # where time sits in a transformed batch: (B, T, ...) frames, or (B, C, T) windows
        self.time_axis = int(getattr(source, "time_axis", 1))
        self.scheduler = scheduler
        self.num_threads = num_threads
        self.return_ids = return_ids
        self.rank, self.world_size = _rank_world(rank, world_size, as_)
        if even is None:  # ranks from torch.distributed: DDP needs equal batch counts
            even = "pad" if (rank is None and world_size is None and self.world_size > 1) \
                else "none"
        if even not in ("pad", "drop", "none"):
            raise ValueError(f"even must be 'pad', 'drop' or 'none', got {even!r}")
        self.even = even
        self.bounds = source.partitions()
        self.cache = (TransformCache.for_stream(source, transform, self.bounds, cache_dir)
                      if cache else None)
        self.position = 0  # samples of this epoch's order already delivered

    # -- plan ---------------------------------------------------------------
    def plan(self, consumer: int | None = None, n_consumers: int | None = None,
             epoch: int | None = None) -> EpochPlan:
        """The epoch order of one consumer (default: this stream's rank)."""
        if consumer is None:
            consumer, n_consumers = self.rank, self.world_size
        epoch = self.epoch if epoch is None else epoch
        kw = dict(seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        plan = make_epoch_plan(self.bounds, window=self.shuffle_window, consumer=consumer,
                               n_consumers=n_consumers, **kw)
        if self.even == "none" or n_consumers == 1:
            return plan
        totals = consumer_totals(self.bounds, n_consumers=n_consumers, **kw)
        if self.even == "drop":
            return resize_plan(plan, int(totals.min()))
        if len(plan) == 0 and totals.max() > 0:  # more consumers than partitions: borrow
            donors = np.flatnonzero(totals)
            plan = make_epoch_plan(self.bounds, window=self.shuffle_window,
                                   consumer=int(donors[consumer % len(donors)]),
                                   n_consumers=n_consumers, **kw)
        return resize_plan(plan, int(totals.max()))

    def n_batches(self, n_samples: int) -> int:
        if self.drop_last:
            return n_samples // self.batch_size
        return -(-n_samples // self.batch_size)

    def __len__(self) -> int:
        """Batches in one epoch for this rank."""
        return self.n_batches(len(self.plan()))

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning on the next iteration."""
        self.epoch = int(epoch)
        self.position = 0

    # -- state --------------------------------------------------------------
    def state_dict(self) -> dict:
        """Where this stream is: resume with :meth:`load_state_dict` on an equal stream."""
        return {"version": _STATE_VERSION, "seed": self.seed, "epoch": self.epoch,
                "position": int(self.position), "batch_size": self.batch_size,
                "shuffle": self.shuffle, "shuffle_window": self.shuffle_window,
                "rank": self.rank, "world_size": self.world_size, "even": self.even,
                "plan": plan_digest(self.bounds)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``: the next iteration yields exactly the remaining batches."""
        _check_state(self, state)
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])

    # -- iteration ----------------------------------------------------------
    def __iter__(self):
        plan = self.plan()
        for batch in self.iter_plan(plan, self.position):
            self.position += len(batch[2])
            yield self._emit(batch)
        self.epoch += 1
        self.position = 0

    def _emit(self, batch):
        data, labels, ids = batch
        if self.as_ == "torch":
            from neurodata.pipeline.torch import collate as torch_collate

            data, labels = torch_collate(data, labels, self.collate, self.time_major,
                                         self.time_axis)
        else:
            if self.time_major and self.collate != "padded":
                data = time_major(data, self.time_axis)
            if self.collate != "dense":
                data = collate_numpy(data, self.collate)
        return (data, labels, ids) if self.return_ids else (data, labels)

    def iter_plan(self, plan: EpochPlan, position: int = 0):
        """Yield ``(data, labels, ids)`` numpy batches of ``plan`` from sample ``position`` on."""
        B = self.batch_size
        n = len(plan)
        end = (n // B) * B if self.drop_last else n
        if position >= end:
            return
        span = plan.window_span()
        w0 = int(np.searchsorted(span, position, "right") - 1)
        runner = make_runner(self.scheduler, self.prefetch, self.num_threads)
        task = functools.partial(load_partition, self.source, transform=self.transform,
                                 cache=self.cache, rng_key=(self.seed, plan.epoch))
        results = runner.map(task, plan.parts[w0 * plan.window:].tolist())
        pending: list = []
        pending_n = 0
        pos = position
        try:
            for w in range(w0, plan.n_windows):
                if pos >= end:
                    break
                positions = plan.window_parts(w)
                window = [next(results) for _ in positions]
                datas = [r[0] for r in window]
                label_parts = [np.asarray(r[1]) for r in window]
                first_row = np.zeros(len(window) + 1, np.int64)
                np.cumsum([len(lp) for lp in label_parts], out=first_row[1:])
                labels_all = np.concatenate(label_parts) if len(label_parts) > 1 else label_parts[0]
                base = int(positions[0])
                hi = min(int(span[w + 1]), end)
                while pos < hi:
                    take = min(B - pending_n, hi - pos)
                    pp = plan.part_pos[pos:pos + take] - base
                    rr = plan.row[pos:pos + take]
                    order = np.lexsort((rr, pp))  # contiguous reads per partition
                    pp, rr = pp[order], rr[order]
                    piece = (gather(datas, pp, rr),
                             labels_all[first_row[pp] + rr], plan.ids[pos:pos + take][order])
                    pending.append(piece)
                    pending_n += take
                    pos += take
                    if pending_n == B:
                        yield self._join(pending)
                        pending, pending_n = [], 0
                del window, datas, label_parts, labels_all
            if pending:
                yield self._join(pending)
        finally:
            results.close()

    def _join(self, pieces):
        if len(pieces) == 1:
            return pieces[0]
        return (concat([p[0] for p in pieces]),
                np.concatenate([p[1] for p in pieces]), np.concatenate([p[2] for p in pieces]))

    # -- torch ----------------------------------------------------------------
    def dataset(self, collate: str | None = None):
        """A ``torch.utils.data.IterableDataset`` over this stream's epochs.

        Use with ``DataLoader(ds, batch_size=None, num_workers=...)``: work is
        split over workers and ``torch.distributed`` ranks by partition.
        """
        from neurodata.pipeline.torch import StreamDataset

        return StreamDataset(self, collate=collate)

    def __repr__(self) -> str:
        return (f"Stream({self.source!r}, transform={self.transform!r}, batch_size={self.batch_size}, "
                f"epoch={self.epoch}, partitions={len(self.bounds) - 1}, rank={self.rank}/"
                f"{self.world_size})")


def _rank_world(rank, world_size, as_) -> tuple[int, int]:
    if rank is None and world_size is None and as_ == "torch":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    world = 1 if world_size is None else int(world_size)
    r = 0 if rank is None else int(rank)
    if not 0 <= r < world:
        raise ValueError(f"rank {r} out of range for world_size {world}")
    return r, world


def _check_state(stream: Stream, state: dict) -> None:
    if state.get("version") != _STATE_VERSION:
        raise ValueError(f"unknown stream state version {state.get('version')!r}")
    for key in ("batch_size", "shuffle", "shuffle_window", "rank", "world_size", "even", "plan"):
        mine = plan_digest(stream.bounds) if key == "plan" else getattr(stream, key)
        if key in state and state[key] != mine:
            raise ValueError(f"state was saved with {key}={state[key]!r}, this stream has {mine!r}")


def stream(store: Any, transform=None, batch_size: int = 128, *, shuffle: bool = True,
           seed: int = 0, epoch: int = 0, drop_last: bool = False, prefetch: int = 2,
           shuffle_window: int = 2, as_: str = "numpy", collate: str = "dense",
           time_major: bool | None = None, scheduler=None, num_threads: int | None = None,
           cache: bool = False, cache_dir=None, rank: int | None = None,
           world_size: int | None = None, return_ids: bool = False,
           storage_options: dict | None = None, partition_events: int | None = None,
           max_partition_samples: int | None = 4096, even: str | None = None) -> Stream:
    """Stream batches of a store into a training loop.

    ``for frames, labels in neurodata.stream(store, transform=ToFrame(...), batch_size=128)``

    Parameters
    ----------
    store : path, fsspec URL, opened dataset or StreamSource
        The store to read (``http(s)://``, ``s3://``, ``gs://``, ``hf://`` work
        through fsspec, read lazily).
    transform : callable, optional
        A neurodata transform (one vectorised call per partition) or any
        per-sample callable (called on a structured event array).
    batch_size : int
    shuffle : bool
        Shuffle partition order and samples within a window of partitions.
    seed, epoch : int
        The order is a function of both; the same pair gives the same batches.
    drop_last : bool
        Drop the last incomplete batch of the epoch.
    prefetch : int
        Partitions computed ahead of the consumer; memory is bounded by about
        ``(prefetch + shuffle_window + threads) x partition size``.
    shuffle_window : int
        Partitions mixed together (the shuffle buffer).
    as_ : {"numpy", "torch"}
        Array type of the batches.
    collate : {"dense", "padded", "sparse"}
        Dense arrays (time-major ``[T, B, ...]`` for torch), events padded to
        ``[B, L, 4]`` (x, y, t, p) with lengths, or sparse COO tensors.
    time_major : bool, optional
        Put time first in dense results (default True): frames ``(B, T, ...)``
        become ``[T, B, ...]``, signal windows ``(B, channel, time)`` become
        ``[time, B, channel]`` (the source's ``time_axis`` says where time is).
        A view, not a copy.
    scheduler : None, "threads", "sync" or dask.distributed.Client
        Local dask threads by default; a Client runs partitions on a cluster.
    num_threads : int, optional
        Local threads (default: up to 4, at most the CPU count).
    cache : bool
        Cache transformed partitions next to the store (deterministic
        transforms with ``params()`` only); keyed by transform parameters
        and the store's content hash.
    cache_dir : path, optional
        Where the cache lives (required for remote stores).
    rank, world_size : int, optional
        Which share of each epoch this process reads (default: from
        ``torch.distributed`` when initialised and ``as_="torch"``, else all).
    even : {"pad", "drop", "none"}, optional
        Give every rank and loader worker the same number of samples, and so
        of batches (DDP's collectives hang when one rank stops early): "pad"
        repeats a consumer's first samples (like ``DistributedSampler``),
        "drop" cuts every consumer to the smallest share. Default "pad" when
        the ranks come from ``torch.distributed``, else "none" (each sample
        exactly once per epoch, shares differ by up to a partition).
    return_ids : bool
        Also yield the global sample ids of each batch.
    storage_options : dict, optional
        fsspec options for URLs.
    partition_events, max_partition_samples : int, optional
        Partition size (events, rounded to whole chunks, at most a shard;
        default one shard) and cap in samples (default 4096).

    Returns
    -------
    Stream
        Iterable of ``(data, labels)`` (plus ``ids`` with ``return_ids``);
        labels are int64.
    """
    source = open_source(store, storage_options=storage_options,
                         partition_events=partition_events,
                         max_partition_samples=max_partition_samples)
    return Stream(source, transform, batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                  drop_last=drop_last, prefetch=prefetch, shuffle_window=shuffle_window, as_=as_,
                  collate=collate, time_major=time_major, scheduler=scheduler,
                  num_threads=num_threads, cache=cache, cache_dir=cache_dir, rank=rank,
                  world_size=world_size, return_ids=return_ids, even=even)
