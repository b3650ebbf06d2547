"""The ``connectome/1`` store: a neuron table and an edge table.

Neurons live on dimension ``neuron`` (one row per cell: source id, name,
cell type, class, side, neurotransmitter, optional position); synaptic
connections live on dimension ``edge`` (``pre``/``post`` indices into the
neuron table, ``weight``, ``kind`` and optional per-edge columns). The edge
table is written in chunks along ``edge`` by :class:`ConnectomeWriter`, so a
130-million-row release converts with memory bounded by one chunk, and read
back in chunks by :class:`ConnectomeDataset`.

Symmetry rule for electrical synapses (gap junctions): each electrically
coupled pair is stored once, with ``pre <= post``, and its ``weight`` is the
number (or strength) of gap junctions between the two cells. Exports mirror
them into both directions unless asked not to.

``kind`` and other categorical edge columns (``region``,
``edge_neurotransmitter``) are stored as small integer codes with a
``categories`` attribute listing the labels: at 130 M edges a string per
edge would cost gigabytes, a code costs one byte.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from neurodata.errors import CorruptFileError, SchemaError
from neurodata.format.store import create_array, finalize_store, open_new_group

#: Edge kinds, in code order (``kind`` stores the index into this list).
KINDS = ("chemical", "electrical")
CHEMICAL, ELECTRICAL = 0, 1

#: Edges per chunk along ``edge`` (1 Mi edges: 8 MiB of ``pre`` per chunk).
EDGE_CHUNK = 1 << 20
NEURON_CHUNK = 1 << 18

#: Neuron-table string columns every store has (empty string = unknown).
NEURON_STRING_COLUMNS = ("name", "cell_type", "class", "side", "neurotransmitter")

#: Root attributes describing the release, written when known.
RELEASE_ATTRS = ("release", "version", "species", "sex", "stage", "citation", "licence")


def _code_dtype(n: int) -> np.dtype:
    return np.dtype(np.int8 if n < 127 else np.int16 if n < 32767 else np.int32)


class ConnectomeWriter:
    """Write a ``connectome/1`` store edge batch by edge batch.

    Parameters
    ----------
    path : path-like
        The (temporary) store folder to create.
    neurons : mapping of str -> array
        The neuron table: ``id`` (int64 or str) is required; ``name``,
        ``cell_type``, ``class``, ``side``, ``neurotransmitter`` default to
        empty strings; further numeric or string columns (``x``, ``y``,
        ``z``, ``subclass``...) are stored as given.
    edge_columns : mapping of str -> dtype
        Optional per-edge columns beyond ``pre, post, weight, kind``
        (e.g. ``confidence``, ``nt_gaba``).
    categories : mapping of str -> sequence of str
        Categorical edge columns (e.g. ``region``) and their labels; batches
        pass their codes.
    weight_dtype : dtype
        dtype of ``weight`` (int32 synapse counts by default).
    attrs : dict
        Root attributes (release, version, species, sex, stage, citation...).
    """

    def __init__(self, path, neurons: Mapping[str, np.ndarray], *, edge_columns=None,
                 categories=None, weight_dtype=np.int32, attrs=None, chunk: int = EDGE_CHUNK):
        self.path = Path(path)
        self.chunk = int(chunk)
        table = _normalise_neurons(neurons)
        self.n_neurons = len(table["id"])
        a = {"n_neurons": self.n_neurons, "kinds": list(KINDS),
             "electrical_symmetry": "each pair stored once with pre <= post"}
        a.update(attrs or {})
        self.root = open_new_group(self.path, "connectome", a)
        for name, values in table.items():
            create_array(self.root, name, values, ("neuron",), chunks=(NEURON_CHUNK,),
                         attrs={"units": "1"} if name in ("x", "y", "z") else None)
        self.categories = {k: list(v) for k, v in (categories or {}).items()}
        clash = set(table) & (set(edge_columns or {}) | set(self.categories)
                              | {"pre", "post", "weight", "kind"})
        if clash:
            raise ValueError(f"neuron and edge columns share names {sorted(clash)}; "
                             "one zarr group holds both tables")
        cols = {"pre": np.int64, "post": np.int64, "weight": weight_dtype,
                "kind": np.int8}
        for k, dt in (edge_columns or {}).items():
            cols[k] = dt
        for k, labels in self.categories.items():
            cols[k] = _code_dtype(len(labels))
        self.dtypes = {k: np.dtype(v) for k, v in cols.items()}
        self.arrays = {}
        for k, dt in self.dtypes.items():
            attrs_k = {}
            if k == "kind":
                attrs_k["categories"] = list(KINDS)
            elif k in self.categories:
                attrs_k["categories"] = self.categories[k]
            if k in ("pre", "post"):
                attrs_k["description"] = "index into dimension neuron"
            self.arrays[k] = create_array(self.root, k, None, ("edge",), shape=(0,), dtype=dt,
                                          chunks=(self.chunk,), attrs=attrs_k or None)
        self._pending: dict[str, list[np.ndarray]] = {k: [] for k in self.dtypes}
        self._n_pending = 0
        self.n_edges = 0
        self.synapses = np.zeros(len(KINDS), np.float64)

    def append(self, pre, post, weight, kind, **extra) -> None:
        """Add a batch of edges (numpy arrays of equal length).

        ``kind`` is a code array (0 chemical, 1 electrical) or a scalar code.
        Electrical edges must already follow the symmetry rule.
        """
        pre = np.asarray(pre, np.int64)
        n = len(pre)
        batch = {"pre": pre, "post": np.asarray(post, np.int64),
                 "weight": np.asarray(weight),
                 "kind": np.broadcast_to(np.asarray(kind, np.int8), (n,))}
        for k in self.dtypes:
            if k not in batch:
                if k not in extra:
                    raise ValueError(f"edge column {k!r} missing from batch")
                batch[k] = np.asarray(extra[k])
        for k, v in batch.items():
            if len(v) != n:
                raise ValueError(f"edge column {k!r} has {len(v)} rows, expected {n}")
        if n == 0:
            return
        self._check(batch)
        self.synapses += np.bincount(batch["kind"], weights=batch["weight"].astype(np.float64),
                                     minlength=len(KINDS))[:len(KINDS)]
        for k in self.dtypes:
            self._pending[k].append(batch[k].astype(self.dtypes[k], copy=False))
        self._n_pending += n
        if self._n_pending >= self.chunk:
            self._flush(full_only=True)

    def _check(self, b) -> None:
        for end in ("pre", "post"):
            v = b[end]
            if v.min() < 0 or v.max() >= self.n_neurons:
                raise CorruptFileError(f"edge {end} index outside 0..{self.n_neurons - 1}",
                                       self.path)
        k = b["kind"]
        if k.min() < 0 or k.max() >= len(KINDS):
            raise CorruptFileError("edge kind code outside the known kinds", self.path)
        e = k == ELECTRICAL
        if e.any() and np.any(b["pre"][e] > b["post"][e]):
            raise CorruptFileError("electrical edge with pre > post breaks the symmetry rule",
                                   self.path)

    def _flush(self, full_only: bool) -> None:
        if not self._n_pending:
            return
        joined = {k: np.concatenate(v) if len(v) > 1 else v[0] for k, v in self._pending.items()}
        n = self._n_pending
        take = (n // self.chunk) * self.chunk if full_only else n
        if take == 0:
            return
        start = self.n_edges
        for k, arr in self.arrays.items():
            arr.resize((start + take,))
            arr[start:start + take] = joined[k][:take]
        self.n_edges += take
        self._pending = {k: ([v[take:]] if take < n else []) for k, v in joined.items()}
        self._n_pending = n - take

    def close(self, provenance: dict | None = None) -> None:
        """Write the remaining edges, the totals and consolidated metadata."""
        self._flush(full_only=False)
        a = {"n_edges": int(self.n_edges),
             "synapses": {k: _num(v) for k, v in zip(KINDS, self.synapses)}}
        if provenance is not None:
            a["provenance"] = provenance
        self.root.attrs.update(a)
        finalize_store(self.path)


def _num(v: float):
    return int(v) if float(v).is_integer() else float(v)


def _normalise_neurons(neurons: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if "id" not in neurons:
        raise ValueError("neuron table needs an 'id' column")
    ids = np.asarray(neurons["id"])
    n = len(ids)
    if ids.dtype.kind in "iu":
        ids = ids.astype(np.int64)
    else:
        ids = ids.astype(str)
    out = {"id": ids}
    for k in NEURON_STRING_COLUMNS:
        v = neurons.get(k)
        out[k] = np.full(n, "", dtype=object).astype(str) if v is None else _str_column(v)
    for k, v in neurons.items():
        if k in out:
            continue
        v = np.asarray(v)
        out[k] = _str_column(v) if v.dtype.kind in "OUS" else v
    for k, v in out.items():
        if len(v) != n:
            raise ValueError(f"neuron column {k!r} has {len(v)} rows, expected {n}")
    srt = np.sort(ids)
    if n and np.any(srt[1:] == srt[:-1]):
        raise ValueError("neuron ids are not unique")
    return out


def _str_column(v) -> np.ndarray:
    a = np.asarray(v, dtype=object)
    a = np.where([x is None or (isinstance(x, float) and x != x) for x in a], "", a)
    return a.astype(str)


# --------------------------------------------------------------------------- reading

class ConnectomeDataset:
    """A ``connectome/1`` store.

    ``len(ds)`` is the number of stored **edges** (electrical pairs count
    once); ``ds[i]`` is edge ``i`` as a dict (``pre``/``post`` indices and
    names, ``weight``, ``kind`` label, optional columns); ``ds[a:b]`` is a
    dict of column arrays. The neuron table is ``ds.neurons``. Graph exports
    (:meth:`to_scipy`, :meth:`to_networkx`, :meth:`to_torch`...) load the
    edge table into a :class:`neurodata.connectome.Connectome`.

    A local store is pinned to the version current at open: reads return that
    version or raise :class:`~neurodata.errors.StoreReplacedError` after a
    re-conversion, never a mix (see neurodata/format/snapshot.py).
    """

    def __init__(self, path, storage_options: dict | None = None):
        from neurodata.format.snapshot import open_pinned

        self.path = path
        self.storage_options = storage_options
        self._snap = open_pinned(path, lambda: self._open(storage_options))

    def _open(self, storage_options) -> None:
        import zarr

        path = self.path
        try:
            self.root = zarr.open_group(path if isinstance(path, str) else os.fspath(path),
                                        mode="r", **({"storage_options": storage_options}
                                                     if storage_options else {}))
        except Exception as e:
            raise SchemaError(f"cannot open connectome store ({e})", path) from None
        self.attrs = dict(self.root.attrs)
        if self.attrs.get("modality") != "connectome":
            raise SchemaError("not a connectome store", path)
        members = set(self.root.array_keys())
        missing = {"id", "pre", "post", "weight", "kind"} - members
        if missing:
            raise SchemaError(f"connectome store lacks arrays {sorted(missing)}", path)
        self.edge_names = [k for k in members if self.root[k].metadata.dimension_names == ("edge",)]
        self.neuron_names = [k for k in members
                             if self.root[k].metadata.dimension_names == ("neuron",)]
        self._neurons = None

    def _read(self, read):
        """``read()`` of the pinned version (StoreReplacedError after a replacement)."""
        from neurodata.format.snapshot import checked_read

        return checked_read(self._snap, read)

    # -- sizes
    def __len__(self) -> int:
        return int(self.root["pre"].shape[0])

    @property
    def n_edges(self) -> int:
        return len(self)

    @property
    def n_neurons(self) -> int:
        return int(self.root["id"].shape[0])

    def categories(self, column: str) -> list[str] | None:
        """Labels of a categorical edge column (``kind``, ``region``...), else None."""
        c = self.root[column].attrs.get("categories")
        return list(c) if c is not None else None

    @property
    def neurons(self) -> dict[str, np.ndarray]:
        """The neuron table as a dict of numpy columns (read once, cached)."""
        if self._neurons is None:
            self._neurons = self._read(
                lambda: {k: _plain(self.root[k][...]) for k in sorted(self.neuron_names)})
        return self._neurons

    def neuron_frame(self):
        """The neuron table as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.neurons)

    # -- edges
    def edges(self, start: int = 0, stop: int | None = None, columns=None,
              decode: bool = False) -> dict[str, np.ndarray]:
        """Edge columns ``[start:stop]``; ``decode`` turns category codes into labels."""
        cols = columns or self.edge_names
        out = self._read(lambda: {k: np.asarray(self.root[k][start:stop]) for k in cols})
        if decode:
            for k in list(out):
                cats = self.categories(k)
                if cats is not None:
                    out[k] = np.asarray(cats + [""], dtype=object)[out[k]].astype(str)
        return out

    def iter_edges(self, batch: int | None = None, columns=None) -> Iterator[dict]:
        """Edge columns in batches of ``batch`` edges (default: one store chunk)."""
        batch = batch or int(self.root["pre"].chunks[0])
        for s in range(0, len(self), batch):
            yield self.edges(s, min(s + batch, len(self)), columns)

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            out = self.edges(start, stop, decode=True)
            return {k: v[::step] for k, v in out.items()} if step != 1 else out
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"edge {i} out of range for {len(self)} edges")
        row = {k: v[0] for k, v in self.edges(i, i + 1, decode=True).items()}
        names = self.neurons["name"]
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        row["pre_name"] = str(names[row["pre"]])
        row["post_name"] = str(names[row["post"]])
        return row

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"<ConnectomeDataset {self.path!s}: {self.n_neurons} neurons, {len(self)} edges>"

    def to_xarray(self):
        """The store as an ``xarray.DataTree`` (lazy, dask-backed)."""
        import xarray as xr

        kw = {"storage_options": self.storage_options} if self.storage_options else {}
        return xr.open_datatree(self.path, engine="zarr", chunks={}, **kw)

    def load(self, columns=None):
        """The graph in memory as a :class:`neurodata.connectome.Connectome`.

        ``columns`` limits the edge columns read (``pre, post, weight, kind``
        are always read).
        """
        from neurodata.connectome import Connectome

        core = ["pre", "post", "weight", "kind"]
        cols = self.edge_names if columns is None else list(dict.fromkeys(core + list(columns)))
        cats = {k: self.categories(k) for k in cols if self.categories(k) is not None}
        cats.pop("kind", None)
        return Connectome(self.neurons, self.edges(columns=cols), attrs=self.attrs,
                          categories=cats)

    # exports: delegated to the in-memory graph (only the core edge columns are read)
    def to_scipy(self, *a, **kw):
        return self.load(columns=[]).to_scipy(*a, **kw)

    def to_networkx(self, *a, **kw):
        return self.load(columns=[]).to_networkx(*a, **kw)

    def to_torch(self, *a, **kw):
        return self.load(columns=[]).to_torch(*a, **kw)

    def adjacency(self, *a, **kw):
        return self.load(columns=[]).adjacency(*a, **kw)

    def signed_weights(self, *a, **kw):
        return self.load().signed_weights(*a, **kw)

    def subgraph(self, **kw):
        return self.load().subgraph(**kw)

    def threshold(self, min_weight):
        return self.load().threshold(min_weight)

    def provenance(self) -> dict:
        return dict(self.attrs.get("provenance", {}))

    def summary(self, motifs: bool = True) -> dict:
        """Figures for ``neurodata inspect``: neurons, edges, synapses per kind,
        degree statistics (chemical in/out, electrical), motif counts for
        graphs small enough, bytes on disk. Reads the edge table in chunks."""
        from neurodata.connectome import degree_stats, motif_counts
        from neurodata.format.inspect import store_bytes

        n = self.n_neurons
        out_deg = np.zeros(n, np.int64)
        in_deg = np.zeros(n, np.int64)
        el_deg = np.zeros(n, np.int64)
        edges_by_kind = np.zeros(len(KINDS), np.int64)
        syn_by_kind = np.zeros(len(KINDS), np.float64)
        self_loops = 0
        for b in self.iter_edges(columns=["pre", "post", "weight", "kind"]):
            k = b["kind"]
            edges_by_kind += np.bincount(k, minlength=len(KINDS))[:len(KINDS)]
            syn_by_kind += np.bincount(k, weights=b["weight"].astype(np.float64),
                                       minlength=len(KINDS))[:len(KINDS)]
            c = k == CHEMICAL
            out_deg += np.bincount(b["pre"][c], minlength=n)
            in_deg += np.bincount(b["post"][c], minlength=n)
            e = ~c
            ep, eq = b["pre"][e], b["post"][e]
            el_deg += np.bincount(ep, minlength=n) + np.bincount(eq[eq != ep], minlength=n)
            self_loops += int(np.count_nonzero(b["pre"] == b["post"]))
        s = {
            "path": os.fspath(self.path),
            "schema": self.attrs.get("neurodata_schema"),
        }
        for k in RELEASE_ATTRS:
            if self.attrs.get(k):
                s[k] = self.attrs[k]
        s.update({
            "neurons": n,
            "edges": len(self),
            "edges_by_kind": {k: int(v) for k, v in zip(KINDS, edges_by_kind)},
            "synapses_by_kind": {k: _num(v) for k, v in zip(KINDS, syn_by_kind)},
            "self_loops": self_loops,
            "out_degree_chemical": degree_stats(out_deg),
            "in_degree_chemical": degree_stats(in_deg),
            "degree_electrical": degree_stats(el_deg),
            "isolated_neurons": int(np.count_nonzero((out_deg + in_deg + el_deg) == 0)),
        })
        if motifs and len(self) <= 2_000_000 and n <= 50_000:
            s["motifs_chemical"] = motif_counts(self.load(columns=[]), kind="chemical")
        s["bytes_on_disk"] = store_bytes(self.path)
        nbytes = s["bytes_on_disk"]
        s["bytes_per_edge"] = nbytes / len(self) if (nbytes and len(self)) else None
        s["provenance"] = self.attrs.get("provenance", {})
        return s


