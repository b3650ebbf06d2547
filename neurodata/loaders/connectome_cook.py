"""Adjacency-matrix workbooks of Cook et al. 2019 (C. elegans, both sexes).

Supplementary information 5 of Cook et al. (2019, Nature 571:63) holds one
sheet per sex and synapse type (``hermaphrodite chemical``, ``herm gap jn
symmetric``, ``herm gap jn asymmetric``, ``male chemical``, ...). Each sheet:

- a few header rows of grouped labels (merged cells: cell category such as
  ``SENSORY NEURONS``, then a sub-group such as a layer number or ``HEAD
  MOTOR NEURONS``), then one row of cell names (the columns);
- a few label columns the same way, then one column of cell names (the rows);
- the matrix body: empty or a number. For chemical sheets rows are
  presynaptic and columns postsynaptic; weights count EM serial sections of
  connectivity (number and size of synapses), per the workbook's legend;
- a trailing row and column repeating the names (ignored: they lie outside
  the named rows/columns).

Rows and columns are matched by name, not position (the hermaphrodite
symmetric gap-junction sheet orders two cells differently on its axes). A
name listed twice on one axis (``RMFR`` in the male chemical rows) has its
rows summed, with a warning. Gap junctions follow the store's symmetry rule:
``symmetric`` sheets list each pair in both directions (reduced with the
``mirrored`` rule), ``asymmetric`` sheets once (``sum`` rule).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from neurodata.errors import FormatError
from neurodata.format.connectome import CHEMICAL, ELECTRICAL
from neurodata.loaders._connectome import (C_ELEGANS, column_letter, is_xlsx, merged_ranges,
                                           read_cells, reduce_electrical, sheet_names,
                                           sides_from_names, write_small)

VERSION = "Cook et al. 2019 SI5 adjacency matrices"
CITATION = ("Cook SJ, Jarrell TA, Brittin CA, et al. (2019) Whole-animal connectomes of both "
            "Caenorhabditis elegans sexes. Nature 571:63-71. doi:10.1038/s41586-019-1352-7")

_SHEET_KIND = re.compile(r"chemical|gap|electrical", re.I)


def sheet_info(name: str) -> tuple[str | None, int | None, str | None]:
    """``(sex, kind code, variant)`` from a sheet name, None where unknown."""
    low = name.lower()
    sex = "male" if re.match(r"\s*male\b", low) else (
        "hermaphrodite" if low.strip().startswith("herm") else None)
    kind = CHEMICAL if "chemical" in low else ELECTRICAL if ("gap" in low or "electrical" in low) \
        else None
    variant = "asymmetric" if "asymmetric" in low else "symmetric" if "symmetric" in low else None
    return sex, kind, variant


def sniff(path: Path, head: bytes) -> bool:
    """An xlsx workbook with sheets named by synapse type whose first such
    sheet has cell names along a header row (not a ``Neuron 1``-style table)."""
    if path.is_dir() or not is_xlsx(path, head):
        return False
    names = [n for n in sheet_names(path) if _SHEET_KIND.search(n)]
    if not names:
        return False
    rows = [r[:40] for r in read_cells(path, names[0], max_rows=8)]
    hr = _header_row(rows)
    if hr is None:
        return False
    strings = [v for v in rows[hr] if isinstance(v, str) and v.strip()]
    low = {s.strip().lower() for s in strings}
    return len(strings) >= 8 and not ({"neuron 1", "neuron 2"} & low)


def _header_row(rows) -> int | None:
    counts = [sum(isinstance(v, str) and bool(v.strip()) for v in r) for r in rows[:12]]
    if not counts or max(counts) < 2:
        return None
    return int(np.argmax(counts))


def read_sheet(path, sheet: str) -> dict:
    """One matrix sheet as labelled arrays.

    Returns a dict with ``rows``/``cols`` (cell names), ``matrix``
    (float64, 0 where empty), ``row_groups``/``col_groups`` (list per label
    level of the group labels, '' where none).
    """
    rows = read_cells(path, sheet)
    if not rows:
        raise FormatError(f"sheet {sheet!r} is empty", path)
    width = max(len(r) for r in rows)
    for r in rows:
        r.extend([None] * (width - len(r)))
    hr = _header_row(rows)
    if hr is None:
        raise FormatError(f"sheet {sheet!r}: no header row of cell names found", path)
    col_counts = [sum(isinstance(rows[i][j], str) and bool(rows[i][j].strip())
                      for i in range(hr + 1, len(rows))) for j in range(min(12, width))]
    nc = int(np.argmax(col_counts))
    if col_counts[nc] < 2:
        raise FormatError(f"sheet {sheet!r}: no column of cell names found", path)
    cj = [j for j in range(nc + 1, width) if _is_name(rows[hr][j])]
    ri = [i for i in range(hr + 1, len(rows)) if _is_name(rows[i][nc])]
    col_names = [str(rows[hr][j]).strip() for j in cj]
    row_names = [str(rows[i][nc]).strip() for i in ri]
    body = np.zeros((len(ri), len(cj)), np.float64)
    for a, i in enumerate(ri):
        r = rows[i]
        for b, j in enumerate(cj):
            v = r[j]
            if v is None or v == "":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                try:
                    v = float(str(v).strip()) if str(v).strip() else 0.0
                except ValueError:
                    raise FormatError(f"sheet {sheet!r} cell {column_letter(j)}{i + 1} "
                                      f"(row {row_names[a]}, column {col_names[b]}): "
                                      f"non-numeric value {v!r}", path) from None
            if not np.isfinite(v) or v < 0:
                raise FormatError(f"sheet {sheet!r} cell {column_letter(j)}{i + 1}: "
                                  f"invalid weight {v!r}", path)
            body[a, b] = v
    merged = merged_ranges(path, sheet)

    def label(i, j):
        for r0, c0, r1, c1 in merged:
            if r0 <= i <= r1 and c0 <= j <= c1:
                v = rows[r0][c0]
                return "" if v is None else str(v).strip()
        v = rows[i][j]
        return "" if v is None else str(v).strip()

    col_groups = [[label(lv, j) for j in cj] for lv in range(hr)]
    row_groups = [[label(i, lv) for i in ri] for lv in range(nc)]
    rows_, body = _merge_duplicates(row_names, body, sheet, "row", path)
    cols_, body_t = _merge_duplicates(col_names, body.T, sheet, "column", path)
    body = body_t.T
    keep_r = _first_index(row_names)
    keep_c = _first_index(col_names)
    return {"rows": rows_, "cols": cols_, "matrix": body,
            "row_groups": [[g[k] for k in keep_r] for g in row_groups],
            "col_groups": [[g[k] for k in keep_c] for g in col_groups]}


def _is_name(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _first_index(names) -> list[int]:
    seen, out = set(), []
    for k, n in enumerate(names):
        if n not in seen:
            seen.add(n)
            out.append(k)
    return out


def _merge_duplicates(names, body, sheet, axis, path):
    uniq = list(dict.fromkeys(names))
    if len(uniq) == len(names):
        return names, body
    idx = {n: k for k, n in enumerate(uniq)}
    dups = sorted({n for n in names if names.count(n) > 1})
    warnings.warn(f"{path}: sheet {sheet!r} lists {axis} name(s) {dups} more than once; "
                  "their values are summed", stacklevel=3)
    out = np.zeros((len(uniq), body.shape[1]), body.dtype)
    np.add.at(out, np.array([idx[n] for n in names]), body)
    return uniq, out


def select_sheets(sheetnames, sex: str, gap: str) -> list[str]:
    """The chemical sheet and one gap-junction sheet (``gap`` variant) of ``sex``."""
    chosen = []
    for name in sheetnames:
        s, k, v = sheet_info(name)
        if s != sex or k is None:
            continue
        if k == CHEMICAL or v in (None, gap):
            chosen.append(name)
    return chosen


def convert(src, out, attrs=None, *, sex: str = "hermaphrodite", sheets=None,
            gap: str = "asymmetric", **kw) -> None:
    """Convert the sheets of one sex into a ``connectome/1`` store.

    Parameters
    ----------
    sex : {"hermaphrodite", "male"}
        Which animal (sheets are selected by name).
    sheets : list of str, optional
        Exact sheets to convert instead (all of one sex); a single chemical
        or gap-junction sheet works too.
    gap : {"asymmetric", "symmetric"}
        Which gap-junction sheet to use when both exist. Both hold the same
        junctions: ``asymmetric`` lists each once, ``symmetric`` both ways.
    """
    src = Path(src)
    if sex not in ("hermaphrodite", "male"):
        raise ValueError(f"sex must be 'hermaphrodite' or 'male', not {sex!r}")
    all_sheets = sheet_names(src)
    names = list(sheets) if sheets else select_sheets(all_sheets, sex, gap)
    if not names:
        raise FormatError(f"no {sex} chemical/gap-junction sheets among {all_sheets}", src)
    sexes = {sheet_info(n)[0] for n in names} - {None}
    if len(sexes) > 1:
        raise ValueError(f"sheets {names} mix sexes; convert one sex per store")
    parsed = {n: read_sheet(src, n) for n in names}
    legend = _legend(src, all_sheets)
    # neuron table: union of names in sheet order, columns first
    # labels: the row labels (vertically merged, complete) win; column labels fill gaps
    order: dict[str, int] = {}
    groups: dict[str, list[str]] = {}
    for n in names:
        s = parsed[n]
        for cell in s["cols"] + s["rows"]:
            order.setdefault(cell, len(order))
        for axis_names, axis_groups in ((s["rows"], s["row_groups"]),
                                        (s["cols"], s["col_groups"])):
            for k, cell in enumerate(axis_names):
                labels = [g[k] for g in axis_groups]
                old = groups.get(cell)
                if old is None or sum(map(bool, labels)) > sum(map(bool, old)):
                    groups[cell] = labels
    cells = list(order)
    levels = max((len(g) for g in groups.values()), default=0)
    cls = np.array([(groups[c] + [""] * levels)[0] if levels else "" for c in cells], dtype=str)
    sub = np.array([(groups[c] + [""] * levels)[1] if levels > 1 else "" for c in cells],
                   dtype=str)
    neurons = {"id": np.array(cells, dtype=str), "name": np.array(cells, dtype=str),
               "class": cls, "subgroup": sub, "side": sides_from_names(cells)}
    pres, posts, ws, ks = [], [], [], []
    rules = {}
    ncell = len(cells)
    for n in names:
        s = parsed[n]
        _, kind, variant = sheet_info(n)
        ri = np.array([order[c] for c in s["rows"]], np.int64)
        cj = np.array([order[c] for c in s["cols"]], np.int64)
        a, b = np.nonzero(s["matrix"])
        p, q, w = ri[a], cj[b], s["matrix"][a, b]
        if kind == ELECTRICAL:
            rule = "sum" if variant == "asymmetric" else "mirrored" if variant == "symmetric" \
                else "auto"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, q, w, used = reduce_electrical(p, q, w, ncell, rule, src)
            if variant == "symmetric":
                mism = _asymmetry(s)
                if mism:
                    warnings.warn(f"{src}: sheet {n!r} is not exactly symmetric ({mism} cell "
                                  "pairs differ); each pair keeps its larger value",
                                  stacklevel=2)
            rules[n] = used
        pres.append(p), posts.append(q), ws.append(w)
        ks.append(np.full(len(p), CHEMICAL if kind != ELECTRICAL else ELECTRICAL, np.int8))
    edges = {"pre": np.concatenate(pres), "post": np.concatenate(posts),
             "weight": np.concatenate(ws), "kind": np.concatenate(ks)}
    a = {"release": "Cook et al. 2019, supplementary information 5", "version": "2019",
         "species": C_ELEGANS, "sex": sex if not sheets else (sexes.pop() if sexes else ""),
         "stage": "adult", "citation": CITATION, "sheets": names,
         "electrical_rule": rules,
         "weight_units": "EM serial sections of connectivity (number and size of synapses)"}
    if legend:
        a["legend"] = legend
    a.update(attrs or {})
    write_small(out, neurons, edges, a, [src], f"cook2019_xlsx/{VERSION}")


def _asymmetry(s) -> int:
    if s["rows"] != s["cols"] and set(s["rows"]) == set(s["cols"]):
        idx = {c: k for k, c in enumerate(s["cols"])}
        m = s["matrix"][:, [idx[r] for r in s["rows"]]]
    elif s["rows"] == s["cols"]:
        m = s["matrix"]
    else:
        return 0
    return int(np.count_nonzero(np.triu(m != m.T, 1)))


def _legend(path, sheets) -> str:
    for name in sheets:
        if "legend" in name.lower() or "title" in name.lower():
            for row in read_cells(path, name, max_rows=5):
                for v in row:
                    if isinstance(v, str) and len(v) > 40:
                        return v.strip()
    return ""
