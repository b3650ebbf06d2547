"""C. elegans connectome of Varshney et al. 2011 (``NeuronConnect`` tables).

One row per (Neuron 1, Neuron 2, Type) with ``Nbr`` synapses; the release
ships it as ``NeuronConnect.xls`` / ``NeuronConnectFormatted.xlsx`` (and as
text). Type codes (Varshney et al. 2011, PLoS Comput Biol 7:e1001066):

- ``S``: Neuron 1 sends a chemical synapse to Neuron 2; ``Sp``: the same,
  at a polyadic synapse (several postsynaptic partners);
- ``R`` / ``Rp``: Neuron 1 receives from Neuron 2 (monadic / polyadic): the
  same synapses as the ``S``/``Sp`` rows of the partner, listed again from
  the other side;
- ``EJ``: electrical junction (gap junction), listed for both neurons;
- ``NMJ``: neuromuscular junction; Neuron 2 is the pooled target ``NMJ``.

To count every synapse once, chemical edges come from ``S`` + ``Sp`` only
(pre = Neuron 1); ``R``/``Rp`` rows are checked against them (a warning
says how many pairs disagree) and dropped; ``EJ`` rows are reduced to one
row per pair (``mirrored`` rule: the pair's count is the larger of its two
listings); ``NMJ`` rows become chemical edges to a pseudo-cell ``NMJ``
(class ``muscle (pooled)``), or are dropped with ``nmj=False``. Pairs whose
total is 0 carry no synapse and are dropped. The ``polyadic`` edge column
keeps the ``Sp`` share of each chemical edge.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from neurodata.errors import FormatError
from neurodata.format.connectome import CHEMICAL, ELECTRICAL
from neurodata.loaders._connectome import (C_ELEGANS, is_xlsx, norm_label, read_cells,
                                           reduce_electrical, sheet_names, sides_from_names,
                                           write_small)

VERSION = "Varshney et al. 2011 NeuronConnect"
CITATION = ("Varshney LR, Chen BL, Paniagua E, Hall DH, Chklovskii DB (2011) Structural "
            "properties of the Caenorhabditis elegans neuronal network. PLoS Comput Biol "
            "7(2):e1001066. doi:10.1371/journal.pcbi.1001066")
HEADER = ("neuron1", "neuron2", "type", "nbr")
TYPES = ("S", "Sp", "R", "Rp", "EJ", "NMJ")


def _header_index(row, path=None) -> dict[str, int] | None:
    names = [norm_label(v) if v is not None else "" for v in row]
    found = {}
    for j, n in enumerate(names):
        if n in HEADER:
            if n in found:
                if path is None:
                    return None
                raise FormatError(f"row 1: duplicate header {row[j]!r} in columns "
                                  f"{found[n] + 1} and {j + 1}", path)
            found[n] = j
    return found if len(found) == 4 else None


def sniff(path: Path, head: bytes) -> bool:
    """An xlsx workbook whose first sheet starts with Neuron 1, Neuron 2, Type, Nbr."""
    if path.is_dir() or not is_xlsx(path, head):
        return False
    names = sheet_names(path)
    rows = read_cells(path, names[0], max_rows=1)
    return bool(rows) and _header_index(rows[0]) is not None


def read_table(path) -> dict[str, np.ndarray]:
    """The rows as ``n1, n2, type, nbr`` arrays, validated (errors name row and column)."""
    rows = read_cells(path)
    if not rows:
        raise FormatError("empty workbook", path)
    idx = _header_index(rows[0], path)
    if idx is None:
        raise FormatError("first row is not the header Neuron 1, Neuron 2, Type, Nbr", path)
    header = rows[0]
    body = [r for r in rows[1:] if any(v is not None and str(v).strip() for v in r)]
    out = {}
    for key in HEADER:
        j = idx[key]
        col = [r[j] if j < len(r) else None for r in body]
        name = str(header[j])
        if key == "nbr":
            vals = np.empty(len(col), np.float64)
            for i, v in enumerate(col):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    try:
                        v = float(str(v).strip())
                    except (TypeError, ValueError):
                        raise FormatError(f"row {i + 2}, column {name!r}: non-numeric synapse "
                                          f"count {v!r}", path) from None
                if not np.isfinite(v) or v < 0:
                    raise FormatError(f"row {i + 2}, column {name!r}: invalid synapse count "
                                      f"{v!r}", path)
                vals[i] = v
            out[key] = vals.astype(np.int64) if np.all(vals % 1 == 0) else vals
        else:
            for i, v in enumerate(col):
                if v is None or not str(v).strip():
                    raise FormatError(f"row {i + 2}, column {name!r}: empty cell", path)
            out[key] = np.array([str(v).strip() for v in col], dtype=str)
    bad = ~np.isin(out["type"], TYPES)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise FormatError(f"row {i + 2}, column {str(header[idx['type']])!r}: unknown type "
                          f"{str(out['type'][i])!r} (expected one of {', '.join(TYPES)})", path)
    return out


def convert(src, out, attrs=None, *, nmj: bool = True, **kw) -> None:
    """Convert a Varshney et al. 2011 ``NeuronConnect`` table into a store.

    Parameters
    ----------
    nmj : bool
        Keep neuromuscular junctions as chemical edges to a pooled ``NMJ``
        pseudo-cell.
    """
    src = Path(src)
    t = read_table(src)
    n1, n2, typ, nbr = t["neuron1"], t["neuron2"], t["type"], t["nbr"]
    keep = typ != "NMJ" if not nmj else np.ones(len(typ), bool)
    names = list(dict.fromkeys(np.concatenate([n1[keep], n2[keep]]).tolist()))
    if "NMJ" in names:  # the pooled target goes last
        names.remove("NMJ")
        names.append("NMJ")
    index = {n: i for i, n in enumerate(names)}
    ncell = len(names)
    p_all = np.array([index.get(x, -1) for x in n1])
    q_all = np.array([index.get(x, -1) for x in n2])
    # chemical: S + Sp (+ NMJ), summed per pair; polyadic share kept
    send = np.isin(typ, ("S", "Sp")) | ((typ == "NMJ") & nmj)
    key = p_all[send] * ncell + q_all[send]
    uk, inv = np.unique(key, return_inverse=True)
    w = np.zeros(len(uk), nbr.dtype)
    poly = np.zeros(len(uk), nbr.dtype)
    np.add.at(w, inv, nbr[send])
    np.add.at(poly, inv, np.where(typ[send] == "Sp", nbr[send], 0))
    _check_receives(src, p_all, q_all, typ, nbr, ncell)
    nz = w > 0
    cp, cq, cw, cpoly = uk[nz] // ncell, uk[nz] % ncell, w[nz], poly[nz]
    ej = typ == "EJ"
    ep, eq, ew, rule = reduce_electrical(p_all[ej], q_all[ej], nbr[ej], ncell, "mirrored", src)
    if rule == "mirrored":
        _check_mirrored(src, p_all[ej], q_all[ej], nbr[ej], ncell)
    enz = ew > 0
    ep, eq, ew = ep[enz], eq[enz], ew[enz]
    edges = {"pre": np.concatenate([cp, ep]), "post": np.concatenate([cq, eq]),
             "weight": np.concatenate([cw, ew]),
             "kind": np.concatenate([np.full(len(cp), CHEMICAL, np.int8),
                                     np.full(len(ep), ELECTRICAL, np.int8)]),
             "polyadic": np.concatenate([cpoly, np.zeros(len(ep), cpoly.dtype)]).astype(np.int32)}
    cls = np.array(["muscle (pooled)" if n == "NMJ" else "" for n in names], dtype=str)
    neurons = {"id": np.array(names, dtype=str), "name": np.array(names, dtype=str),
               "class": cls, "side": sides_from_names(names)}
    a = {"release": "Varshney et al. 2011 (WormAtlas NeuronConnect)", "version": "2011",
         "species": C_ELEGANS, "sex": "hermaphrodite", "stage": "adult", "citation": CITATION,
         "electrical_rule": rule, "weight_units": "synapses",
         "type_codes": "chemical = S + Sp (+ NMJ); R/Rp repeat them and are dropped; "
                       "EJ reduced once per pair"}
    a.update(attrs or {})
    write_small(out, neurons, edges, a, [src], f"varshney_xlsx/{VERSION}")


def _check_receives(src, p, q, typ, nbr, n) -> None:
    rec = np.isin(typ, ("R", "Rp"))
    if not rec.any():
        return
    send = np.isin(typ, ("S", "Sp"))
    send_keys, sinv = np.unique(p[send] * n + q[send], return_inverse=True)
    send_w = np.zeros(len(send_keys), nbr.dtype)
    np.add.at(send_w, sinv, nbr[send])
    key = q[rec] * n + p[rec]  # R row: Neuron 2 sends to Neuron 1
    uk, inv = np.unique(key, return_inverse=True)
    w = np.zeros(len(uk), nbr.dtype)
    np.add.at(w, inv, nbr[rec])
    common, ia, ib = np.intersect1d(send_keys, uk, return_indices=True)
    differ = (len(send_keys) - len(common)) + (len(uk) - len(common)) + int(
        np.count_nonzero(send_w[ia] != w[ib]))
    if differ:
        warnings.warn(f"{src}: {differ} neuron pairs have R/Rp counts that differ from the "
                      "partner's S/Sp counts; S/Sp are used", stacklevel=3)


def _check_mirrored(src, p, q, w, n) -> None:
    fwd = p * n + q
    rev = q * n + p
    a = dict(zip(fwd.tolist(), w.tolist()))
    bad = sum(1 for k, r, x in zip(fwd.tolist(), rev.tolist(), w.tolist()) if a.get(r) != x)
    if bad:
        warnings.warn(f"{src}: {bad} EJ rows lack an equal mirror row", stacklevel=3)
