"""Streaming stores into training loops: partitions, seeded epochs, dask, torch.

``neurodata.stream(store, transform=..., batch_size=128)`` is the entry point
(:func:`neurodata.pipeline.stream.stream`). Submodules: ``source`` (what a
store offers the pipeline), ``partitions`` (shard-aligned work units),
``shuffle`` (deterministic, resumable epoch order), ``runners`` (dask threads
or a cluster, bounded prefetch), ``cache`` (transformed partitions keyed by
transform parameters and store content), ``torch`` (tensors and an
``IterableDataset``; imports torch).
"""
from __future__ import annotations

from neurodata.pipeline.source import EventSource, StreamSource, open_source
from neurodata.pipeline.stream import Stream, stream

__all__ = ["stream", "Stream", "StreamSource", "EventSource", "open_source"]
