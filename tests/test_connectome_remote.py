"""neuPrint and CAVE query loaders against local servers speaking their HTTP APIs.

No internet here, so each test starts a threaded http.server on 127.0.0.1
that implements the part of the service the loader uses: neuprintHTTP's
``/api/dbmeta/datasets`` and ``/api/custom/custom`` (evaluating the loader's
Cypher on an in-memory hemibrain-like graph), and CAVE's info service plus
the materialization engine's versions/tables/count/query endpoints
(answering Arrow IPC, with a server-side row cap like the real one).
Expected values come from plain-Python / pandas readings of the same
synthetic data.
"""
from __future__ import annotations

import http.server
import json
import re
import socket
import threading
from collections import Counter
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

import neurodata
from neurodata.errors import DownloadError, NeurodataError
from neurodata.loaders.connectome_cave import convert_cave
from neurodata.loaders.connectome_neuprint import convert_neuprint

TOKEN = "secret-token-123"
ROIS = ["EB", "FB", "PB", "NO"]


# --------------------------------------------------------------------------- servers

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _start(handler_cls, **state):
    srv = _Server(("127.0.0.1", 0), handler_cls)
    srv.__dict__.update(state, requests=[], lock=threading.Lock())
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


class _Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code, body, ctype="application/json"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if auth == "Bearer expired":
            self._send(403, {"error": "token expired"})
            return False
        if auth != f"Bearer {TOKEN}":
            self._send(401, {"error": "bad token"})
            return False
        return True

    def _body(self):
        n = int(self.headers.get("Content-Length", 0))
        return json.loads(self.rfile.read(n) or b"{}")


def hemibrain_like(seed=7, n_neurons=240, n_conn=1500):
    """Synthetic neuPrint graph: neurons (dicts) and ConnectsTo edges (dicts)."""
    rng = np.random.default_rng(seed)
    body_ids = np.sort(10 ** 9 + rng.choice(10 ** 9, n_neurons, replace=False))
    types = ["EPG", "PEN_a", "Delta7", "ER4m", None]
    statuses = ["Traced", "Traced", "Roughly traced", "Orphan"]
    neurons = []
    for i, b in enumerate(body_ids[rng.permutation(n_neurons)]):  # served unsorted
        t = types[i % len(types)]
        rois = [r for r in ROIS if rng.random() < 0.45]
        neurons.append({
            "bodyId": int(b), "type": t, "instance": None if t is None else f"{t}_R",
            "status": statuses[i % len(statuses)], "class": None,
            "somaSide": ["L", "R", None][i % 3],
            "predictedNt": ["acetylcholine", "gaba", None][i % 3],
            "pre": int(rng.integers(0, 900)), "post": int(rng.integers(0, 3000)),
            "somaLocation": (None if i % 4 == 0 else
                             {"type": "Point", "crs": {"name": "cartesian-3d"},
                              "coordinates": [int(v) for v in rng.integers(0, 40000, 3)]}),
            "rois": rois,
        })
    pairs = set()
    while len(pairs) < n_conn:
        a, b = rng.integers(0, n_neurons, 2)
        pairs.add((int(body_ids[a]), int(body_ids[b])))
    conns = []
    for a, b in sorted(pairs, key=lambda p: rng.random()):
        info = {r: {"pre": int(rng.integers(1, 5)), "post": int(rng.integers(1, 12))}
                for r in ROIS if rng.random() < 0.4}
        info = info or {"NO": {"pre": 1, "post": int(rng.integers(1, 12))}}
        conns.append({"a": a, "b": b, "weight": sum(v["post"] for v in info.values()),
                      "roiInfo": json.dumps(info)})
    return neurons, conns


