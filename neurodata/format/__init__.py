"""The common on-disk format: zarr v3 stores that open as an xarray DataTree.

See ``docs/format.md`` for the specification. This package holds the pieces
every modality shares (schema names, provenance, atomic writes, array
creation) and the event-store writer/reader.
"""
from neurodata.format.schema import (
    SCHEMA_ATTR,
    MODALITIES,
    schema_string,
    parse_schema,
    read_root_attrs,
)
from neurodata.format.store import (
    atomic_store,
    create_array,
    finalize_store,
    provenance,
    file_sha256,
)

__all__ = [
    "SCHEMA_ATTR",
    "MODALITIES",
    "schema_string",
    "parse_schema",
    "read_root_attrs",
    "atomic_store",
    "create_array",
    "finalize_store",
    "provenance",
    "file_sha256",
]
