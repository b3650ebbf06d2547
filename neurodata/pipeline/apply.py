"""Running a transform on one partition, and naming the sample when it fails.

neurodata transforms take a whole partition in one vectorised call (an
``EventBatch`` in, frames or events out). Any other callable is taken to be a
per-sample function (tonic style: a structured event array in) and is called
once per sample. A failure becomes a :class:`~neurodata.errors.TransformError`
naming the transform and the sample(s) it failed on, found by re-running the
failed partition sample by sample.
"""
from __future__ import annotations

import numpy as np

from neurodata.errors import NeurodataError, TransformError
from neurodata.pipeline.batches import gather, is_ragged

__all__ = ["apply_transform", "accepts_batches", "load_partition", "seeded_for_partition"]

#: samples named at most in one error message
_MAX_NAMED = 5


def accepts_batches(transform) -> bool:
    """True for transforms that take a whole batch in one call.

    Those are neurodata transforms (defined in ``neurodata.transforms``) and
    any callable with a true ``accepts_batch`` attribute.
    """
    flag = getattr(transform, "accepts_batch", None)
    if flag is not None:
        return bool(flag)
    if type(transform).__module__.startswith("neurodata.transforms"):
        return True
    base = _transform_base()
    return base is not None and isinstance(transform, base)


def _transform_base():
    try:
        from neurodata.transforms import Transform
    except ImportError:
        return None
    return Transform


def _per_sample(transform, data):
    samples = data.split() if is_ragged(data) else list(data)
    outs = [transform(s) for s in samples]
    return _stack(outs, data)


def _stack(outs, like):
    if outs and all(isinstance(o, np.ndarray) and o.dtype.names is None for o in outs) \
            and len({o.shape for o in outs}) == 1 and len({o.dtype for o in outs}) == 1:
        return np.stack(outs)
    if outs and all(isinstance(o, np.ndarray) and o.dtype.names and "t" in o.dtype.names
                    for o in outs) and is_ragged(like):
        counts = np.array([len(o) for o in outs], np.int64)
        off = np.zeros(len(outs) + 1, np.int64)
        np.cumsum(counts, out=off[1:])
        cols = [np.concatenate([o[c] for o in outs]).astype(getattr(like, c).dtype, copy=False)
                for c in ("x", "y", "t", "p")]
        return like.replace(*cols, off)
    return outs


def _call(transform, data):
    if accepts_batches(transform):
        return transform(data)
    return _per_sample(transform, data)


def apply_transform(transform, data, labels, ids, source=None):
    """Transform one partition: ``(data, labels) -> (result, labels)``.

    Labels are taken from the result when a transform changes them (mixing
    transforms return an ``EventBatch`` with soft labels).
    """
    if transform is None:
        return data, labels
    try:
        out = _call(transform, data)
    except Exception as exc:  # any user error: attribute it to samples
        raise _attribute(transform, data, ids, source, exc) from exc
    if is_ragged(out) and getattr(out, "labels", None) is not None:
        labels = np.asarray(out.labels)
    return out, labels


def _name(transform) -> str:
    text = repr(transform)
    if len(text) > 120 or " at 0x" in text:
        text = getattr(transform, "__qualname__", None) or type(transform).__qualname__
    return text


def _attribute(transform, data, ids, source, exc) -> TransformError:
    """Find which samples make ``transform`` fail and build the error."""
    bad = []
    n = len(ids)
    if n > 1:
        for k in range(n):
            try:
                one = gather([data], np.zeros(1, np.int64), np.array([k], np.int64)) \
                    if (is_ragged(data) or isinstance(data, np.ndarray)) else [data[k]]
                _call(transform, one)
            except Exception:
                bad.append(k)
                if len(bad) >= _MAX_NAMED:
                    break
    bad_ids = np.asarray(ids)[bad] if bad else np.asarray(ids)
    if source is not None and hasattr(source, "describe"):
        names = source.describe(bad_ids[:_MAX_NAMED])
    else:
        names = [f"sample {i}" for i in bad_ids[:_MAX_NAMED].tolist()]
    if bad:
        what = ", ".join(names) + (" and more" if len(bad) >= _MAX_NAMED and n > len(bad) else "")
    else:
        what = (f"the batch of samples {int(bad_ids[0])}..{int(bad_ids[-1])}"
                if len(bad_ids) else "an empty batch")
    reason = exc.reason if isinstance(exc, NeurodataError) else f"{type(exc).__name__}: {exc}"
    err = TransformError(f"transform {_name(transform)} failed on {what}: {reason}",
                         getattr(source, "url", None))
    err.sample_ids = [int(i) for i in bad_ids[:_MAX_NAMED]]
    err.transform = _name(transform)
    return err


def seeded_for_partition(transform, entropy):
    """A copy of ``transform`` whose random members draw from generators derived
    from ``entropy`` (stream seed, epoch, partition) and their own ``seed``.

    Partitions run on threads or cluster workers in any order; giving each its
    own generator makes the output of random transforms a function of the
    seed alone, so the same seed gives the same batches however the work is
    scheduled. Deterministic transforms are returned unchanged.
    """
    if transform is None or getattr(transform, "deterministic", True):
        return transform
    import copy

    t = copy.deepcopy(transform)
    counter = [0]

    def visit(obj):
        rng = getattr(obj, "_rng", None)
        if isinstance(rng, np.random.Generator):
            own = getattr(obj, "seed", None)
            own = int(own) if isinstance(own, (int, np.integer)) else 0
            seq = np.random.SeedSequence([*map(int, entropy), own & 0xFFFFFFFF, counter[0]])
            obj._rng = np.random.default_rng(seq)
            counter[0] += 1
        for child in getattr(obj, "transforms", None) or []:
            visit(child)

    visit(t)
    return t


def load_partition(source, k: int, transform=None, cache=None, rng_key=None):
    """Read, transform (or fetch from cache) partition ``k``: ``(data, labels, ids)``.

    This is the body of one dask task. ``rng_key`` (stream seed, epoch) seeds
    random transforms per partition (see :func:`seeded_for_partition`).
    """
    if rng_key is not None:
        transform = seeded_for_partition(transform, (*rng_key, k))
    if cache is not None:
        bounds = source.partitions()
        ids = np.arange(int(bounds[k]), int(bounds[k + 1]), dtype=np.int64)
        hit = cache.load(k)
        if hit is not None:
            return hit[0], hit[1], ids
    data, labels, ids = source.read_partition(k)
    if cache is not None and is_ragged(data) and not isinstance(data, np.ndarray):
        hit = cache.load(k, like=data)
        if hit is not None:
            return hit[0], hit[1], ids
    out, labels = apply_transform(transform, data, labels, ids, source)
    if cache is not None:
        cache.save(k, out, labels)
    return out, labels, ids
