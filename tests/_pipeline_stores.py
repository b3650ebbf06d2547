"""Synthetic event stores for the pipeline tests (seeded, written with EventStoreWriter)."""
from __future__ import annotations

import numpy as np

from neurodata.format.events import EventStoreWriter
from neurodata.format.store import atomic_store

SENSOR = (34, 34, 2)


def sample_events(i: int, n: int, rng) -> tuple:
    """Events of sample ``i``: its first timestamp is ``i * 1000`` (identifies the sample)."""
    t = i * 1000 + np.sort(rng.integers(0, 300_000, n))
    if n:
        t[0] = i * 1000
    return (rng.integers(0, SENSOR[0], n), rng.integers(0, SENSOR[1], n), t,
            rng.integers(0, 2, n))


def make_store(path, n_samples: int = 300, seed: int = 0, max_events: int = 200,
               chunk: int = 1024, shard: int = 4096, labels=None):
    """A store of ``n_samples`` samples; label of sample i is ``i`` unless ``labels`` given."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_events, n_samples)
    with atomic_store(path) as tmp:
        w = EventStoreWriter(tmp, sensor_size=SENSOR, chunk=chunk, shard=shard)
        for i, n in enumerate(counts):
            lab = i if labels is None else int(labels[i])
            w.add(sample_events(i, int(n), rng), label=lab, source=f"synthetic#{i}")
        w.close()
    return path


def to_frame():
    from neurodata.transforms import ToFrame

    return ToFrame
