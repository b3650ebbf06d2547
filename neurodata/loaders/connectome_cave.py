"""CAVE synapse tables (MICrONS minnie65, FlyWire, FANC...) -> a ``connectome/1`` store.

CAVE's materialization engine serves frozen snapshots ("versions") of
annotation tables. A synapse table has one row per synapse with
``pre_pt_root_id`` / ``post_pt_root_id`` (the segment ids of the two cells at
that version) and ``size`` (cleft size in voxels). We use the REST endpoints
``caveclient``'s ``MaterializationClient`` uses (datastack info ->
materialization server, ``versions``, ``tables``, ``count``, and the v3
``query`` POST answering an Arrow IPC stream), with ``requests`` directly:
``caveclient`` requires pandas < 3 and IPython.

Pages (``offset``/``limit``) are spilled to a temporary folder while the set
of root ids is collected, because the store's neuron table must exist before
its edges; a second pass over the spill maps root ids to indices and either
aggregates synapses into one edge per (pre, post) pair (``weight`` = synapse
count, ``size`` = summed size) or writes one edge per synapse. Memory is
bounded by the neuron table plus the distinct pairs (or one page).
"""
from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from neurodata.errors import DownloadError
from neurodata.format.connectome import CHEMICAL, ConnectomeWriter
from neurodata.format.store import atomic_store, provenance
from neurodata.loaders import _connectome_http as http

VERSION = "1"
TOKEN_ENV = "CAVE_TOKEN"
DEFAULT_SERVER = "https://global.daf-apis.com"

#: Datastack name prefixes -> species (sets the ``species`` attribute).
SPECIES = {"minnie": "Mus musculus", "v1dd": "Mus musculus", "flywire": "Drosophila melanogaster",
           "fanc": "Drosophila melanogaster", "h01": "Homo sapiens"}

#: Rows handled per array in the second pass.
_PASS_ROWS = 1 << 22


def sniff(path, head: bytes) -> bool:
    """Never matches a file: CAVE is a server, reached through :func:`convert_cave`."""
    return False


def convert_cave(datastack: str, table: str, out, server: str = DEFAULT_SERVER,
                 token: str | None = None, version: int | None = None,
                 aggregate: bool = True, min_weight: int = 1,
                 pre_column: str = "pre_pt_root_id", post_column: str = "post_pt_root_id",
                 size_column: str | None = "size", cell_types: str | None = None,
                 page_size: int = 100_000, overwrite: bool = False,
                 attrs: dict | None = None) -> Path:
    """Fetch a CAVE synapse table into a store at ``out``.

    Parameters
    ----------
    datastack : str
        Datastack name (``minnie65_public``, ``flywire_fafb_public``).
    table : str
        Synapse table (``synapses_pni_2``).
    out : path-like
        Store folder to create (written atomically).
    server : str
        CAVE global server (its info service names the materialization server).
    token : str, optional
        API token (default: the ``CAVE_TOKEN`` variable).
    version : int, optional
        Materialization version (default: the newest the server lists).
    aggregate : bool
        One edge per (pre, post) pair with ``weight`` = synapse count and
        ``size`` = summed size (default), or one edge per synapse with
        ``weight`` 1, ``size`` and ``synapse_id``.
    min_weight : int
        Smallest synapse count kept (aggregated edges only).
    pre_column, post_column, size_column : str
        Column names in the table (``size_column=None``: no size).
    cell_types : str, optional
        A cell-type table (``pt_root_id``, ``cell_type``,
        ``classification_system``) filling ``cell_type`` and ``class``.
    page_size : int
        Rows per request (``offset``/``limit`` paging).
    overwrite : bool
        Replace an existing store.
    attrs : dict, optional
        Extra root attributes.

    Returns
    -------
    Path of the finished store.
    """
    out = Path(out)
    with atomic_store(out, overwrite=overwrite) as tmp:
        convert(None, tmp, attrs=attrs, datastack=datastack, table=table, server=server,
                token=token, version=version, aggregate=aggregate, min_weight=min_weight,
                pre_column=pre_column, post_column=post_column, size_column=size_column,
                cell_types=cell_types, page_size=page_size)
    return out


