"""Errors raised by neurodata.

Every problem with user input is a :class:`NeurodataError` that names the file
and says what is wrong, so the CLI can print one line and exit non-zero.
"""
from __future__ import annotations

import os

__all__ = [
    "NeurodataError",
    "FormatError",
    "UnknownFormatError",
    "TruncatedFileError",
    "CorruptFileError",
    "SchemaError",
    "ChecksumError",
    "DownloadError",
    "GatedDatasetError",
    "UnsafeArchiveError",
    "TransformError",
    "StoreReplacedError",
]


class NeurodataError(Exception):
    """Base class: a problem with input data, a store or a download.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str | os.PathLike | None
        The file the problem is in; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class FormatError(NeurodataError):
    """The file is not in the format it claims or was asked to be read as."""


class UnknownFormatError(FormatError):
    """No loader recognises the file."""


class TruncatedFileError(FormatError):
    """The file ends before the data its header announces."""


class CorruptFileError(FormatError):
    """The file's content contradicts its own structure."""


class SchemaError(NeurodataError):
    """A store is missing required attributes or has an unknown schema."""


class ChecksumError(NeurodataError):
    """A file's checksum differs from the expected one."""


class DownloadError(NeurodataError):
    """A download failed on every mirror."""


class GatedDatasetError(NeurodataError):
    """The dataset needs a licence acceptance or credentials first."""


class UnsafeArchiveError(NeurodataError):
    """An archive member would land outside the target folder."""


class TransformError(NeurodataError):
    """A transform failed on a sample; names the sample and the transform."""


class StoreReplacedError(SchemaError):
    """A store was replaced (re-converted) while open; reopen it to read the new version."""
