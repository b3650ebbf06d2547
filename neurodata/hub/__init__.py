"""Publishing stores to, and pulling them from, the HuggingFace hub.

One publication serves two kinds of user: the zarr store itself (sharded,
few files) for ``neurodata.open("hf://datasets/ORG/NAME")``, and parquet
shards under ``data/`` with a ``configs:`` card so that
``datasets.load_dataset("ORG/NAME")`` works without neurodata.
"""
from neurodata.hub.card import make_card
from neurodata.hub.parquet import export_parquet
from neurodata.hub.upload import publish, stage
from neurodata.hub.fetch import pull, resolve_hf_url

__all__ = ["make_card", "export_parquet", "publish", "stage", "pull", "resolve_hf_url"]
