"""Pin an open local store to the version that was current when it was opened.

Stores are replaced in one rename (:func:`neurodata.format.store.atomic_store`),
but readers open arrays lazily by path: a reader that opened version A and
reads after the swap would get B's chunks under A's sample table -- a silent
mix. A :class:`StoreSnapshot` holds a descriptor of the store's folder (so its
inode number cannot be recycled while the reader lives) and, after every read,
checks that the path still names that folder. Swaps only ever move a folder
away from the path, never back, so "still the same folder after the read"
means "the same folder during the whole read": the data returned belongs to
one version, or :class:`~neurodata.errors.StoreReplacedError` says the store
changed and must be reopened.
"""
from __future__ import annotations

import os

from neurodata.errors import StoreReplacedError


class StoreSnapshot:
    """The identity of a local store folder, checked after reads.

    Parameters
    ----------
    path : str
        Local store folder.
    """

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self._fd = None
        self._id = None
        self._open()

    def _open(self) -> None:
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
        try:
            self._fd = os.open(self.path, flags)
        except OSError:  # no folder (yet): the open that follows reports it
            self._fd, self._id = None, None
            return
        st = os.fstat(self._fd)
        self._id = (st.st_dev, st.st_ino)

    @property
    def identity(self):
        """``(device, inode)`` of the pinned folder, or None."""
        return self._id

    @property
    def dir_fd(self):
        """Open descriptor of the pinned folder (None if none): files opened relative to it
        belong to the pinned version even after the path was swapped to another."""
        return self._fd

    def current(self):
        """``(device, inode)`` the path names now, or None if it names nothing."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def changed(self) -> bool:
        """Whether the path no longer names the pinned folder."""
        return self._id is None or self.current() != self._id

    def check(self) -> None:
        """Raise :class:`StoreReplacedError` when the store was replaced since it was pinned."""
        if self.changed():
            raise StoreReplacedError("the store was replaced (re-converted) while open; "
                                     "reopen it to read the new version", self.path)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: module globals (os) may be gone already
            pass

    # a snapshot travels to worker processes by identity; the worker pins the
    # folder again and finds it replaced if the path now names another one
    def __getstate__(self):
        return {"path": self.path, "_id": self._id}

    def __setstate__(self, state):
        self.path = state["path"]
        want = state["_id"]
        self._fd, self._id = None, None
        self._open()
        if self._id != want:
            self.close()
            self._id = None


def is_local(path) -> bool:
    """Whether ``path`` is a local folder path rather than an fsspec URL."""
    return "://" not in os.fspath(path)


def open_pinned(path, open_store, attempts: int = 20):
    """Run ``open_store()`` and return the :class:`StoreSnapshot` it is pinned to.

    ``open_store`` reads the store at ``path`` (metadata, small tables). If a
    replacement overlapped it -- the path names another folder afterwards, or
    the open failed because the folder moved -- it is run again on the new
    version. Returns None for remote URLs and store objects (not pinned).

    Raises
    ------
    StoreReplacedError
        When the store kept being replaced over ``attempts`` opens.
    """
    local = isinstance(path, (str, os.PathLike)) and is_local(path)
    for _ in range(attempts):
        snap = StoreSnapshot(path) if local else None
        if snap is not None and snap.identity is None:
            snap = None  # nothing there: the open reports it
        try:
            open_store()
        except Exception:
            if snap is None or not snap.changed():
                raise
            snap.close()
            continue  # swapped under the open: open the new version
        if snap is None or not snap.changed():
            return snap
        snap.close()
    raise StoreReplacedError("the store kept being replaced while opening", os.fspath(path))


def checked_read(snap, read):
    """``read()``, valid only if the pinned store was not replaced meanwhile.

    A read that fails because the store was swapped (chunk files gone,
    metadata of another version) raises :class:`StoreReplacedError` instead.
    ``snap`` None (remote store) just reads.
    """
    try:
        out = read()
    except Exception:
        if snap is not None:
            snap.check()
        raise
    if snap is not None:
        snap.check()
    return out