class _Neuprint(_Base):
    def do_GET(self):  # noqa: N802
        self.server.requests.append(("GET", self.path))
        if not self._authorised():
            return
        if self.path == "/api/dbmeta/datasets":
            return self._send(200, {"hemibrain:v1.2.1": {"uuid": "a0b1c2", "last-mod": "2021",
                                                         "ROIs": ROIS,
                                                         "superLevelROIs": ["EB", "FB"]}})
        self._send(404, {"error": "no such endpoint"})

    def do_POST(self):  # noqa: N802
        body = self._body()
        with self.server.lock:
            self.server.requests.append(("POST", self.path, body.get("cypher")))
        if not self._authorised():
            return
        if self.path != "/api/custom/custom":
            return self._send(404, {"error": "no such endpoint"})
        if body.get("dataset") != "hemibrain:v1.2.1":
            return self._send(400, {"error": f"dataset {body.get('dataset')} not found"})
        self._send(200, run_cypher(body["cypher"], self.server.neurons, self.server.conns))


def _passes(neuron, var, cypher):
    rois = re.findall(rf"\b{var}\.`([^`]+)`", cypher)
    if rois and not any(r in neuron["rois"] for r in rois):
        return False
    st = re.search(rf"\b{var}\.status IN (\[[^\]]*\])", cypher)
    return not st or neuron["status"] in json.loads(st.group(1))


def run_cypher(cypher, neurons, conns):
    """Evaluate the two query shapes the loader sends, with ORDER BY/SKIP/LIMIT."""
    skip = int(re.search(r"SKIP (\d+)", cypher).group(1))
    limit = int(re.search(r"LIMIT (\d+)", cypher).group(1))
    columns = re.findall(r" AS (\w+)", cypher)
    by_id = {n["bodyId"]: n for n in neurons}
    if "ConnectsTo" in cypher:
        mw = int(re.search(r"e\.weight >= (\d+)", cypher).group(1))
        rows = [c for c in conns if c["weight"] >= mw and _passes(by_id[c["a"]], "a", cypher)
                and _passes(by_id[c["b"]], "b", cypher)]
        rows.sort(key=lambda c: (c["a"], c["b"]))
        field = {"bodyId_pre": "a", "bodyId_post": "b", "weight": "weight", "roiInfo": "roiInfo"}
        data = [[c[field[k]] for k in columns] for c in rows[skip:skip + limit]]
    else:
        rows = sorted((n for n in neurons if _passes(n, "n", cypher)), key=lambda n: n["bodyId"])
        data = [[n.get(k) for k in columns] for n in rows[skip:skip + limit]]
    return {"columns": columns, "data": data}


@pytest.fixture(scope="module")
def neuprint_server():
    neurons, conns = hemibrain_like()
    srv, url = _start(_Neuprint, neurons=neurons, conns=conns)
    yield srv, url
    srv.shutdown()
    srv.server_close()


def _edges_by_id(ds, with_region=False):
    ids = ds.neurons["id"]
    e = ds.edges()
    cols = [ids[e["pre"]].tolist(), ids[e["post"]].tolist(), e["weight"].tolist()]
    if with_region:
        cats = ds.categories("region")
        cols.append([cats[c] for c in e["region"]])
    return sorted(zip(*cols))


# --------------------------------------------------------------------------- neuPrint