def convert(src, out, attrs=None, *, datastack: str, table: str, server: str = DEFAULT_SERVER,
            token=None, version=None, aggregate=True, min_weight=1,
            pre_column="pre_pt_root_id", post_column="post_pt_root_id", size_column="size",
            cell_types=None, page_size=100_000) -> None:
    """Loader contract entry: write the store into the (temporary) folder ``out``."""
    cave = MaterializationQuery(server, datastack, token, version)
    cave.check_table(table)
    expected = cave.count(table)
    cols = [pre_column, post_column] + ([size_column] if size_column else [])
    with tempfile.TemporaryDirectory(prefix="neurodata-cave-") as spill_dir:
        spill = _Spill(Path(spill_dir), bool(size_column))
        for page in cave.pages(table, cols, page_size, expected):
            pre = _ids(page[pre_column], pre_column, cave.query_url(table))
            post = _ids(page[post_column], post_column, cave.query_url(table))
            size = np.asarray(page[size_column], np.float64) if size_column else None
            spill.add(pre, post, size)
        ids = spill.ids
        if not len(ids):
            raise DownloadError(f"table {table!r} has no synapse with two assigned cells",
                                cave.query_url(table))
        neurons = {"id": ids}
        if cell_types:
            neurons.update(cave.cell_type_columns(cell_types, ids, page_size))
        a = {"release": datastack, "version": int(cave.version), "source": "CAVE",
             "server": cave.server, "table": table, "weight_units": "synapses",
             "synapses_in_table": int(spill.n_rows),
             "synapses_without_cell": int(spill.n_unassigned)}
        for prefix, species in SPECIES.items():
            if datastack.lower().startswith(prefix):
                a["species"] = species
        if aggregate:
            a["min_weight"] = int(min_weight)
        a.update(attrs or {})
        extra = {}
        if size_column:
            extra["size"] = np.float64
        if not aggregate:
            extra["synapse_row"] = np.int64
        writer = ConnectomeWriter(out, neurons, edge_columns=extra, attrs=a)
        try:
            if aggregate:
                _write_pairs(writer, spill, ids, min_weight)
            else:
                _write_synapses(writer, spill, ids)
        finally:
            spill.close()
        writer.close(provenance((), loader=f"cave/{VERSION}", server=cave.server,
                                datastack=datastack, table=table, version=int(cave.version)))


