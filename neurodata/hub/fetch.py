"""Pulling published stores from the hub."""
from __future__ import annotations

import os
import re
from pathlib import Path

from neurodata.errors import DownloadError, NeurodataError

_HF = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<rev>[^/]+))?(?:/(?P<path>.*))?$")


def resolve_hf_url(url: str) -> tuple[str, str | None, str]:
    """Split ``hf://datasets/ORG/NAME[@REV][/PATH]`` into (repo, revision, path in repo).

    The path defaults to ``store.zarr``, where :func:`publish` puts the store.
    """
    m = _HF.match(url)
    if not m:
        raise NeurodataError(f"not a hub dataset URL {url!r} (expected hf://datasets/ORG/NAME)")
    return m.group("repo"), m.group("rev"), (m.group("path") or "store.zarr").strip("/")


def pull(url: str, out, endpoint: str | None = None, token: str | None = None) -> Path:
    """Download a published store to ``out`` and return the local store path.

    Only the store (and the card) are fetched, not the parquet view.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    repo, rev, path = resolve_hf_url(url)
    out = Path(out)
    try:
        snapshot_download(repo, repo_type="dataset", revision=rev, local_dir=out,
                          allow_patterns=[f"{path}/**", "README.md"], endpoint=endpoint,
                          token=token)
    except RepositoryNotFoundError:
        raise DownloadError(f"hub dataset {repo!r} not found (or private: log in or pass a token)",
                            url) from None
    except RevisionNotFoundError:
        raise DownloadError(f"revision {rev!r} not found in {repo!r}", url) from None
    store = out / path
    if not (store / "zarr.json").exists():
        raise DownloadError(f"{repo!r} holds no store at {path!r}", url)
    return store


def hf_storage_options(url: str) -> dict:
    """fsspec options for ``hf://`` URLs from the environment (endpoint, token)."""
    opts = {}
    if os.environ.get("HF_ENDPOINT"):
        opts["endpoint"] = os.environ["HF_ENDPOINT"]
    if os.environ.get("HF_TOKEN"):
        opts["token"] = os.environ["HF_TOKEN"]
    return opts
