"""Shared fixtures: the real sample recordings in ../shared/data, temp stores."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NEURODATA_SHARED_DATA", PROJECT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real recordings written by other people's software.

    Tests that read real files skip, with this reason, only when it is absent.
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def real_file(shared: Path, rel: str) -> Path:
    """A file below ``shared``; skip with the reason when that one file is missing."""
    p = shared / rel
    if not p.exists():
        pytest.skip(f"real sample file {p} is absent")
    return p


@pytest.fixture(scope="session")
def real(shared_data):
    """``real("events/sample_nmnist.bin")`` -> Path, skipping if missing."""
    return lambda rel: real_file(shared_data, rel)