def test_neuprint_whole_body_paged(neuprint_server, tmp_path):
    srv, url = neuprint_server
    neurons, conns = srv.neurons, srv.conns
    srv.requests.clear()
    out = convert_neuprint(url, "hemibrain:v1.2.1", tmp_path / "hb.zarr", token=TOKEN,
                           min_weight=3, page_size=97)
    ds = neurodata.open(out)
    expected = sorted((c["a"], c["b"], c["weight"]) for c in conns if c["weight"] >= 3)
    assert ds.n_neurons == 240 and len(ds) == len(expected) == 1358
    assert _edges_by_id(ds) == expected
    assert ds.attrs["synapses"]["chemical"] == sum(w for *_, w in expected) == 15466
    ids = ds.neurons["id"]
    ref = {n["bodyId"]: n for n in neurons}
    assert ids.tolist() == sorted(ref)
    assert ds.neurons["cell_type"].tolist() == [ref[i]["type"] or "" for i in ids.tolist()]
    assert ds.neurons["name"].tolist() == [ref[i]["instance"] or "" for i in ids.tolist()]
    assert ds.neurons["status"].tolist() == [ref[i]["status"] for i in ids.tolist()]
    assert ds.neurons["n_post"].tolist() == [ref[i]["post"] for i in ids.tolist()]
    first = ref[int(ids[1])]["somaLocation"]
    assert [ds.neurons[k][1] for k in "xyz"] == (
        first["coordinates"] if first else [pytest.approx(np.nan, nan_ok=True)] * 3)
    assert int(np.isnan(ds.neurons["x"]).sum()) == sum(n["somaLocation"] is None
                                                       for n in neurons) == 60
    assert ds.attrs["release"] == "hemibrain:v1.2.1" and ds.attrs["version"] == "a0b1c2"
    assert ds.attrs["species"] == "Drosophila melanogaster"
    # paging: ceil(240 / 97) neuron pages; 1358 = 14 x 97 edges, so 14 full pages + 1 empty
    cyphers = [r[2] for r in srv.requests if r[0] == "POST"]
    assert sum("ConnectsTo" not in c for c in cyphers) == 3
    assert sum("ConnectsTo" in c for c in cyphers) == 15
    assert all(r[0] == "POST" or r[1] == "/api/dbmeta/datasets" for r in srv.requests)


def test_neuprint_rois_and_status(neuprint_server, tmp_path):
    srv, url = neuprint_server
    out = convert_neuprint(url, "hemibrain:v1.2.1", tmp_path / "eb.zarr", token=TOKEN,
                           rois=["EB", "FB"], status="Traced", min_weight=2, page_size=500)
    ds = neurodata.open(out)
    keep = {n["bodyId"] for n in srv.neurons
            if n["status"] == "Traced" and {"EB", "FB"} & set(n["rois"])}
    expected = sorted((c["a"], c["b"], cnt["post"], roi) for c in srv.conns
                      if c["a"] in keep and c["b"] in keep and c["weight"] >= 2
                      for roi, cnt in json.loads(c["roiInfo"]).items()
                      if roi in ("EB", "FB") and cnt["post"] >= 2)
    assert ds.n_neurons == len(keep) == 87
    assert set(ds.neurons["status"].tolist()) == {"Traced"}
    assert _edges_by_id(ds, with_region=True) == expected
    assert len(expected) == 140
    assert ds.categories("region") == ["EB", "FB"] and ds.attrs["rois"] == ["EB", "FB"]


def test_neuprint_token_from_environment_json(neuprint_server, tmp_path, monkeypatch):
    srv, url = neuprint_server
    monkeypatch.setenv("NEUPRINT_APPLICATION_CREDENTIALS", json.dumps({"token": TOKEN}))
    out = convert_neuprint(url, "hemibrain:v1.2.1", tmp_path / "env.zarr", min_weight=30)
    ds = neurodata.open(out)
    assert len(ds) == sum(c["weight"] >= 30 for c in srv.conns) == 12