def _plain(a) -> np.ndarray:
    """numpy array with fixed-width ``str`` instead of zarr's variable-width StringDType."""
    a = np.asarray(a)
    return a.astype(object).astype(str) if a.dtype.kind in "TO" else a


def open_store(path, storage_options: dict | None = None) -> ConnectomeDataset:
    """Open a ``connectome/1`` store (what ``neurodata.open`` calls)."""
    return ConnectomeDataset(path, storage_options)


def _edge_batches(ds, columns):
    """Edge batches of a store (chunk by chunk) or of an in-memory Connectome."""
    if hasattr(ds, "iter_edges"):
        yield from ds.iter_edges(columns=columns)
    else:
        yield {k: ds.edges[k] for k in columns}


def _streamed_figures(ds, n: int, bins: int):
    """Degrees (stored edges per neuron) and a binned synapse histogram, chunk by chunk."""
    deg = {"out": np.zeros(n, np.int64), "in": np.zeros(n, np.int64),
           "electrical": np.zeros(n, np.int64)}
    hist = np.zeros((bins, bins)) if bins else None
    n_edges = 0
    for b in _edge_batches(ds, ["pre", "post", "weight", "kind"]):
        c = b["kind"] == CHEMICAL
        deg["out"] += np.bincount(b["pre"][c], minlength=n)
        deg["in"] += np.bincount(b["post"][c], minlength=n)
        ep, eq = b["pre"][~c], b["post"][~c]
        deg["electrical"] += np.bincount(ep, minlength=n) + np.bincount(eq[eq != ep], minlength=n)
        if hist is not None:
            h, _, _ = np.histogram2d(b["pre"], b["post"], bins=bins, range=[[0, n], [0, n]],
                                     weights=b["weight"].astype(np.float64))
            hist += h
        n_edges += len(b["pre"])
    return deg, hist, n_edges


