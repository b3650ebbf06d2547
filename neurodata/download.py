"""Downloads that survive the real internet, and archive extraction that is safe.

Dataset links die, servers drop connections half way and archives arrive
corrupt; every such case ends here in a :class:`~neurodata.errors.NeurodataError`
that names the URL or file and what went wrong.

- :func:`fetch` downloads one file: mirrors tried in order, retries with
  exponential backoff, HTTP ``Range`` resume of an interrupted transfer (the
  partial file is ``<name>.part`` and is only renamed to ``<name>`` once its
  size and checksum are right), sha256 or md5 verification, a progress bar.
- :func:`extract_archive` unpacks zip and tar(.gz/.bz2/.xz) archives after
  checking every member (no absolute paths, no ``..``, no links leaving the
  target, no device files) and writes a content manifest;
  :func:`verify_manifest` checks an extracted folder against it on reuse.
- The cache folder is ``$NEURODATA_HOME`` (default: the user cache dir);
  ``NEURODATA_OFFLINE=1`` forbids network access and uses only the cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tarfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from neurodata.errors import (ChecksumError, DownloadError, GatedDatasetError, NeurodataError,
                              UnsafeArchiveError)

logger = logging.getLogger("neurodata")

MANIFEST_NAME = ".neurodata-manifest.json"
_BLOCK = 1 << 20
#: HTTP statuses worth retrying on the same mirror (server busy or broken for now)
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}

__all__ = ["data_home", "is_offline", "RemoteFile", "fetch", "file_digest", "verify_file",
           "extract_archive", "verify_manifest", "write_manifest", "check_member_paths",
           "MANIFEST_NAME"]


# --------------------------------------------------------------------------- cache & modes
def data_home() -> Path:
    """The cache folder: ``$NEURODATA_HOME`` or the platform's user cache dir."""
    env = os.environ.get("NEURODATA_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("neurodata"))


def is_offline() -> bool:
    """Whether ``NEURODATA_OFFLINE`` forbids network access."""
    return os.environ.get("NEURODATA_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------- checksums
def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, sha256: str | None = None, md5: str | None = None,
                size: int | None = None, origin: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the given size and digests.

    ``origin`` (the URL it came from) is added to the message.
    """
    path = Path(path)
    where = f" (from {origin})" if origin else ""
    actual_size = path.stat().st_size
    if size is not None and actual_size != int(size):
        raise ChecksumError(f"size {actual_size} bytes, expected {int(size)}{where}", path)
    for algo, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            got = file_digest(path, algo)
            if got.lower() != expected.lower():
                raise ChecksumError(f"{algo} {got} differs from the expected {expected.lower()}"
                                    f"{where}", path)


# --------------------------------------------------------------------------- fetch
@dataclass
class RemoteFile:
    """One file of a dataset: where to get it and how to recognise it.

    Parameters
    ----------
    name : str
        File name in the cache.
    urls : sequence of str
        The primary URL first, then mirrors.
    sha256, md5 : str, optional
        Expected digests (the published one; sha256 preferred).
    size : int, optional
        Expected size in bytes.
    """

    name: str
    urls: Sequence[str] = field(default_factory=list)
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None

    @classmethod
    def from_card(cls, entry: dict) -> "RemoteFile":
        urls = [entry["url"]] if entry.get("url") else []
        urls += list(entry.get("mirrors") or [])
        return cls(entry["name"], urls, entry.get("sha256"), entry.get("md5"), entry.get("size"))


class _Interrupted(Exception):
    """The transfer stopped early; resuming may complete it."""


class _Fatal(Exception):
    """This mirror cannot serve the file (e.g. 404); try the next one."""


def fetch(remote: RemoteFile, folder: str | os.PathLike, *, retries: int = 4,
          backoff: float = 0.5, timeout: float = 60.0, progress: bool = False,
          session=None) -> Path:
    """Download ``remote`` into ``folder`` unless a verified copy is there; return its path.

    Each URL is tried in order; on each, interrupted transfers are resumed
    with an HTTP ``Range`` request up to ``retries`` times, waiting
    ``backoff * 2**k`` seconds between attempts. Data goes to
    ``<name>.part``, which is renamed only after size and checksum match; a
    file failing its checksum is deleted and the next mirror is tried.

    Raises
    ------
    ChecksumError
        Every mirror served content with the wrong checksum.
    DownloadError
        No mirror could serve the file, or offline mode without a cached copy.
    """
    folder = Path(folder)
    dest = folder / remote.name
    part = folder / (remote.name + ".part")
    if dest.exists():
        try:
            verify_file(dest, remote.sha256, remote.md5, remote.size)
            return dest
        except ChecksumError as e:
            if is_offline():
                raise
            logger.warning("%s; downloading it again", e)
            dest.unlink()
    if is_offline():
        raise DownloadError("not in the cache and NEURODATA_OFFLINE is set; download it online "
                            f"first or place it at {dest}", remote.name)
    if not remote.urls:
        raise DownloadError("no URL to download from", remote.name)
    if not (remote.sha256 or remote.md5):
        logger.warning("%s: no published checksum; only the transfer size is checked", remote.name)
    folder.mkdir(parents=True, exist_ok=True)
    import requests

    sess = session or requests.Session()
    failures = []
    checksum_failures = []
    for url in remote.urls:
        try:
            _download_resuming(sess, url, part, remote.size, retries, backoff, timeout, progress,
                               remote.name)
        except _Fatal as e:
            failures.append(f"{url}: {e}")
            continue
        html = _looks_like_html(part) and not remote.name.lower().endswith((".html", ".htm"))
        try:
            verify_file(part, remote.sha256, remote.md5, remote.size, origin=url)
            if html:
                raise ChecksumError("the server sent an HTML page instead of the file "
                                    "(a login, consent or quota page?)", part)
        except ChecksumError as e:
            part.unlink(missing_ok=True)  # corrupt content is never resumed nor kept
            reason = e.reason
            if html and "HTML page" not in reason:
                reason += "; the server sent an HTML page instead of the file"
            checksum_failures.append(e)
            failures.append(f"{url}: {reason}")
            continue
        os.replace(part, dest)
        return dest
    if checksum_failures and len(checksum_failures) == len(failures):
        raise ChecksumError("; ".join(failures), remote.name)
    raise DownloadError("every mirror failed: " + "; ".join(failures), remote.name)


def _download_resuming(sess, url, part: Path, size, retries, backoff, timeout, progress,
                       label) -> None:
    """Bring ``part`` to the complete content of ``url``, resuming across attempts."""
    last = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _download_once(sess, url, part, size, timeout, progress, label)
            return
        except _Interrupted as e:
            last = e
            logger.info("%s: %s (attempt %d of %d), resuming", url, e, attempt + 1, retries + 1)
    raise _Fatal(f"gave up after {retries + 1} attempts: {last}")


def _download_once(sess, url, part: Path, size, timeout, progress, label) -> None:
    import requests

    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > int(size):
        part.unlink()
        offset = 0
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = sess.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=True)
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Interrupted(f"connection failed ({_short_reason(e)})") from None
    except requests.RequestException as e:
        raise _Fatal(f"request failed ({e.__class__.__name__}: {e})") from None
    with resp:
        status = resp.status_code
        if status == 416 and offset:
            # nothing left to send: the part file is complete (or bogus; the checksum decides)
            total = _total_from_content_range(resp.headers.get("Content-Range"))
            if total is None or total == offset:
                return
            part.unlink()
            raise _Interrupted("range not satisfiable, restarting from zero")
        if status in _RETRY_STATUS:
            raise _Interrupted(f"HTTP {status}")
        if status >= 400:
            raise _Fatal(f"HTTP {status} {resp.reason or ''}".rstrip())
        if status == 206 and offset:
            start = _start_from_content_range(resp.headers.get("Content-Range"))
            if start != offset:
                raise _Fatal(f"server resumed at byte {start}, asked for {offset}")
            mode = "ab"
            expected = _total_from_content_range(resp.headers.get("Content-Range"))
        else:  # 200: the server ignored the range; start again
            offset = 0
            mode = "wb"
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
        if expected is None:
            expected = int(size) if size is not None else None
        bar = _bar(expected, offset, progress, label)
        received = offset
        try:
            with open(part, mode) as fh:
                for block in resp.iter_content(chunk_size=1 << 16):
                    fh.write(block)
                    received += len(block)
                    bar.update(len(block))
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as e:
            raise _Interrupted(f"connection dropped at byte {received} "
                               f"({e.__class__.__name__})") from None
        finally:
            bar.close()
        if expected is not None and received < expected:
            raise _Interrupted(f"connection closed at byte {received} of {expected}")


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _short_reason(e: Exception) -> str:
    """The innermost cause of a requests error, e.g. ``NameResolutionError``."""
    import re

    causes = re.findall(r"Caused by (\w+)\(", str(e))
    return causes[-1] if causes else e.__class__.__name__


def _start_from_content_range(value: str | None) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return None


def _total_from_content_range(value: str | None) -> int | None:
    try:
        total = value.rsplit("/", 1)[1]
        return None if total == "*" else int(total)
    except (AttributeError, IndexError, ValueError):
        return None


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _bar(total, initial, enabled, label):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=label, leave=False)


# --------------------------------------------------------------------------- safe extraction
def check_member_paths(members: Iterable[tuple[str, str, str | None]], archive) -> None:
    """Refuse archive members that would write outside the target folder.

    ``members`` yields ``(name, kind, link_target)`` with ``kind`` one of
    ``file``, ``dir``, ``symlink``, ``hardlink``, ``device``. Symlink targets
    are resolved relative to the member's folder, hard-link targets relative
    to the archive root; both must stay inside.
    """
    for name, kind, link in members:
        _check_inside(name, name, archive)
        if kind == "device":
            raise UnsafeArchiveError(f"member {name!r} is a device or FIFO", archive)
        if kind == "symlink":
            if link is None or link.startswith(("/", "\\")) or _has_drive(link):
                raise UnsafeArchiveError(f"symlink {name!r} points to absolute path {link!r}",
                                         archive)
            parent = PurePosixPath(name.replace("\\", "/")).parent
            _check_inside(str(parent / link), name, archive, f"symlink {name!r} -> {link!r}")
        if kind == "hardlink":
            _check_inside(link or "", name, archive, f"hard link {name!r} -> {link!r}")


def _has_drive(name: str) -> bool:
    return len(name) > 1 and name[1] == ":"


def _check_inside(path: str, member: str, archive, what: str | None = None) -> None:
    what = what or f"member {member!r}"
    p = path.replace("\\", "/")
    if p.startswith("/") or _has_drive(p):
        raise UnsafeArchiveError(f"{what} has an absolute path", archive)
    depth = 0
    for part in p.split("/"):
        if part in ("", "."):
            continue
        depth += -1 if part == ".." else 1
        if depth < 0:
            raise UnsafeArchiveError(f"{what} leaves the target folder", archive)


def _tar_members(tf: tarfile.TarFile):
    for m in tf.getmembers():
        if m.issym():
            kind = "symlink"
        elif m.islnk():
            kind = "hardlink"
        elif m.isdir():
            kind = "dir"
        elif m.isfile():
            kind = "file"
        else:  # character/block device, FIFO, contiguous file
            kind = "device"
        yield m.name, kind, m.linkname if kind in ("symlink", "hardlink") else None


def _zip_members(zf: zipfile.ZipFile):
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            yield info.filename, "symlink", zf.read(info).decode("utf-8", "replace")
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            yield info.filename, "device", None
        else:
            yield info.filename, "dir" if info.is_dir() else "file", None


def archive_kind(path: str | os.PathLike) -> str | None:
    """``"zip"``, ``"tar"`` or None, decided from the file's content."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, tarfile.TarError):
        return None
    return None


def extract_archive(archive: str | os.PathLike, target: str | os.PathLike, *,
                    overwrite: bool = False, manifest: bool = True) -> Path:
    """Safely unpack a zip or tar(.gz/.bz2/.xz) archive into ``target``.

    Every member is checked before anything is written; the archive is
    unpacked into a temporary sibling folder that is renamed to ``target``
    when complete, and a manifest (:data:`MANIFEST_NAME`) listing each file's
    size and sha256 is written into it.

    Raises
    ------
    UnsafeArchiveError
        A member has an absolute path, climbs out with ``..``, is a link
        leaving the target, or is a device file.
    CorruptFileError
        The archive cannot be read.
    """
    from neurodata.errors import CorruptFileError

    archive = Path(archive)
    target = Path(target)
    if target.exists():
        if not overwrite:
            raise NeurodataError("extraction target exists", target)
    kind = archive_kind(archive)
    if kind is None:
        raise CorruptFileError("not a zip or tar archive (or a damaged one)", archive)
    tmp = target.parent / f".{target.name}.extract-{uuid.uuid4().hex[:8]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    known: dict[str, str] = {}
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                members = list(_zip_members(zf))
                check_member_paths(members, archive)
                _check_space(sum(i.file_size for i in zf.infolist()), target.parent, archive)
                tmp.mkdir()
                known = _extract_zip(zf, tmp, members, archive)
        else:
            with tarfile.open(archive) as tf:
                check_member_paths(_tar_members(tf), archive)
                _check_space(sum(m.size for m in tf.getmembers() if m.isfile()), target.parent,
                             archive)
                tmp.mkdir()
                tf.extractall(tmp, filter="data")
        if manifest:
            write_manifest(tmp, archive, known=known)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, tarfile.TarError) and "outside" in str(e).lower():
            raise UnsafeArchiveError(str(e), archive) from None
        raise CorruptFileError(f"cannot unpack ({e.__class__.__name__}: {e})", archive) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _check_space(needed: int, folder: Path, archive) -> None:
    """Refuse to start an extraction the disk cannot hold (with 5 % to spare)."""
    free = shutil.disk_usage(folder).free
    if needed * 1.05 > free:
        raise NeurodataError(f"unpacking needs {needed / 1e9:.2f} GB but {folder} has "
                             f"{free / 1e9:.2f} GB free", archive)


def _extract_zip(zf: zipfile.ZipFile, dest: Path, members, archive) -> dict[str, str]:
    """Write the (already checked) members; return each file's sha256, hashed while writing.

    Archives holding symlinks get one more check per member: the real folder
    it is written into, and the real target of each link, must lie inside
    ``dest`` (links of links can point where no single link seems to).
    """
    root = dest.resolve()
    has_links = any(kind == "symlink" for _, kind, _ in members)
    made = {root}
    digests = {}
    for info, (name, kind, link) in zip(zf.infolist(), members):
        rel = PurePosixPath(name.replace("\\", "/"))
        out = root.joinpath(*[p for p in rel.parts if p not in ("", ".")])
        if kind == "dir":
            out.mkdir(parents=True, exist_ok=True)
            continue
        if out.parent not in made:
            out.parent.mkdir(parents=True, exist_ok=True)
            made.add(out.parent)
        if has_links and not _inside(os.path.realpath(out.parent), root):
            raise UnsafeArchiveError(f"member {name!r} would be written through a link "
                                     "leaving the target folder", archive)
        if kind == "symlink":
            os.symlink(link, out)
            if not _inside(os.path.realpath(out), root):
                out.unlink()
                raise UnsafeArchiveError(f"symlink {name!r} -> {link!r} resolves outside the "
                                         "target folder", archive)
            continue
        h = hashlib.sha256()
        with zf.open(info) as src, open(out, "wb") as fh:
            while block := src.read(_BLOCK):
                h.update(block)
                fh.write(block)
        digests[out.relative_to(root).as_posix()] = h.hexdigest()
    return digests


def _inside(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root) + os.sep)