@pytest.mark.parametrize("kw, message", [
    ({"token": None}, "no API token"),
    ({"token": "wrong"}, "HTTP 401 fetching the dataset list: token rejected (bad token)"),
    ({"token": "expired"}, "HTTP 403 fetching the dataset list: token rejected (token expired)"),
    ({"dataset": "manc:v1.0"}, "no dataset 'manc:v1.0' on this server"),
    ({"rois": ["EB", "LAL(R)"]}, "dataset has no ROI 'LAL(R)'"),
    ({"status": "Unknown"}, "dataset 'hemibrain:v1.2.1' has no neurons matching the query"),
])
def test_neuprint_errors(neuprint_server, tmp_path, monkeypatch, kw, message):
    srv, url = neuprint_server
    monkeypatch.delenv("NEUPRINT_APPLICATION_CREDENTIALS", raising=False)
    args = {"token": TOKEN, "dataset": "hemibrain:v1.2.1", **kw}
    with pytest.raises(DownloadError) as e:
        convert_neuprint(url, args.pop("dataset"), tmp_path / "x.zarr", **args)
    assert message in str(e.value)
    assert not (tmp_path / "x.zarr").exists()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_servers(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(NeurodataError, match="server unreachable fetching the dataset list"):
        convert_neuprint(url, "hemibrain:v1.2.1", tmp_path / "a.zarr", token=TOKEN)
    with pytest.raises(NeurodataError, match="server unreachable fetching datastack"):
        convert_cave("minnie65_public", "synapses_pni_2", tmp_path / "b.zarr", server=url,
                     token=TOKEN)


# --------------------------------------------------------------------------- CAVE

DATASTACK = "minnie65_public"
SYN = "synapses_pni_2"
CELLS = "aibs_metamodel_celltypes_v661"


def microns_like(seed=3, n_cells=180, n_syn=6000):
    """Synthetic MICrONS-like synapse table and cell-type table (dicts of arrays)."""
    rng = np.random.default_rng(seed)
    roots = 864691135000000000 + rng.choice(10 ** 9, n_cells, replace=False)
    hub = rng.choice(roots, 20)
    pre = np.where(rng.random(n_syn) < 0.5, rng.choice(hub, n_syn), rng.choice(roots, n_syn))
    post = rng.choice(roots, n_syn)
    pre[rng.random(n_syn) < 0.04] = 0      # synapses on unassigned segments
    post[rng.random(n_syn) < 0.04] = 0
    syn = {"id": np.arange(1, n_syn + 1, dtype=np.int64), "valid": np.ones(n_syn, bool),
           "pre_pt_root_id": pre.astype(np.int64), "post_pt_root_id": post.astype(np.int64),
           "size": rng.integers(40, 8000, n_syn).astype(np.int64)}
    typed = rng.choice(roots, 120, replace=False)
    typed = np.concatenate([typed, typed[:5], 864691135999999999 + np.arange(3)])
    kinds = np.array(["23P", "4P", "BC", "MC", "NGC"])
    cells = {"id": np.arange(1, len(typed) + 1, dtype=np.int64), "pt_root_id": typed,
             "cell_type": kinds[np.arange(len(typed)) % 5],
             "classification_system": np.where(np.arange(len(typed)) % 5 < 2,
                                               "excitatory_neuron", "inhibitory_neuron")}
    return syn, cells


class _Cave(_Base):
    MAX_ROWS = 1000   # the real engine caps `limit` too

    def _route(self):
        u = urlparse(self.path)
        return u.path, parse_qs(u.query)

    def do_GET(self):  # noqa: N802
        path, _ = self._route()
        self.server.requests.append(("GET", path))
        if not self._authorised():
            return
        m = re.fullmatch(r"/info/api/v2/datastack/full/(\w+)", path)
        if m:
            if m.group(1) != DATASTACK:
                return self._send(404, {"message": "datastack not found"})
            return self._send(200, {"local_server": self.server.url,
                                    "aligned_volume": {"name": "minnie65_phase3"}})
        m = re.fullmatch(rf"/materialize/api/v3/datastack/{DATASTACK}/versions", path)
        if m:
            return self._send(200, [661, 943])
        m = re.fullmatch(rf"/materialize/api/v2/datastack/{DATASTACK}/version/(\d+)/tables",
                         path)
        if m:
            return self._send(200, [SYN, CELLS, "nucleus_detection_v0"])
        m = re.fullmatch(rf"/materialize/api/v2/datastack/{DATASTACK}/version/\d+/table/"
                         r"(\w+)/count", path)
        if m and m.group(1) in self.server.tables:
            return self._send(200, len(self.server.tables[m.group(1)]["id"]))
        self._send(404, {"message": "not found"})

    def do_POST(self):  # noqa: N802
        import pyarrow as pa

        path, query = self._route()
        body = self._body()
        self.server.requests.append(("POST", path, body))
        if not self._authorised():
            return
        m = re.fullmatch(rf"/materialize/api/v3/datastack/{DATASTACK}/version/(\d+)/table/"
                         r"(\w+)/query", path)
        if not m or m.group(2) not in self.server.tables:
            return self._send(404, {"message": "table not found"})
        if query.get("arrow_format") != ["True"]:
            return self._send(200, {"message": "json answers are not implemented here"})
        t = self.server.tables[m.group(2)]
        lo = body.get("offset", 0)
        hi = lo + min(body.get("limit", self.MAX_ROWS), self.MAX_ROWS)
        order = np.argsort(t["id"], kind="stable")[lo:hi]
        cols = body.get("select_columns") or list(t)
        if set(cols) - set(t):
            return self._send(400, {"message": f"columns {sorted(set(cols) - set(t))} "
                                               "not in table"})
        table = pa.table({c: t[c][order] for c in cols})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        self._send(200, sink.getvalue().to_pybytes(), ctype="data.arrow")


@pytest.fixture(scope="module")
def cave_server():
    syn, cells = microns_like()
    srv, url = _start(_Cave, tables={SYN: syn, CELLS: cells})
    srv.url = url
    yield srv, url
    srv.shutdown()
    srv.server_close()


def test_cave_aggregated_pairs_with_cell_types(cave_server, tmp_path):
    import pandas as pd

    srv, url = cave_server
    syn, cells = srv.tables[SYN], srv.tables[CELLS]
    srv.requests.clear()
    out = convert_cave(DATASTACK, SYN, tmp_path / "m.zarr", server=url, token=TOKEN,
                       cell_types=CELLS, page_size=100_000)
    ds = neurodata.open(out)
    df = pd.DataFrame(syn)
    df = df[(df.pre_pt_root_id != 0) & (df.post_pt_root_id != 0)]
    agg = df.groupby(["pre_pt_root_id", "post_pt_root_id"])["size"].agg(["count", "sum"])
    ids = ds.neurons["id"]
    assert ids.tolist() == sorted(set(df.pre_pt_root_id) | set(df.post_pt_root_id))
    assert ds.n_neurons == 180 and len(ds) == len(agg) == 4309
    e = ds.edges()
    got = sorted(zip(ids[e["pre"]].tolist(), ids[e["post"]].tolist(), e["weight"].tolist(),
                     e["size"].tolist()))
    assert got == sorted((a, b, int(c), float(s)) for (a, b), (c, s) in agg.iterrows())
    assert ds.attrs["synapses"]["chemical"] == len(df) == 5517
    assert ds.attrs["synapses_in_table"] == 6000
    assert ds.attrs["synapses_without_cell"] == 483
    assert ds.attrs["version"] == 943 and ds.attrs["species"] == "Mus musculus"
    first = pd.DataFrame(cells).drop_duplicates("pt_root_id").set_index("pt_root_id")
    want_type = [first.cell_type.get(i, "") for i in ids.tolist()]
    assert ds.neurons["cell_type"].tolist() == want_type
    assert ds.neurons["class"].tolist() == [first.classification_system.get(i, "")
                                            for i in ids.tolist()]
    assert sum(t != "" for t in want_type) == 120
    # the server caps pages at 1000 rows: 6 full pages + 1 empty, same for the cell types
    posts = [r for r in srv.requests if r[0] == "POST"]
    assert [r[2]["offset"] for r in posts if SYN in r[1]] == [0, 1000, 2000, 3000, 4000,
                                                              5000, 6000]
    assert len([r for r in posts if CELLS in r[1]]) == 2


def test_cave_per_synapse_and_version(cave_server, tmp_path):
    srv, url = cave_server
    syn = srv.tables[SYN]
    srv.requests.clear()
    out = convert_cave(DATASTACK, SYN, tmp_path / "s.zarr", server=url, token=TOKEN,
                       version=661, aggregate=False, page_size=700)
    ds = neurodata.open(out)
    ok = (syn["pre_pt_root_id"] != 0) & (syn["post_pt_root_id"] != 0)
    e = ds.edges()
    ids = ds.neurons["id"]
    assert len(ds) == int(ok.sum()) == 5517
    np.testing.assert_array_equal(e["synapse_row"], np.nonzero(ok)[0])
    np.testing.assert_array_equal(ids[e["pre"]], syn["pre_pt_root_id"][ok])
    np.testing.assert_array_equal(ids[e["post"]], syn["post_pt_root_id"][ok])
    np.testing.assert_array_equal(e["size"], syn["size"][ok])
    assert set(e["weight"].tolist()) == {1} and ds.attrs["version"] == 661
    assert all("/version/661/" in r[1] for r in srv.requests if "version/" in r[1])
    assert len([r for r in srv.requests if r[0] == "POST"]) == 10   # ceil(6000/700) + 1


def test_cave_min_weight(cave_server, tmp_path):
    srv, url = cave_server
    syn = srv.tables[SYN]
    out = convert_cave(DATASTACK, SYN, tmp_path / "w.zarr", server=url, token=TOKEN,
                       min_weight=3, size_column=None)
    ds = neurodata.open(out)
    ok = (syn["pre_pt_root_id"] != 0) & (syn["post_pt_root_id"] != 0)
    pairs = Counter(zip(syn["pre_pt_root_id"][ok].tolist(), syn["post_pt_root_id"][ok].tolist()))
    ids = ds.neurons["id"]
    e = ds.edges()
    got = dict(zip(zip(ids[e["pre"]].tolist(), ids[e["post"]].tolist()), e["weight"].tolist()))
    assert got == {p: c for p, c in pairs.items() if c >= 3} and len(got) == 245
    assert "size" not in ds.edge_names


@pytest.mark.parametrize("kw, message", [
    ({"token": None}, "no API token"),
    ({"token": "wrong"}, "HTTP 401 fetching datastack 'minnie65_public': token rejected"),
    ({"token": "expired"}, "HTTP 403"),
    ({"datastack": "h01_c3_flat"}, "no datastack 'h01_c3_flat' on this server"),
    ({"table": "synapses_v2"}, "no table 'synapses_v2' in datastack 'minnie65_public' "
                               "version 943 (tables: aibs_metamodel_celltypes_v661, "
                               "nucleus_detection_v0, synapses_pni_2)"),
    ({"version": 12}, "no materialization version 12 (versions: [661, 943])"),
    ({"pre_column": "pre_root"}, "HTTP 400 fetching rows 0.. of 'synapses_pni_2': "
                                 "columns ['pre_root'] not in table"),
])
def test_cave_errors(cave_server, tmp_path, monkeypatch, kw, message):
    srv, url = cave_server
    monkeypatch.delenv("CAVE_TOKEN", raising=False)
    args = {"token": TOKEN, "datastack": DATASTACK, "table": SYN, **kw}
    with pytest.raises(DownloadError) as e:
        convert_cave(args.pop("datastack"), args.pop("table"), tmp_path / "x.zarr",
                     server=url, **args)
    assert message in str(e.value)
    assert not (tmp_path / "x.zarr").exists()


# --------------------------------------------------------------------------- URLs / CLI

def test_query_urls_through_convert_and_cli(neuprint_server, cave_server, tmp_path, capsys):
    from neurodata.cli.main import main
    from neurodata.conversion import convert

    _, np_url = neuprint_server
    host = np_url.split("://")[1]
    out = convert(f"neuprint+http://{host}/hemibrain:v1.2.1", tmp_path / "u.zarr",
                  token=TOKEN, min_weight=30)
    assert len(neurodata.open(out)) == 12
    _, cave_url = cave_server
    host = cave_url.split("://")[1]
    rc = main(["convert", f"cave+http://{host}/{DATASTACK}/{SYN}", str(tmp_path / "c.zarr"),
               "-o", f"token={TOKEN}", "-o", "min_weight=3", "--no-progress"])
    assert rc == 0 and "180 neurons, 245 edges" in capsys.readouterr().out
    with pytest.raises(DownloadError, match=r"expected cave\+http://HOST/DATASTACK/TABLE"):
        convert(f"cave+http://{host}/{DATASTACK}", tmp_path / "bad.zarr", token=TOKEN)
