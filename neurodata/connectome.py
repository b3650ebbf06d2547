"""A connectome in memory, and its exports to graph and simulation code.

:class:`Connectome` holds the two tables of a ``connectome/1`` store as
numpy columns and turns them into what modelling code takes: scipy CSR
matrices per synapse kind, networkx graphs, torch ``edge_index``/``edge_attr``
pairs or sparse tensors, dense adjacency, and signed weight matrices for
spiking simulations. Transforms (subgraph, threshold, aggregation,
symmetrisation) return new :class:`Connectome` objects.

Conventions shared by every export, so they agree edge for edge:

- electrical edges, stored once per pair (``pre <= post``), are mirrored
  into both directions (``symmetric=True``); a self-coupling stays single;
- rows with the same ``(pre, post, kind)`` (per-region rows of FlyWire or
  neuPrint tables) are summed into one edge;
- row = presynaptic, column = postsynaptic (``A[pre, post]``).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from neurodata.format.connectome import CHEMICAL, ELECTRICAL, KINDS

#: Default sign of a neurotransmitter for :meth:`Connectome.signed_weights`:
#: the convention of whole-brain fly simulations (acetylcholine excitatory,
#: GABA and glutamate inhibitory via GluCl). Glutamate is excitatory at many
#: C. elegans and vertebrate synapses: pass ``table={"glutamate": 1}`` there.
#: Modulators (dopamine, serotonin, octopamine, tyramine) have no fast sign
#: and fall back to ``default``.
NT_SIGN = {"acetylcholine": 1, "gaba": -1, "glutamate": -1}

_NT_ALIASES = {
    "ach": "acetylcholine", "acetylcholine": "acetylcholine", "cholinergic": "acetylcholine",
    "gaba": "gaba", "gabaergic": "gaba",
    "glut": "glutamate", "glu": "glutamate", "glutamate": "glutamate", "glutamatergic": "glutamate",
    "da": "dopamine", "dopamine": "dopamine", "ser": "serotonin", "5ht": "serotonin",
    "5-ht": "serotonin", "serotonin": "serotonin", "oct": "octopamine", "octopamine": "octopamine",
    "tyr": "tyramine", "tyramine": "tyramine", "his": "histamine", "histamine": "histamine",
}


def canonical_nt(name: str) -> str:
    """Normalise a neurotransmitter label (``"ACH"``, ``"Glu"``...) to a full lower-case name."""
    k = str(name).strip().lower()
    return _NT_ALIASES.get(k, k)


def _kind_code(kind) -> int:
    if isinstance(kind, (int, np.integer)):
        return int(kind)
    try:
        return KINDS.index(str(kind))
    except ValueError:
        raise ValueError(f"unknown edge kind {kind!r}; known: {', '.join(KINDS)}") from None


class Connectome:
    """Neuron and edge tables in memory.

    Parameters
    ----------
    neurons : mapping of str -> array
        Neuron columns (``id``, ``name``, ``cell_type``, ``class``, ``side``,
        ``neurotransmitter``, ...), all of one length.
    edges : mapping of str -> array
        Edge columns: ``pre``, ``post`` (indices into the neuron table),
        ``weight``, ``kind`` (codes into :data:`KINDS`), optional others.
    attrs : dict
        Release attributes.
    categories : dict
        Labels of categorical edge columns other than ``kind`` (``region``).
    """

    def __init__(self, neurons: Mapping[str, np.ndarray], edges: Mapping[str, np.ndarray],
                 attrs: dict | None = None, categories: dict | None = None):
        self.neurons = {k: _plain(v) for k, v in neurons.items()}
        self.edges = {k: np.asarray(v) for k, v in edges.items()}
        self.attrs = dict(attrs or {})
        self.categories = dict(categories or {})

    @property
    def n_neurons(self) -> int:
        return len(self.neurons["id"])

    @property
    def n_edges(self) -> int:
        return len(self.edges["pre"])

    def __len__(self) -> int:
        return self.n_edges

    def __repr__(self) -> str:
        return f"<Connectome: {self.n_neurons} neurons, {self.n_edges} edges>"

    def index_of(self, names: Iterable) -> np.ndarray:
        """Neuron indices of ``names`` (matched against ``name``, then ``id``)."""
        lookup = {str(v): i for i, v in enumerate(self.neurons["id"])}
        lookup.update({str(v): i for i, v in enumerate(self.neurons.get("name", [])) if v})
        try:
            return np.array([lookup[str(n)] for n in names], np.int64)
        except KeyError as e:
            raise KeyError(f"no neuron named {e.args[0]!r}") from None

    # ------------------------------------------------------------------ core pairs
    def pairs(self, kind="chemical", symmetric: bool = True):
        """Unique ``(pre, post, weight)`` of one kind, duplicates summed, sorted.

        ``kind`` is ``"chemical"``, ``"electrical"`` or ``"all"`` (both kinds
        summed into one weight per pair). Electrical pairs are mirrored into
        both directions when ``symmetric``.
        """
        p, q, w = self.edges["pre"], self.edges["post"], self.edges["weight"]
        k = self.edges["kind"]
        if kind == "all":
            sel = np.ones(len(p), bool)
        else:
            sel = k == _kind_code(kind)
        p, q, w, k = p[sel], q[sel], w[sel], k[sel]
        if symmetric:
            m = (k == ELECTRICAL) & (p != q)
            p, q, w = (np.concatenate([p, q[m]]), np.concatenate([q, p[m]]),
                       np.concatenate([w, w[m]]))
        a = self._csr(p, q, w)
        rows = np.repeat(np.arange(a.shape[0], dtype=np.int64), np.diff(a.indptr))
        return rows, a.indices.astype(np.int64), a.data

    def _csr(self, p, q, w):
        """Canonical CSR (duplicates summed, indices sorted) in linear time, no global sort."""
        import scipy.sparse as sp

        acc = np.float64 if w.dtype.kind == "f" else np.int64
        n = self.n_neurons
        a = sp.csr_matrix((w.astype(acc, copy=False), (p, q)), shape=(n, n))
        a.sum_duplicates()
        return a

    # ------------------------------------------------------------------ exports
    def to_scipy(self, kind=None, symmetric: bool = True, dtype=np.float64):
        """Adjacency as scipy CSR, ``A[pre, post] = weight``.

        Parameters
        ----------
        kind : {None, "chemical", "electrical", "all"}
            One kind's matrix, both summed (``"all"``), or (None) a dict
            ``{kind: csr}`` for every kind.
        symmetric : bool
            Mirror electrical pairs into both directions.
        """
        import scipy.sparse as sp

        if kind is None:
            return {k: self.to_scipy(k, symmetric, dtype) for k in KINDS}
        p, q, w = self.pairs(kind, symmetric)
        n = self.n_neurons
        indptr = np.concatenate([[0], np.cumsum(np.bincount(p, minlength=n))])
        return sp.csr_matrix((w.astype(dtype), q, indptr), shape=(n, n))

    def adjacency(self, kind="all", symmetric: bool = True, dtype=np.float64,
                  max_neurons: int = 50_000) -> np.ndarray:
        """Dense ``(n, n)`` adjacency (refused above ``max_neurons``: use :meth:`to_scipy`)."""
        if self.n_neurons > max_neurons:
            raise MemoryError(f"{self.n_neurons} neurons: a dense adjacency would need "
                              f"{self.n_neurons ** 2 * np.dtype(dtype).itemsize / 1e9:.1f} GB; "
                              "use to_scipy()")
        a = np.zeros((self.n_neurons, self.n_neurons), dtype)
        p, q, w = self.pairs(kind, symmetric)
        a[p, q] = w
        return a

    def to_networkx(self, kind="all", symmetric: bool = True):
        """A networkx graph with neuron attributes on nodes (node = neuron index).

        ``kind="all"`` gives a ``MultiDiGraph`` with one edge per kind (edge
        key = kind name); a single kind gives a ``DiGraph``. Edges carry
        ``weight`` (and ``kind``).
        """
        import networkx as nx

        kinds = KINDS if kind == "all" else (kind,)
        g = nx.MultiDiGraph() if kind == "all" else nx.DiGraph()
        g.graph.update({k: v for k, v in self.attrs.items()
                        if isinstance(v, (str, int, float)) and k != "provenance"})
        cols = {k: v for k, v in self.neurons.items() if v.ndim == 1}
        attrs = [dict(zip(cols, vals)) for vals in zip(*(c.tolist() for c in cols.values()))]
        g.add_nodes_from(zip(range(self.n_neurons), attrs))
        for kd in kinds:
            p, q, w = self.pairs(kd, symmetric)
            rows = zip(p.tolist(), q.tolist(), w.tolist())
            if kind == "all":
                g.add_edges_from((a, b, kd, {"weight": x, "kind": kd}) for a, b, x in rows)
            else:
                g.add_edges_from((a, b, {"weight": x, "kind": kd}) for a, b, x in rows)
        return g

    def to_torch(self, kind="all", symmetric: bool = True, sparse: bool = False,
                 dtype=None):
        """Tensors for graph neural networks (torch is imported here).

        Returns ``(edge_index, edge_attr)``: ``edge_index`` int64 ``(2, E)``
        (row 0 pre, row 1 post), ``edge_attr`` float32 ``(E, 1)`` weights for
        one kind, or ``(E, 2)`` ``[weight, is_electrical]`` for ``kind="all"``.
        With ``sparse=True`` returns one coalesced ``torch.sparse_coo_tensor``
        of shape ``(n, n)`` holding summed weights of ``kind``.
        """
        import torch

        dtype = dtype or torch.float32
        n = self.n_neurons
        if sparse:
            p, q, w = self.pairs(kind, symmetric)
            idx = torch.from_numpy(np.stack([p, q]).astype(np.int64))
            return torch.sparse_coo_tensor(idx, torch.from_numpy(w.astype(np.float64)).to(dtype),
                                           (n, n), check_invariants=False).coalesce()
        kinds = KINDS if kind == "all" else (kind,)
        ps, qs, ws, ks = [], [], [], []
        for kd in kinds:
            p, q, w = self.pairs(kd, symmetric)
            ps.append(p), qs.append(q), ws.append(w.astype(np.float64))
            ks.append(np.full(len(p), float(_kind_code(kd))))
        p, q, w, k = (np.concatenate(x) for x in (ps, qs, ws, ks))
        order = np.lexsort((k, q, p))
        edge_index = torch.from_numpy(np.stack([p[order], q[order]]).astype(np.int64))
        attr = w[order, None] if kind != "all" else np.stack([w[order], k[order]], axis=1)
        return edge_index, torch.from_numpy(np.ascontiguousarray(attr)).to(dtype)

    # ------------------------------------------------------------------ signs
    def neuron_signs(self, table: Mapping | None = None, default: int = 0) -> np.ndarray:
        """Sign (+1, -1, 0) of every neuron as a presynaptic partner.

        ``table`` maps neurotransmitters (``{"glutamate": 1}``) and/or neuron
        names or ids (``{"RIML": -1}``) to signs, overriding :data:`NT_SIGN`;
        neurons with neither get ``default``.
        """
        nt_sign = dict(NT_SIGN)
        by_neuron = {}
        for k, v in (table or {}).items():
            c = canonical_nt(k)
            if c in _NT_ALIASES.values() or c in nt_sign:
                nt_sign[c] = int(v)
            else:
                by_neuron[str(k)] = int(v)
        nts = self.neurons.get("neurotransmitter", np.full(self.n_neurons, ""))
        labels, inv = np.unique(nts.astype(str), return_inverse=True)
        per_label = np.array([nt_sign.get(canonical_nt(x), default) if x else default
                              for x in labels], np.int8)
        signs = per_label[inv] if len(labels) else np.full(self.n_neurons, default, np.int8)
        if by_neuron:
            names = self.neurons.get("name", np.full(self.n_neurons, "")).astype(str)
            ids = self.neurons["id"].astype(str)
            for i in range(self.n_neurons):
                v = by_neuron.get(names[i], by_neuron.get(ids[i]))
                if v is not None:
                    signs[i] = v
        return signs

    def ei_masks(self, table: Mapping | None = None, default: int = 0):
        """Boolean ``(excitatory, inhibitory)`` masks over neurons."""
        s = self.neuron_signs(table, default)
        return s > 0, s < 0

    def signed_weights(self, table: Mapping | None = None, default: int = 0,
                       edge_level: str = "auto", dtype=np.float64):
        """Signed chemical weight matrix (scipy CSR) for simulation.

        ``W[pre, post] = sign * weight``. The sign comes from the edge's own
        neurotransmitter prediction when the store has one (``edge_level=
        "auto"``/``"yes"``: the ``edge_neurotransmitter`` category or the largest
        ``nt_*`` probability), otherwise from the presynaptic neuron
        (:meth:`neuron_signs`). Electrical synapses are not signed: add
        ``to_scipy("electrical")`` as a separate conductance matrix.
        """
        import scipy.sparse as sp

        e = self.edges
        chem = e["kind"] == CHEMICAL
        p, q, w = e["pre"][chem], e["post"][chem], e["weight"][chem].astype(np.float64)
        edge_sign = None
        if edge_level in ("auto", "yes"):
            edge_sign = self._edge_signs(chem, table, default)
            if edge_sign is None and edge_level == "yes":
                raise ValueError("the edges carry no neurotransmitter prediction")
        sign = edge_sign if edge_sign is not None else self.neuron_signs(table, default)[p]
        n = self.n_neurons
        m = sp.csr_matrix(((w * sign).astype(dtype), (p, q)), shape=(n, n))
        m.sum_duplicates()
        return m

    def _edge_signs(self, sel, table, default):
        nt_sign = dict(NT_SIGN)
        for k, v in (table or {}).items():
            nt_sign[canonical_nt(k)] = int(v)
        if "edge_neurotransmitter" in self.edges and "edge_neurotransmitter" in self.categories:
            labels = self.categories["edge_neurotransmitter"]
            lut = np.array([nt_sign.get(canonical_nt(x), default) if x else default
                            for x in labels] + [default], np.int8)
            return lut[self.edges["edge_neurotransmitter"][sel]]
        cols = sorted(k for k in self.edges if k.startswith("nt_"))
        if not cols:
            return None
        probs = np.stack([self.edges[c][sel] for c in cols], axis=1)
        lut = np.array([nt_sign.get(canonical_nt(c[3:]), default) for c in cols], np.int8)
        best = probs.argmax(axis=1)
        s = lut[best]
        s[~np.isfinite(probs).all(axis=1) | (probs.max(axis=1) <= 0)] = default
        return s

    # ------------------------------------------------------------------ transforms
    def _take_edges(self, mask) -> dict:
        return {k: v[mask] for k, v in self.edges.items()}

    def threshold(self, min_weight) -> "Connectome":
        """Keep edges with ``weight >= min_weight`` (per stored row; see :meth:`aggregate`)."""
        return Connectome(self.neurons, self._take_edges(self.edges["weight"] >= min_weight),
                          self.attrs, self.categories)

    def aggregate(self) -> "Connectome":
        """Sum rows with the same ``(pre, post, kind)``; drops per-row columns."""
        ps, qs, ws, ks = [], [], [], []
        for kd in KINDS:
            p, q, w = self.pairs(kd, symmetric=False)
            ps.append(p), qs.append(q), ws.append(w), ks.append(np.full(len(p), _kind_code(kd),
                                                                         np.int8))
        edges = {"pre": np.concatenate(ps), "post": np.concatenate(qs),
                 "weight": np.concatenate(ws), "kind": np.concatenate(ks)}
        return Connectome(self.neurons, edges, self.attrs, {})

    def symmetrized(self) -> "Connectome":
        """Electrical pairs mirrored into both directions (the stored form keeps one)."""
        e = self.edges
        m = (e["kind"] == ELECTRICAL) & (e["pre"] != e["post"])
        mirrored = {k: v[m] for k, v in e.items()}
        mirrored["pre"], mirrored["post"] = e["post"][m], e["pre"][m]
        edges = {k: np.concatenate([e[k], mirrored[k]]) for k in e}
        attrs = dict(self.attrs, electrical_symmetry="mirrored: both directions present")
        return Connectome(self.neurons, edges, attrs, self.categories)

    def subgraph(self, *, neurons=None, cell_type=None, class_=None, side=None, region=None,
                 **columns) -> "Connectome":
        """The graph induced by the neurons matching every given filter.

        Each filter is a value or a list of values of the neuron column of
        that name (``class_`` is column ``class``; other neuron columns by
        keyword). ``neurons`` lists names or ids explicitly. ``region`` keeps
        only edges whose ``region`` label matches. Neurons are re-indexed in
        their original order.
        """
        keep = np.ones(self.n_neurons, bool)
        filters = dict(columns)
        if cell_type is not None:
            filters["cell_type"] = cell_type
        if class_ is not None:
            filters["class"] = class_
        if side is not None:
            filters["side"] = side
        for col, want in filters.items():
            if col not in self.neurons:
                raise KeyError(f"no neuron column {col!r}")
            want = [want] if isinstance(want, (str, int, np.integer)) else list(want)
            keep &= np.isin(self.neurons[col].astype(str), [str(x) for x in want])
        if neurons is not None:
            m = np.zeros(self.n_neurons, bool)
            m[self.index_of(neurons)] = True
            keep &= m
        new_index = np.cumsum(keep) - 1
        e = self.edges
        em = keep[e["pre"]] & keep[e["post"]]
        if region is not None:
            if "region" not in e:
                raise KeyError("the edges carry no region")
            labels = self.categories.get("region", [])
            want = [region] if isinstance(region, str) else list(region)
            codes = [i for i, lab in enumerate(labels) if lab in set(want)]
            em &= np.isin(e["region"], codes)
        edges = self._take_edges(em)
        edges["pre"] = new_index[edges["pre"]]
        edges["post"] = new_index[edges["post"]]
        neurons_new = {k: v[keep] for k, v in self.neurons.items()}
        return Connectome(neurons_new, edges, self.attrs, self.categories)

    # ------------------------------------------------------------------ statistics
    def degrees(self) -> dict[str, np.ndarray]:
        """Stored edges per neuron: chemical ``out``/``in``, ``electrical`` (either end)."""
        n = self.n_neurons
        e = self.edges
        c = e["kind"] == CHEMICAL
        ep, eq = e["pre"][~c], e["post"][~c]
        return {"out": np.bincount(e["pre"][c], minlength=n),
                "in": np.bincount(e["post"][c], minlength=n),
                "electrical": np.bincount(ep, minlength=n) + np.bincount(eq[eq != ep],
                                                                         minlength=n)}

    def summary(self) -> dict:
        """Neurons, edges and synapses per kind, degree and motif statistics."""
        d = self.degrees()
        k = self.edges["kind"]
        w = self.edges["weight"].astype(np.float64)
        return {
            "neurons": self.n_neurons,
            "edges": self.n_edges,
            "edges_by_kind": {kd: int(np.count_nonzero(k == i)) for i, kd in enumerate(KINDS)},
            "synapses_by_kind": {kd: _num(w[k == i].sum()) for i, kd in enumerate(KINDS)},
            "out_degree_chemical": degree_stats(d["out"]),
            "in_degree_chemical": degree_stats(d["in"]),
            "degree_electrical": degree_stats(d["electrical"]),
            "motifs_chemical": motif_counts(self),
        }


def _plain(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(object).astype(str) if a.dtype.kind in "TO" else a


def _num(v):
    v = float(v)
    return int(v) if v.is_integer() else v


def degree_stats(deg: np.ndarray) -> dict:
    """Mean, median, max and zero count of a degree vector."""
    deg = np.asarray(deg)
    if deg.size == 0:
        return {"mean": 0.0, "median": 0.0, "max": 0, "zero": 0}
    return {"mean": float(deg.mean()), "median": float(np.median(deg)), "max": int(deg.max()),
            "zero": int(np.count_nonzero(deg == 0))}


def motif_counts(g: Connectome, kind="chemical") -> dict:
    """Two- and three-neuron motif counts on the binary graph without self-loops.

    ``connected_pairs``: pairs with an edge either way; ``reciprocal_pairs``:
    pairs connected both ways; ``reciprocity``: fraction of directed edges
    that are reciprocated; ``feedforward_loops``: ordered triples a->b, b->c,
    a->c; ``cycles_3``: directed 3-cycles.
    """
    import scipy.sparse as sp

    p, q, _ = g.pairs(kind, symmetric=True)
    m = p != q
    p, q = p[m], q[m]
    n = g.n_neurons
    a = sp.csr_matrix((np.ones(len(p), np.int64), (p, q)), shape=(n, n))
    recip = int(a.multiply(a.T).nnz // 2)
    a2 = a @ a
    ffl = int(a2.multiply(a).sum())
    cycles = int(a2.multiply(a.T).sum() // 3)
    directed = len(p)
    return {"directed_edges": directed, "connected_pairs": directed - recip,
            "reciprocal_pairs": recip,
            "reciprocity": (2 * recip / directed) if directed else 0.0,
            "feedforward_loops": ffl, "cycles_3": cycles}


__all__ = ["Connectome", "NT_SIGN", "canonical_nt", "degree_stats", "motif_counts"]