def preview(ds, out_png, max_dense: int = 1500) -> Path:
    """Draw the adjacency matrix and degree distributions into ``out_png``.

    Small graphs (``<= max_dense`` neurons) show the dense chemical and
    electrical adjacency (log colour scale); larger ones a 512x512 histogram
    of synapses over (pre, post) indices, accumulated chunk by chunk so a
    130 M-edge store previews in bounded memory. The right panel shows
    chemical in/out-degree and electrical-degree histograms.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    n = ds.n_neurons
    dense = 0 < n <= max_dense
    bins = 0 if dense or not n else 512
    deg, hist, n_edges = _streamed_figures(ds, n, bins)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5.5))
    if dense:
        g = ds.load(columns=[]) if hasattr(ds, "iter_edges") else ds
        ca, ea = g.adjacency("chemical"), g.adjacency("electrical")
        chem = np.where(ca > 0, ca, np.nan)
        elec = np.where(ea > 0, ea, np.nan)  # drawn over chemical where both exist
        vmax = max(float(max(ca.max(initial=0), ea.max(initial=0))), 1.0)
        ax0.imshow(chem, cmap="Reds", norm=LogNorm(1, vmax), interpolation="nearest")
        ax0.imshow(elec, cmap="Blues", norm=LogNorm(1, vmax), interpolation="nearest")
        ax0.set_title(f"adjacency ({n} neurons; red chemical, blue electrical)")
    elif hist is not None and hist.any():
        ax0.imshow(np.where(hist > 0, hist, np.nan), cmap="viridis", norm=LogNorm(),
                   extent=[0, n, n, 0], interpolation="nearest")
        ax0.set_title(f"synapses binned ({n} neurons, {bins}x{bins} bins)")
    ax0.set_xlabel("post (neuron index)")
    ax0.set_ylabel("pre (neuron index)")
    top = max(1, int(max(v.max(initial=0) for v in deg.values())))
    hbins = np.arange(0, top + 2) if top < 60 else np.linspace(0, top + 1, 60)
    for key, colour in (("out", "C3"), ("in", "C0"), ("electrical", "C2")):
        ax1.hist(deg[key], bins=hbins, histtype="step", color=colour, label=f"{key}-degree")
    ax1.set_yscale("log")
    ax1.set_xlabel("degree (stored edges)")
    ax1.set_ylabel("neurons")
    ax1.legend()
    title = ds.attrs.get("release") or Path(str(getattr(ds, "path", ""))).name
    fig.suptitle(f"{title}: {n} neurons, {n_edges} edges")
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


__all__ = ["KINDS", "CHEMICAL", "ELECTRICAL", "ConnectomeWriter", "ConnectomeDataset",
           "open_store", "preview"]
