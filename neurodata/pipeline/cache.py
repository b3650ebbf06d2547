"""Cache of transformed partitions next to the store, keyed by what produced them.

tonic's ``DiskCachedDataset`` keys its files by sample index only, so
changing a transform parameter silently serves stale data. Here the key is a
sha256 of the transform pipeline's parameters (``transform.params()``), the
store's content hash and the partition plan: any change lands in a new
folder and the old results are never read. Only transforms that declare
``deterministic = True`` and expose ``params()`` are cached.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings

import numpy as np

from neurodata.pipeline.batches import is_ragged

__all__ = ["TransformCache", "transform_spec", "is_cacheable"]


def transform_spec(transform) -> dict | None:
    """JSON-able description of a transform (type and parameters), or None if it has none."""
    if transform is None:
        return {"type": None}
    params = getattr(transform, "params", None)
    if not callable(params):
        return None
    cls = type(transform)
    return {"type": f"{cls.__module__}.{cls.__qualname__}", "params": _jsonable(params())}


def is_cacheable(transform) -> bool:
    """A transform's results may be cached: it says it is deterministic and has params."""
    return (transform is not None and bool(getattr(transform, "deterministic", False))
            and transform_spec(transform) is not None)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "params") and callable(obj.params):  # nested transforms
        return transform_spec(obj)
    return repr(obj)


class TransformCache:
    """Transformed partitions of one (store, transform, plan) combination.

    Files: ``<root>/<key>/part-<k>.npy`` (dense results) or ``.npz`` (event
    results), plus ``part-<k>.labels.npy`` and ``key.json`` describing the key.
    Writes go to a temporary name and are renamed, so a crashed or concurrent
    writer never leaves a half file that a reader would take.
    """

    def __init__(self, root: str, key: str, spec: dict):
        self.root = os.fspath(root)
        self.key = key
        self.dir = os.path.join(self.root, key)
        self.spec = spec

    @classmethod
    def for_stream(cls, source, transform, bounds, cache_dir=None) -> "TransformCache | None":
        """The cache for a stream, or None when the transform cannot be cached.

        ``cache_dir`` defaults to ``<store>.cache`` beside a local store; a
        remote store needs an explicit ``cache_dir``.
        """
        if not is_cacheable(transform):
            warnings.warn(f"transform {transform!r} is not cacheable (needs deterministic=True "
                          "and params()); streaming without cache", stacklevel=3)
            return None
        url = source.url
        if cache_dir is None:
            if "://" in url and not url.startswith("file://"):
                warnings.warn(f"no cache_dir given for remote store {url}; streaming without cache",
                              stacklevel=3)
                return None
            cache_dir = url.rstrip("/\\").removeprefix("file://") + ".cache"
        from neurodata._version import __version__
        from neurodata.pipeline.shuffle import plan_digest

        spec = {"transform": transform_spec(transform), "store": source.content_hash(),
                "partitions": plan_digest(bounds), "neurodata": __version__}
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]
        return cls(cache_dir, key, spec)

    def _paths(self, k: int):
        base = os.path.join(self.dir, f"part-{k:06d}")
        return base + ".npy", base + ".npz", base + ".labels.npy"

    def load(self, k: int, like=None):
        """``(data, labels)`` of partition ``k`` if cached, else None.

        ``like`` (the untransformed batch) is used to rebuild event results.
        """
        dense, ragged, labels_path = self._paths(k)
        if not os.path.exists(labels_path):
            return None
        labels = np.load(labels_path)
        if os.path.exists(dense):
            return np.load(dense), labels
        if os.path.exists(ragged) and like is not None:
            with np.load(ragged) as z:
                cols = [z[c] for c in ("x", "y", "t", "p")]
                return like.replace(*cols, z["offsets"], labels=labels), labels
        return None

    def save(self, k: int, data, labels) -> bool:
        """Store partition ``k``; returns False for results of a kind that is not cached."""
        dense, ragged, labels_path = self._paths(k)
        os.makedirs(self.dir, exist_ok=True)
        spec_path = os.path.join(self.dir, "key.json")
        if not os.path.exists(spec_path):
            _atomic(spec_path, lambda f: f.write(json.dumps(self.spec, indent=1).encode()))
        if isinstance(data, np.ndarray) and data.dtype != object:
            _atomic(dense, lambda f: np.save(f, data))
        elif is_ragged(data):
            _atomic(ragged, lambda f: np.savez(f, x=data.x, y=data.y, t=data.t, p=data.p,
                                               offsets=data.offsets))
        else:
            return False
        # labels last: their presence marks a complete entry
        _atomic(labels_path, lambda f: np.save(f, np.asarray(labels)))
        return True


def _atomic(path: str, write) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
