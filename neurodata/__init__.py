"""neurodata: neuro recordings in one chunked, documented format, streamed into training.

Public API
----------
open(path)                  open a store (local or fsspec URL) as a dataset
convert(src, out, ...)      convert files/folders of any supported format into a store
stream(store, ...)          batches for training loops (numpy or torch)
NeurodataError              base class of every input/store/download error
"""
from __future__ import annotations

from neurodata._version import __version__
from neurodata.errors import NeurodataError

__all__ = ["__version__", "open", "convert", "stream", "NeurodataError"]


def __getattr__(name):
    # lazy: keep `import neurodata` light (no zarr/xarray import until used)
    if name == "open":
        from neurodata.dataset import open as _open

        return _open
    if name == "convert":
        from neurodata.conversion import convert

        return convert
    if name == "stream":
        from neurodata.pipeline import stream

        return stream
    raise AttributeError(f"module 'neurodata' has no attribute {name!r}")
