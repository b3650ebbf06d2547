"""Publishing a store: stage the upload folder, then commit it to the hub.

The staged folder is exactly what is uploaded (``--dry-run`` writes it and
stops): ``store.zarr/`` (the sharded store as converted), ``data/`` (parquet
view), ``README.md`` (the card) and ``preview.png``.

Uploads are resumable: files are committed in batches, and a re-run first
asks the hub which files it already holds with the same content (git blob
hash) and sends only the rest, so an interrupted publish completes when run
again.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from neurodata.errors import DownloadError, NeurodataError

#: files per commit, and bytes per commit at most
BATCH_FILES = 64
BATCH_BYTES = 256 << 20


class PublishError(NeurodataError):
    """Publishing failed: token, repository or permission problem."""


def stage(store, out_dir, repo_id: str = "ORG/NAME", parquet: bool = True,
          card: dict | None = None, preview: bool = True) -> Path:
    """Write everything a publication uploads into ``out_dir``.

    Returns the folder. The folder must not exist or be empty.
    """
    from neurodata.hub.card import make_card
    from neurodata.hub.parquet import export_parquet

    store = Path(store)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise NeurodataError("staging folder is not empty", out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(store, out / "store.zarr")
    configs = export_parquet(store, out) if parquet else {}
    png = None
    if preview:
        try:
            from neurodata.preview import preview as make_preview

            make_preview(store, out / "preview.png")
            png = "preview.png"
        except (ImportError, NeurodataError, NotImplementedError):
            png = None
    (out / "README.md").write_text(make_card(store, configs, repo_id, card, png))
    return out


def git_blob_sha(path: Path) -> str:
    """The git blob hash of a file (what the hub reports as a regular file's oid)."""
    h = hashlib.sha1()
    h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _remote_oids(api, repo_id, revision) -> dict[str, str]:
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        entries = api.list_repo_tree(repo_id, repo_type="dataset", revision=revision,
                                     recursive=True)
        out = {}
        for e in entries:
            if getattr(e, "size", None) is None or not hasattr(e, "blob_id"):
                continue
            lfs = getattr(e, "lfs", None)
            out[e.path] = ("lfs:" + lfs.sha256) if lfs else e.blob_id
        return out
    except RevisionNotFoundError:
        return {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def publish(store, repo_id: str, *, private: bool = False, revision: str | None = None,
            parquet: bool = True, token: str | None = None, endpoint: str | None = None,
            card: dict | None = None, dry_run_dir=None, message: str = "Publish with neurodata",
            progress: bool = False) -> dict:
    """Publish ``store`` to the hub dataset repository ``repo_id``.

    Parameters
    ----------
    store : path
    repo_id : str
        ``ORG/NAME``; created when missing.
    private : bool
    revision : str, optional
        Branch to commit to (default ``main``).
    parquet : bool
        Also publish the parquet view for ``datasets.load_dataset``.
    token : str, optional
        Default: ``HF_TOKEN`` or the token saved by ``hf auth login``.
    endpoint : str, optional
        Hub URL (default: ``HF_ENDPOINT`` or huggingface.co).
    dry_run_dir : path, optional
        Write what would be uploaded there and return without uploading.

    Returns
    -------
    dict with ``uploaded`` and ``skipped`` file lists and the ``commits`` made.
    """
    if dry_run_dir is not None:
        folder = stage(store, dry_run_dir, repo_id, parquet, card)
        return {"staged": str(folder), "uploaded": [], "skipped": [], "commits": []}
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    token = token or get_token()
    if not token:
        raise PublishError("no HuggingFace token: set HF_TOKEN or run `hf auth login` "
                           "(publishing needs write access)", repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="neurodata-publish-") as tmp:
        folder = stage(store, Path(tmp) / "stage", repo_id, parquet, card)
        try:
            _ensure_repo(api, repo_id, private)
            if revision:
                api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
            remote = _remote_oids(api, repo_id, revision)
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            todo, skipped = [], []
            for p in files:
                rel = p.relative_to(folder).as_posix()
                have = remote.get(rel)
                same = have is not None and (
                    have == git_blob_sha(p) or (have.startswith("lfs:") and have[4:] == _sha256(p)))
                (skipped if same else todo).append((rel, p))
            commits = []
            for batch in _batches(todo):
                ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(p)) for rel, p in batch]
                info = api.create_commit(repo_id, ops, repo_type="dataset", revision=revision,
                                         commit_message=f"{message} ({len(commits) + 1})")
                commits.append(info.oid)
        except RepositoryNotFoundError:
            raise PublishError("repository not found, or this token may not see it", repo_id) from None
        except HfHubHTTPError as e:
            code = getattr(getattr(e, "response", None), "status_code", None)
            if code == 401:
                raise PublishError("the hub refused the token (401): log in again", repo_id) from None
            if code == 403:
                raise PublishError("no permission to write to this repository (403)", repo_id) from None
            raise DownloadError(f"hub error: {e}", repo_id) from None
    return {"uploaded": [r for r, _ in todo], "skipped": [r for r, _ in skipped], "commits": commits}


def _ensure_repo(api, repo_id: str, private: bool) -> None:
    """Create the dataset repository unless it exists (asked first, so a token that
    may read but not create gets a clear permission error later, at commit)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        api.repo_info(repo_id, repo_type="dataset")
        return
    except RepositoryNotFoundError:
        pass
    api.create_repo(repo_id, repo_type="dataset", private=private)


def _batches(items):
    batch, size = [], 0
    for rel, p in items:
        s = p.stat().st_size
        if batch and (len(batch) >= BATCH_FILES or size + s > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((rel, p))
        size += s
    if batch:
        yield batch