# --------------------------------------------------------------------------- manifest
def _walk_files(folder: Path):
    for p in sorted(folder.rglob("*")):
        if p.name == MANIFEST_NAME and p.parent == folder:
            continue
        if p.is_file() and not p.is_symlink():
            yield p


def write_manifest(folder: str | os.PathLike, archive: str | os.PathLike | None = None,
                   known: dict[str, str] | None = None) -> Path:
    """Record every file's size, mtime and sha256 (and the source archive's) in the folder.

    ``known`` maps relative paths to sha256 digests computed while extracting,
    so those files are not read a second time.
    """
    folder = Path(folder)
    known = known or {}
    files = {}
    for p in _walk_files(folder):
        st = p.stat()
        rel = p.relative_to(folder).as_posix()
        files[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                      "sha256": known.get(rel) or file_digest(p)}
    doc = {"manifest": 1, "files": files}
    if archive is not None:
        archive = Path(archive)
        doc["archive"] = {"name": archive.name, "size": archive.stat().st_size,
                          "sha256": file_digest(archive)}
    out = folder / MANIFEST_NAME
    out.write_text(json.dumps(doc, indent=1, sort_keys=True))
    return out


def verify_manifest(folder: str | os.PathLike, deep: bool = True) -> dict:
    """Check an extracted folder against its manifest; return the manifest.

    ``deep`` recomputes every sha256; otherwise the set of files, their
    sizes and modification times are compared (fast, for reuse).

    Raises
    ------
    ChecksumError
        A file is missing, extra, or has another size or digest (named).
    """
    folder = Path(folder)
    mpath = folder / MANIFEST_NAME
    if not mpath.exists():
        raise ChecksumError("no manifest: extraction never completed", folder)
    try:
        doc = json.loads(mpath.read_text())
        files = doc["files"]
    except (ValueError, KeyError) as e:
        raise ChecksumError(f"unreadable manifest ({e})", mpath) from None
    present = {p.relative_to(folder).as_posix(): p for p in _walk_files(folder)}
    missing = sorted(set(files) - set(present))
    if missing:
        raise ChecksumError(f"{len(missing)} extracted file(s) missing, e.g. {missing[0]!r}",
                            folder)
    extra = sorted(set(present) - set(files))
    if extra:
        raise ChecksumError(f"{len(extra)} file(s) not from the archive, e.g. {extra[0]!r}",
                            folder)
    for rel, meta in files.items():
        p = present[rel]
        st = p.stat()
        if st.st_size != meta["size"]:
            raise ChecksumError(f"size {st.st_size} differs from the extracted "
                                f"{meta['size']}", p)
        if not deep and st.st_mtime_ns != meta.get("mtime_ns", st.st_mtime_ns):
            raise ChecksumError("modified after extraction (mtime changed)", p)
        if deep and file_digest(p) != meta["sha256"]:
            raise ChecksumError("content differs from what was extracted (sha256)", p)
    return doc


def gated_error(name: str, gated: dict, folder: Path,
                homepage: str | None = None) -> GatedDatasetError:
    """The error a gated dataset stops with: the card's instructions plus where files go."""
    reason = gated.get("reason") or "access requires accepting a licence or credentials"
    steps = " ".join(str(gated.get("instructions") or "").split())
    page = f" Homepage: {homepage}." if homepage else ""
    return GatedDatasetError(f"gated dataset: {reason}. {steps}{page} Then place the files in "
                             f"{folder} and run `neurodata download {name}` again.", name)
