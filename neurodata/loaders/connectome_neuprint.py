"""neuPrint queries (hemibrain, MANC, optic lobe...) -> a ``connectome/1`` store.

neuPrint serves a Neo4j graph through neuprintHTTP: ``:Neuron`` nodes
(``bodyId``, ``type``, ``instance``, ``status``, per-ROI boolean flags,
``somaLocation``...) joined by ``:ConnectsTo`` relationships whose
``weight`` is the synapse count and whose ``roiInfo`` (a JSON string) splits
it per ROI. Cypher goes to ``POST /api/custom/custom`` as
``{"cypher": ..., "dataset": ...}`` with a bearer token, and the answer is
``{"columns": [...], "data": [[...], ...]}`` - the same endpoint
``neuprint-python``'s ``Client.fetch_custom`` uses. We talk to it with
``requests`` directly because ``neuprint-python`` pins pandas < 3 through its
dependencies and insists on https.

Results are paged with ``ORDER BY ... SKIP ... LIMIT`` so a server never has
to send the whole edge list at once; the neuron table is fetched first
(the writer needs it to turn body ids into indices), then connection pages
stream into :class:`~neurodata.format.connectome.ConnectomeWriter`, so
memory is bounded by the neuron table plus one page.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from neurodata.errors import DownloadError, FormatError
from neurodata.format.connectome import CHEMICAL, ConnectomeWriter
from neurodata.format.store import atomic_store, provenance
from neurodata.loaders import _connectome_http as http

VERSION = "1"
TOKEN_ENV = "NEUPRINT_APPLICATION_CREDENTIALS"

#: neuPrint datasets of the fruit fly (sets the ``species`` attribute).
FLY_DATASETS = ("hemibrain", "manc", "optic-lobe", "fib19", "cns", "male-cns", "vnc", "fanc")

_NEURON_COLUMNS = ("bodyId", "type", "instance", "status", "class", "somaSide",
                   "predictedNt", "pre", "post", "somaLocation")


def sniff(path, head: bytes) -> bool:
    """Never matches a file: neuPrint is a server, reached through :func:`convert_neuprint`."""
    return False


def convert_neuprint(server: str, dataset: str, out, token: str | None = None,
                     rois: Sequence[str] | None = None, min_weight: int = 1,
                     status: Sequence[str] | str | None = None, page_size: int = 50_000,
                     overwrite: bool = False, attrs: dict | None = None) -> Path:
    """Fetch a neuPrint dataset's neurons and connections into a store at ``out``.

    Parameters
    ----------
    server : str
        neuprintHTTP address (``neuprint.janelia.org``, ``https://host:port``);
        a bare host means https.
    dataset : str
        Dataset name as the server lists it (``hemibrain:v1.2.1``, ``manc:v1.0``).
    out : path-like
        Store folder to create (written atomically).
    token : str, optional
        API token (default: the ``NEUPRINT_APPLICATION_CREDENTIALS`` variable).
    rois : sequence of str, optional
        Keep neurons with synapses in any of these ROIs, and split each
        connection into one edge per listed ROI (``region`` column, weight =
        the ROI's synapse count from ``roiInfo``). Default: whole-body
        connections, no ``region``.
    min_weight : int
        Smallest synapse count kept (per ROI when ``rois`` is given).
    status : str or sequence of str, optional
        Keep neurons with this reconstruction status only (e.g. ``"Traced"``).
    page_size : int
        Rows per request (``SKIP``/``LIMIT`` paging).
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
        convert(None, tmp, attrs=attrs, server=server, dataset=dataset, token=token,
                rois=rois, min_weight=min_weight, status=status, page_size=page_size)
    return out


def convert(src, out, attrs=None, *, server: str, dataset: str, token: str | None = None,
            rois=None, min_weight: int = 1, status=None, page_size: int = 50_000) -> None:
    """Loader contract entry: write the store into the (temporary) folder ``out``."""
    client = NeuprintQuery(server, dataset, token)
    info = client.dataset_info()
    rois = _check_rois(rois, info, client.url)
    statuses = [status] if isinstance(status, str) else list(status or [])
    where = _neuron_conditions(rois, statuses)

    neurons = client.neurons(where, page_size)
    ids = neurons["id"]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]

    categories = {"region": list(rois)} if rois else None
    a = {"release": dataset, "source": "neuPrint", "server": client.server,
         "weight_units": "synapses", "min_weight": int(min_weight)}
    if any(dataset.lower().startswith(f) for f in FLY_DATASETS):
        a["species"] = "Drosophila melanogaster"
    for k in ("uuid", "last-mod"):
        if k in info:
            a["version" if k == "uuid" else "last_modified"] = str(info[k])
    if rois:
        a["rois"] = list(rois)
    if statuses:
        a["status"] = statuses
    a.update(attrs or {})
    writer = ConnectomeWriter(out, neurons, categories=categories, attrs=a)
    for page in client.connections(where, min_weight, bool(rois), page_size):
        pre_id, post_id, weight = page["pre"], page["post"], page["weight"]
        region = None
        if rois:
            pre_id, post_id, weight, region = _split_by_roi(pre_id, post_id, page["roiInfo"],
                                                            rois, client.url)
        keep = weight >= min_weight
        pre = _index_of(pre_id[keep], sorted_ids, order, client.url)
        post = _index_of(post_id[keep], sorted_ids, order, client.url)
        extra = {"region": region[keep]} if rois else {}
        writer.append(pre, post, weight[keep].astype(np.int32), CHEMICAL, **extra)
    writer.close(provenance((), loader=f"neuprint/{VERSION}", server=client.server,
                            dataset=dataset, queries=client.n_requests))


class NeuprintQuery:
    """Cypher queries against one neuPrint dataset, paged and checked.

    Parameters
    ----------
    server, dataset, token
        As for :func:`convert_neuprint`.
    """

    def __init__(self, server: str, dataset: str, token: str | None = None):
        self.server = http.normalise_server(server)
        self.dataset = str(dataset)
        self.url = f"{self.server}/api/custom/custom"
        self.session = http.session(http.bearer_token(token, TOKEN_ENV, self.server))
        self.session.headers["Content-Type"] = "application/json"
        self.n_requests = 0

    def dataset_info(self) -> dict:
        """The server's ``/api/dbmeta/datasets`` entry for the dataset (ROIs, uuid...)."""
        url = f"{self.server}/api/dbmeta/datasets"
        r = http.request(self.session, "GET", url, what="the dataset list")
        self.n_requests += 1
        listing = http.json_body(r, url, "the dataset list")
        if not isinstance(listing, dict):
            raise DownloadError("dataset list is not a JSON object", url)
        if self.dataset not in listing:
            names = ", ".join(sorted(listing)) or "none"
            raise DownloadError(f"no dataset {self.dataset!r} on this server "
                                f"(datasets: {names})", self.server)
        entry = listing[self.dataset]
        return entry if isinstance(entry, dict) else {}

    def cypher(self, query: str) -> tuple[list[str], list[list]]:
        """Run one Cypher query; return ``(columns, rows)``."""
        r = http.request(self.session, "POST", self.url, what="a cypher query",
                         data=json.dumps({"cypher": query, "dataset": self.dataset}))
        self.n_requests += 1
        body = http.json_body(r, self.url, "a cypher query")
        if not isinstance(body, dict) or "data" not in body or "columns" not in body:
            raise DownloadError("cypher answer lacks 'columns'/'data'", self.url)
        if body.get("error"):
            raise DownloadError(f"cypher error: {body['error']}", self.url)
        return list(body["columns"]), body["data"] or []

    def pages(self, query: str, expect: Sequence[str], page_size: int) -> Iterator[list[list]]:
        """Rows of an ``ORDER BY``-ed query, ``page_size`` at a time (SKIP/LIMIT)."""
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        skip = 0
        while True:
            cols, rows = self.cypher(f"{query}\nSKIP {skip} LIMIT {page_size}")
            if rows and cols != list(expect):
                raise DownloadError(f"cypher answer has columns {cols}, expected {list(expect)}",
                                    self.url)
            if rows:
                yield rows
            if len(rows) < page_size:
                return
            skip += len(rows)

    def neurons(self, where: str, page_size: int) -> dict[str, np.ndarray]:
        """The neuron table (writer columns) of every ``:Neuron`` matching ``where``."""
        ret = ",\n       ".join(f"n.{c} AS {c}" for c in _NEURON_COLUMNS)
        query = (f"MATCH (n:Neuron)\n{_where(where.replace('{v}', 'n'))}"
                 f"RETURN {ret}\nORDER BY n.bodyId")
        rows = [r for page in self.pages(query, _NEURON_COLUMNS, page_size) for r in page]
        if not rows:
            raise DownloadError(f"dataset {self.dataset!r} has no neurons matching the query",
                                self.url)
        cols = dict(zip(_NEURON_COLUMNS, zip(*rows)))
        table = {
            "id": _int_column(cols["bodyId"], "bodyId", self.url, allow_null=False),
            "name": _str_column(cols["instance"]),
            "cell_type": _str_column(cols["type"]),
            "class": _str_column(cols["class"]),
            "side": _str_column(cols["somaSide"]),
            "neurotransmitter": _str_column(cols["predictedNt"]),
            "status": _str_column(cols["status"]),
            "n_pre": _int_column(cols["pre"], "pre", self.url),
            "n_post": _int_column(cols["post"], "post", self.url),
        }
        xyz = np.array([_point(p, self.url) for p in cols["somaLocation"]], np.float64)
        if np.isfinite(xyz).any():
            table.update(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2])
        return table

    def connections(self, where: str, min_weight: int, with_rois: bool,
                    page_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Pages of ``:ConnectsTo`` edges between matching neurons, as arrays."""
        cond = " AND ".join(c for c in (f"e.weight >= {int(min_weight)}",
                                        where.replace("{v}", "a"), where.replace("{v}", "b")) if c)
        cols = ["bodyId_pre", "bodyId_post", "weight"] + (["roiInfo"] if with_rois else [])
        ret = "a.bodyId AS bodyId_pre, b.bodyId AS bodyId_post, e.weight AS weight"
        if with_rois:
            ret += ", e.roiInfo AS roiInfo"
        query = (f"MATCH (a:Neuron)-[e:ConnectsTo]->(b:Neuron)\nWHERE {cond}\n"
                 f"RETURN {ret}\nORDER BY a.bodyId, b.bodyId")
        for rows in self.pages(query, cols, page_size):
            c = list(zip(*rows))
            page = {"pre": _int_column(c[0], "bodyId_pre", self.url, allow_null=False),
                    "post": _int_column(c[1], "bodyId_post", self.url, allow_null=False),
                    "weight": _int_column(c[2], "weight", self.url, allow_null=False)}
            if with_rois:
                page["roiInfo"] = c[3]
            yield page


def _where(cond: str) -> str:
    return f"WHERE {cond}\n" if cond else ""


_ROI_NAME = re.compile(r"^[^`\n]+$")


def _check_rois(rois, info: dict, url) -> list[str]:
    if rois is None:
        return []
    rois = [rois] if isinstance(rois, str) else [str(r) for r in rois]
    bad = [r for r in rois if not _ROI_NAME.match(r)]
    if bad:
        raise FormatError(f"ROI names may not contain backticks or newlines: {bad}", url)
    known = set(info.get("ROIs") or []) | set(info.get("superLevelROIs") or [])
    if known:
        unknown = [r for r in rois if r not in known]
        if unknown:
            raise DownloadError(f"dataset has no ROI {unknown[0]!r} "
                                f"(it has {len(known)} ROIs, e.g. {sorted(known)[:5]})", url)
    return list(dict.fromkeys(rois))


def _neuron_conditions(rois: list[str], statuses: list[str]) -> str:
    """A Cypher condition on a neuron variable ``{v}`` (filled in per query)."""
    conds = []
    if rois:
        conds.append("(" + " OR ".join("{v}.`" + r + "`" for r in rois) + ")")
    if statuses:
        conds.append("{v}.status IN " + json.dumps(statuses))
    return " AND ".join(conds)


def _split_by_roi(pre, post, roi_info, rois: list[str], url):
    """One row per (connection, listed ROI) holding that ROI's ``post`` synapse count."""
    code = {r: i for i, r in enumerate(rois)}
    rows, codes, weights = [], [], []
    for i, raw in enumerate(roi_info):
        try:
            per_roi = json.loads(raw) if isinstance(raw, str) else (raw or {})
            for roi, counts in per_roi.items():
                c = code.get(roi)
                if c is not None:
                    rows.append(i)
                    codes.append(c)
                    weights.append(int(counts.get("post", 0)))
        except (ValueError, AttributeError, TypeError):
            raise DownloadError(f"connection {pre[i]}->{post[i]} has an unreadable "
                                f"roiInfo {str(raw)[:80]!r}", url) from None
    rows = np.asarray(rows, np.int64)
    return (pre[rows], post[rows], np.asarray(weights, np.int64),
            np.asarray(codes, np.int16 if len(rois) >= 127 else np.int8))


def _index_of(body_ids, sorted_ids, order, url) -> np.ndarray:
    pos = np.searchsorted(sorted_ids, body_ids)
    pos = np.minimum(pos, len(sorted_ids) - 1)
    bad = sorted_ids[pos] != body_ids
    if bad.any():
        raise DownloadError(f"server returned a connection of body {int(body_ids[bad][0])}, "
                            "which is not in its neuron list", url)
    return order[pos]


def _int_column(values, name: str, url, allow_null: bool = True) -> np.ndarray:
    if allow_null:
        values = [0 if v is None else v for v in values]
    try:
        a = np.asarray(values)
        if a.dtype.kind not in "iub":
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        bad = next((v for v in values if not isinstance(v, int) or isinstance(v, bool)), None)
        raise DownloadError(f"column {name!r} holds a non-integer value {bad!r}", url) from None
    return a.astype(np.int64)


def _str_column(values) -> np.ndarray:
    return np.array(["" if v is None else str(v) for v in values], dtype=str)


def _point(p, url) -> tuple[float, float, float]:
    """A Neo4j point as neuprintHTTP sends it (``{"coordinates": [x, y, z]}``) or a list."""
    if p is None:
        return (np.nan, np.nan, np.nan)
    if isinstance(p, dict):
        p = p.get("coordinates", [p.get("x"), p.get("y"), p.get("z")])
    try:
        x, y, z = (float(v) for v in p)
    except (TypeError, ValueError):
        raise DownloadError(f"unreadable somaLocation {str(p)[:80]!r}", url) from None
    return (x, y, z)
