"""Vectorised event transforms and spike encoders.

Every transform is a small dataclass: its fields are its parameters,
``params()`` returns them as a JSON-able dict (used to hash pipelines) and
``deterministic`` says whether it draws random numbers. Call it on a
structured event array (one sample; returns the same kind) or on an
:class:`EventBatch` (columns + offsets; all samples in one vectorised pass).
Random transforms take ``seed`` (int or :class:`numpy.random.Generator`).
Transforms never modify their input.

Conventions: ``x`` column, ``y`` row, ``t`` int64 us, ``p`` 0/1;
``sensor_size = (width, height, polarities)``; frames ``(T, P, H, W)``.
Kernels use numba when installed; set ``NEURODATA_NO_NUMBA=1`` (or call
:func:`set_backend("numpy")`) for the pure-numpy path.
"""
from __future__ import annotations

from neurodata.transforms._base import Transform
from neurodata.transforms._batch import EventBatch
from neurodata.transforms._kernels import get_backend, set_backend
from neurodata.transforms.augment import (
    DropByArea, DropByTime, DropEvent, DropPixel, EventMix, RandomFlipLR, RandomFlipPolarity,
    RandomFlipUD, RandomTimeReversal, SpatialJitter, TimeJitter, TimeSkew, UniformNoise,
)
from neurodata.transforms.compose import Compose
from neurodata.transforms.encoders import (
    BinSpikes, DeltaEncoder, LatencyEncoder, RateEncoder, RepeatEncoder,
)
from neurodata.transforms.filters import (
    CenterCrop, CropTime, Decimation, Denoise, Downsample, MergePolarities, RandomCrop,
    RefractoryPeriod,
)
from neurodata.transforms.representations import (
    SparseFrames, ToAveragedTimeSurface, ToFrame, ToImage, ToPointCloud, ToSparse,
    ToTimeSurface, ToVoxelGrid,
)

__all__ = [
    "EventBatch", "Transform", "Compose", "get_backend", "set_backend",
    # representations
    "ToFrame", "ToImage", "ToVoxelGrid", "ToTimeSurface", "ToAveragedTimeSurface",
    "ToSparse", "SparseFrames", "ToPointCloud",
    # filters and geometry
    "Denoise", "RefractoryPeriod", "Decimation", "Downsample", "CenterCrop", "RandomCrop",
    "CropTime", "MergePolarities",
    # augmentation
    "RandomFlipLR", "RandomFlipUD", "RandomFlipPolarity", "RandomTimeReversal", "DropEvent",
    "DropByTime", "DropByArea", "DropPixel", "TimeJitter", "SpatialJitter", "TimeSkew",
    "UniformNoise", "EventMix",
    # encoders
    "RateEncoder", "LatencyEncoder", "DeltaEncoder", "RepeatEncoder", "BinSpikes",
]
