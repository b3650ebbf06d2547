"""Schema names and versions of neurodata stores.

A store's root attribute ``neurodata_schema`` reads ``"<modality>/<major>"``.
Readers accept every major version up to the one they know; a newer major
version is refused with a clear error instead of being misread.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from neurodata.errors import SchemaError

SCHEMA_ATTR = "neurodata_schema"

#: modality -> newest schema major version this code writes and reads.
MODALITIES = {
    "events": 1,
    "timeseries": 1,
    "imaging": 1,
    "connectome": 1,
}


def schema_string(modality: str) -> str:
    """Return the schema tag written into new stores of ``modality``."""
    return f"{modality}/{MODALITIES[modality]}"


def parse_schema(tag: str, path: str | os.PathLike | None = None) -> tuple[str, int]:
    """Split ``"events/1"`` into ``("events", 1)`` and check it is readable."""
    try:
        modality, major = str(tag).split("/")
        major_i = int(major)
    except ValueError:
        raise SchemaError(f"malformed schema tag {tag!r}", path) from None
    if modality not in MODALITIES:
        raise SchemaError(f"unknown modality {modality!r} in schema {tag!r}", path)
    if major_i > MODALITIES[modality]:
        raise SchemaError(
            f"store schema {tag!r} is newer than this neurodata reads "
            f"({schema_string(modality)}); upgrade neurodata",
            path,
        )
    return modality, major_i


def read_root_attrs(path: str | os.PathLike) -> dict:
    """Read the root attributes of a local store without opening arrays."""
    p = Path(path)
    meta = p / "zarr.json"
    if not p.exists():
        raise SchemaError("no such store", path)
    if not meta.is_file():
        raise SchemaError("not a zarr v3 store (no zarr.json)", path)
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError) as e:
        raise SchemaError(f"unreadable zarr.json ({e})", path) from None
    attrs = doc.get("attributes", {})
    if SCHEMA_ATTR not in attrs:
        raise SchemaError(f"not a neurodata store (no {SCHEMA_ATTR!r} attribute)", path)
    return attrs