class MaterializationQuery:
    """REST calls to one datastack's materialization engine.

    Parameters
    ----------
    server, datastack, token, version
        As for :func:`convert_cave`.
    """

    def __init__(self, server: str, datastack: str, token=None, version=None):
        self.server = http.normalise_server(server)
        self.datastack = str(datastack)
        self.session = http.session(http.bearer_token(token, TOKEN_ENV, self.server),
                                    cookie="middle_auth_token")
        info_url = f"{self.server}/info/api/v2/datastack/full/{self.datastack}"
        info = self._json("GET", info_url, f"datastack {self.datastack!r}",
                          missing=f"no datastack {self.datastack!r} on this server")
        local = info.get("local_server") if isinstance(info, dict) else None
        self.mat_server = http.normalise_server(local) if local else self.server
        self.api = f"{self.mat_server}/materialize/api"
        versions = self._json("GET", f"{self.api}/v3/datastack/{self.datastack}/versions",
                              "materialization versions")
        if not isinstance(versions, list) or not versions:
            raise DownloadError(f"datastack {self.datastack!r} lists no materialization "
                                "versions", self.mat_server)
        versions = sorted(int(v) for v in versions)
        if version is None:
            version = versions[-1]
        elif int(version) not in versions:
            raise DownloadError(f"datastack {self.datastack!r} has no materialization version "
                                f"{version} (versions: {versions})", self.mat_server)
        self.version = int(version)

    def _json(self, method, url, what, missing=None, **kw):
        r = http.request(self.session, method, url, what=what, missing=missing, **kw)
        return http.json_body(r, url, what)

    def _v2(self, table: str | None = None) -> str:
        base = f"{self.api}/v2/datastack/{self.datastack}/version/{self.version}"
        return base if table is None else f"{base}/table/{table}"

    def query_url(self, table: str) -> str:
        return (f"{self.api}/v3/datastack/{self.datastack}/version/{self.version}"
                f"/table/{table}/query")

    def check_table(self, table: str) -> None:
        """Raise a :class:`DownloadError` listing the tables when ``table`` is absent."""
        tables = self._json("GET", f"{self._v2()}/tables", "the table list")
        if table not in tables:
            raise DownloadError(f"no table {table!r} in datastack {self.datastack!r} version "
                                f"{self.version} (tables: {', '.join(sorted(tables))})",
                                self.mat_server)

    def count(self, table: str) -> int | None:
        """Rows in ``table`` at this version (None when the server will not say)."""
        try:
            n = self._json("GET", f"{self._v2(table)}/count", f"the row count of {table!r}")
            return int(n)
        except (DownloadError, TypeError, ValueError):
            return None

    def page(self, table: str, columns, offset: int, limit: int, filters=None):
        """One page of ``columns`` as a pyarrow Table (rows ``offset`` .. ``offset+limit``)."""
        import pyarrow as pa

        url = self.query_url(table)
        body = {"select_columns": list(columns), "offset": int(offset), "limit": int(limit)}
        body.update(filters or {})
        r = http.request(self.session, "POST", url, what=f"rows {offset}.. of {table!r}",
                         params={"return_pyarrow": "True", "arrow_format": "True",
                                 "split_positions": "True"},
                         data=json.dumps(body),
                         headers={"Content-Type": "application/json"})
        kind = r.headers.get("Content-Type", "")
        if "arrow" not in kind:
            raise DownloadError(f"query answered {kind or 'no content type'!r}, expected an "
                                "Arrow IPC stream (data.arrow)", url)
        try:
            with pa.ipc.open_stream(r.content) as reader:
                got = reader.read_all()
        except (pa.ArrowInvalid, OSError) as e:
            raise DownloadError(f"unreadable Arrow answer ({e})", url) from None
        missing = [c for c in columns if c not in got.column_names]
        if missing:
            raise DownloadError(f"table {table!r} has no column(s) {missing} "
                                f"(got {got.column_names})", url)
        return got

    def pages(self, table: str, columns, page_size: int, expected: int | None, filters=None):
        """Every row of ``table``, ``page_size`` at a time, as dicts of numpy arrays.

        Stops at the first empty page (a server may cap ``limit`` below
        ``page_size``), then checks the total against the table's count.
        """
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        offset = 0
        while True:
            got = self.page(table, columns, offset, page_size, filters)
            if got.num_rows == 0:
                break
            yield {c: got.column(c).to_numpy(zero_copy_only=False) for c in columns}
            offset += got.num_rows
        if expected is not None and filters is None and offset != expected:
            raise DownloadError(f"table {table!r} returned {offset} rows but counts "
                                f"{expected}", self.query_url(table))

    def cell_type_columns(self, table: str, ids: np.ndarray, page_size: int) -> dict:
        """``cell_type`` and ``class`` per neuron from a cell-type table (first row wins)."""
        self.check_table(table)
        cell_type = np.full(len(ids), "", dtype=object)
        klass = np.full(len(ids), "", dtype=object)
        seen = np.zeros(len(ids), bool)
        cols = ["pt_root_id", "cell_type", "classification_system"]
        for page in self.pages(table, cols, page_size, self.count(table)):
            root = _ids(page["pt_root_id"], "pt_root_id", self.query_url(table))
            pos = np.minimum(np.searchsorted(ids, root), len(ids) - 1)
            hit = np.nonzero((ids[pos] == root) & ~seen[pos])[0]
            hit = hit[np.unique(pos[hit], return_index=True)[1]]
            cell_type[pos[hit]] = page["cell_type"][hit]
            klass[pos[hit]] = page["classification_system"][hit]
            seen[pos[hit]] = True
        return {"cell_type": _text(cell_type), "class": _text(klass)}


def _text(a) -> np.ndarray:
    return np.array(["" if v is None else str(v) for v in a], dtype=str)


