"""GraphML connectomes (read with networkx).

Nodes are neurons: the node id becomes ``id`` and node attributes are
mapped by name (``name``/``label``, ``cell_type``/``type``, ``class``,
``side``, ``neurotransmitter``...). Edges carry ``weight`` (or ``synapses``,
``count``...; absent: 1) and a synapse type (``kind``/``type``/
``synapse_type``: chemical/electrical or Varshney codes; absent: chemical;
undirected graphs hold electrical synapses unless typed otherwise).
Parallel edges of a multigraph stay separate rows.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from neurodata.errors import FormatError
from neurodata.format.connectome import CHEMICAL, ELECTRICAL
from neurodata.loaders._connectome import (kind_codes, norm_label, reduce_electrical,
                                           sides_from_names, write_small)
from neurodata.loaders.connectome_edgelist import EDGE_ALIASES, NEURON_ALIASES

VERSION = "GraphML 1.0 (networkx reader)"


def sniff(path: Path, head: bytes) -> bool:
    """XML whose root element is ``graphml``."""
    if path.is_dir():
        return False
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return text.startswith(b"<") and re.search(rb"<graphml[\s>]", head) is not None


def _pick(attrs: dict, aliases) -> str | None:
    norm = {norm_label(k): k for k in attrs}
    for a in aliases:
        if a in norm:
            return norm[a]
    return None


def convert(src, out, attrs=None, *, electrical: str = "auto", **kw) -> None:
    """Convert a GraphML file into a ``connectome/1`` store."""
    import networkx as nx

    src = Path(src)
    try:
        g = nx.read_graphml(src)
    except Exception as e:  # networkx raises several XML/parse errors
        raise FormatError(f"unreadable GraphML ({e.__class__.__name__}: {e})", src) from None
    nodes = list(g.nodes)
    if not nodes:
        raise FormatError("graph has no nodes", src)
    index = {n: i for i, n in enumerate(nodes)}
    node_attrs = [g.nodes[n] for n in nodes]
    keys = sorted({k for d in node_attrs for k in d})
    probe = dict.fromkeys(keys, None)
    neurons = {"id": np.array([str(n) for n in nodes], dtype=str)}
    used = set()
    for col, aliases in NEURON_ALIASES.items():
        if col == "id":
            continue
        k = _pick(probe, aliases)
        if k is not None and k not in used:
            used.add(k)
            vals = [d.get(k) for d in node_attrs]
            if col in ("x", "y", "z"):
                neurons[col] = np.array([np.nan if v is None else float(v) for v in vals])
            else:
                neurons[col] = np.array(["" if v is None else str(v) for v in vals], dtype=str)
    if "name" not in neurons:
        neurons["name"] = neurons["id"]
    if "side" not in neurons:
        neurons["side"] = sides_from_names(neurons["name"])
    edges = list(g.edges(data=True))
    eprobe = dict.fromkeys({k for _, _, d in edges for k in d}, None)
    wkey = _pick(eprobe, EDGE_ALIASES["weight"])
    kkey = _pick(eprobe, EDGE_ALIASES["kind"])
    p = np.array([index[a] for a, _, _ in edges], np.int64)
    q = np.array([index[b] for _, b, _ in edges], np.int64)
    w = np.ones(len(edges), np.float64)
    if wkey is not None:
        for i, (_, _, d) in enumerate(edges):
            v = d.get(wkey, 1)
            try:
                w[i] = float(v)
            except (TypeError, ValueError):
                raise FormatError(f"edge {i + 1} ({edges[i][0]} -> {edges[i][1]}), attribute "
                                  f"{wkey!r}: non-numeric weight {v!r}", src) from None
    if kkey is not None:
        labels = np.array([str(d.get(kkey, "chemical")) for _, _, d in edges], dtype=str)
        k = kind_codes(labels, src, kkey, row_offset=1)
    else:
        k = np.full(len(edges), ELECTRICAL if not g.is_directed() else CHEMICAL, np.int8)
    if len(w) and np.all(w % 1 == 0):
        w = w.astype(np.int64)
    chem = k == CHEMICAL
    el = k == ELECTRICAL
    ep, eq, ew, rule = (reduce_electrical(p[el], q[el], w[el], len(nodes), electrical, src)
                        if el.any() else (p[:0], q[:0], w[:0], "none"))
    out_edges = {"pre": np.concatenate([p[chem], ep]), "post": np.concatenate([q[chem], eq]),
                 "weight": np.concatenate([w[chem], ew]),
                 "kind": np.concatenate([np.full(int(chem.sum()), CHEMICAL, np.int8),
                                         np.full(len(ep), ELECTRICAL, np.int8)])}
    a = {"release": g.graph.get("name", src.name) or src.name, "electrical_rule": rule}
    a.update({k: v for k, v in g.graph.items() if isinstance(v, (str, int, float))})
    a.update(attrs or {})
    write_small(out, neurons, out_edges, a, [src], f"graphml/{VERSION}")