def _ids(values, name: str, url) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype.kind not in "iu":
        raise DownloadError(f"column {name!r} holds {a.dtype} values, expected integer "
                            "root ids", url)
    if a.dtype == np.uint64 and a.size and a.max() > np.iinfo(np.int64).max:
        raise DownloadError(f"column {name!r} holds ids beyond int64", url)
    return a.astype(np.int64)


class _Spill:
    """Synapse rows parked on disk between the two passes; root ids collected on the way."""

    def __init__(self, folder: Path, with_size: bool):
        self.files = {k: open(folder / f"{k}.bin", "w+b")
                      for k in ("pre", "post", "row") + (("size",) if with_size else ())}
        self.ids = np.zeros(0, np.int64)
        self.n_rows = 0
        self.n_unassigned = 0
        self.n = 0

    def add(self, pre, post, size) -> None:
        rows = np.arange(self.n_rows, self.n_rows + len(pre), dtype=np.int64)
        self.n_rows += len(pre)
        ok = (pre != 0) & (post != 0)   # root id 0: the synapse touches no segment
        self.n_unassigned += int(len(pre) - np.count_nonzero(ok))
        cols = {"pre": pre[ok], "post": post[ok], "row": rows[ok]}
        if size is not None:
            cols["size"] = size[ok]
        for k, v in cols.items():
            self.files[k].write(np.ascontiguousarray(v).tobytes())
        self.n += len(cols["pre"])
        self.ids = np.union1d(self.ids, np.concatenate([cols["pre"], cols["post"]]))

    def chunks(self):
        """The spilled rows in chunks of :data:`_PASS_ROWS`, as dicts of arrays."""
        dtypes = {"pre": np.int64, "post": np.int64, "row": np.int64, "size": np.float64}
        for f in self.files.values():
            f.flush()
            f.seek(0)
        for start in range(0, self.n, _PASS_ROWS):
            count = min(_PASS_ROWS, self.n - start)
            yield {k: np.fromfile(f, dtype=dtypes[k], count=count)
                   for k, f in self.files.items()}

    def close(self) -> None:
        for f in self.files.values():
            if not f.closed:
                f.close()


def _write_synapses(writer: ConnectomeWriter, spill: _Spill, ids: np.ndarray) -> None:
    for c in spill.chunks():
        extra = {"synapse_row": c["row"]}
        if "size" in c:
            extra["size"] = c["size"]
        writer.append(np.searchsorted(ids, c["pre"]), np.searchsorted(ids, c["post"]),
                      np.ones(len(c["pre"]), np.int32), CHEMICAL, **extra)


def _write_pairs(writer: ConnectomeWriter, spill: _Spill, ids: np.ndarray,
                 min_weight: int) -> None:
    """Aggregate synapses by (pre, post): key = pre * n + post, merged chunk by chunk."""
    n = len(ids)
    if n > 3_000_000_000:
        raise DownloadError(f"{n} cells: pair keys would overflow int64")
    keys = np.zeros(0, np.int64)
    counts = np.zeros(0, np.int64)
    sizes = np.zeros(0, np.float64)
    with_size = "size" in spill.files
    for c in spill.chunks():
        k = np.searchsorted(ids, c["pre"]) * n + np.searchsorted(ids, c["post"])
        keys = np.concatenate([keys, k])
        counts = np.concatenate([counts, np.ones(len(k), np.int64)])
        if with_size:
            sizes = np.concatenate([sizes, c["size"]])
        keys, inv = np.unique(keys, return_inverse=True)
        counts = np.bincount(inv, weights=counts, minlength=len(keys)).astype(np.int64)
        if with_size:
            sizes = np.bincount(inv, weights=sizes, minlength=len(keys))
    keep = counts >= min_weight
    if counts.size and counts.max() >= 2 ** 31:
        warnings.warn("a pair has more than 2^31 synapses; weights clipped", stacklevel=3)
    keys, counts = keys[keep], np.minimum(counts[keep], 2 ** 31 - 1).astype(np.int32)
    sizes = sizes[keep] if with_size else None
    for s in range(0, len(keys), writer.chunk):
        k = keys[s:s + writer.chunk]
        extra = {"size": sizes[s:s + writer.chunk]} if with_size else {}
        writer.append(k // n, k % n, counts[s:s + writer.chunk], CHEMICAL, **extra)
