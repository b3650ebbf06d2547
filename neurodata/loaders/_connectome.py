"""Pieces the connectome loaders share: kinds, sides, gap-junction reduction, writing."""
from __future__ import annotations

import contextlib
import re
import warnings
import zipfile
import zlib

import numpy as np

from neurodata.errors import CorruptFileError, FormatError
from neurodata.format.connectome import CHEMICAL, ELECTRICAL, ConnectomeWriter
from neurodata.format.store import provenance

#: Labels meaning a chemical synapse / an electrical synapse (gap junction),
#: compared lower-case with spaces, dashes and underscores removed.
#: Varshney et al. 2011 codes: S (send), Sp (send, polyadic), R / Rp
#: (receive: the same synapses seen from the postsynaptic side), EJ
#: (electrical junction), NMJ (neuromuscular junction, chemical).
CHEMICAL_LABELS = {"chemical", "chem", "c", "s", "sp", "send", "sendpoly", "synapse",
                   "synaptic", "nmj", "neuromuscular", "chemicalsynapse"}
ELECTRICAL_LABELS = {"electrical", "elec", "e", "ej", "gap", "gapjunction", "gj", "gapjn",
                     "electricaljunction", "electricalsynapse"}
#: Labels of rows that repeat synapses listed elsewhere (dropped, not counted twice).
RECEIVE_LABELS = {"r", "rp", "receive", "receivepoly"}

C_ELEGANS = "Caenorhabditis elegans"


def norm_label(s) -> str:
    return re.sub(r"[\s_\-]+", "", str(s)).lower()


def kind_code_of(label) -> int | None:
    """0 chemical, 1 electrical, -1 repeated (receive) row, None unknown."""
    n = norm_label(label)
    if n in CHEMICAL_LABELS:
        return CHEMICAL
    if n in ELECTRICAL_LABELS:
        return ELECTRICAL
    if n in RECEIVE_LABELS:
        return -1
    return None


KIND_HELP = "expected chemical/electrical, S/Sp/R/Rp/EJ/NMJ"


def kind_codes(labels: np.ndarray, path, column: str, row_offset: int = 2) -> np.ndarray:
    """Map kind labels to codes: 0 chemical, 1 electrical, -1 repeated (receive) rows.

    Unknown labels raise a :class:`FormatError` naming the first row
    (``row_offset`` + index: 2 = first data line under a header) and column.
    """
    labels = np.asarray(labels).astype(str)
    uniq, inv = np.unique(labels, return_inverse=True)
    lut = np.empty(len(uniq), np.int8)
    for i, u in enumerate(uniq):
        code = kind_code_of(u)
        if code is None:
            row = int(np.nonzero(inv == i)[0][0]) + row_offset
            raise FormatError(f"row {row}, column {column!r}: unknown synapse type {str(u)!r} "
                              f"({KIND_HELP})", path)
        lut[i] = code
    return lut[inv]


def sides_from_names(names) -> np.ndarray:
    """``L``/``R`` for names whose mirror partner (last letter L<->R) exists, else ``""``.

    C. elegans and many fly names mark bilateral pairs by a final L/R
    (``AVAL``/``AVAR``); a name is given a side only when its partner is in
    the same table, so ``RID`` or ``DB1`` stay unsided.
    """
    names = [str(n) for n in names]
    have = set(names)
    out = []
    for n in names:
        if len(n) > 1 and n[-1] in "LR" and (n[:-1] + ("R" if n[-1] == "L" else "L")) in have:
            out.append(n[-1])
        else:
            out.append("")
    return np.array(out, dtype=str)


def reduce_electrical(pre, post, weight, n: int, rule: str = "auto", path=None):
    """Reduce electrical rows to one row per unordered pair (``pre <= post``).

    Rules: ``"mirrored"`` (the source lists every pair in both directions:
    the pair's weight is the larger of the two directions' totals),
    ``"sum"`` (each junction is listed once, in either direction: weights
    add up), ``"auto"`` (mirrored if every pair appears both ways with equal
    weights, sum if none does; a mix is treated as mirrored with a warning
    saying how many pairs disagree). Returns ``(a, b, w, rule_used)``.
    """
    pre = np.asarray(pre, np.int64)
    post = np.asarray(post, np.int64)
    w = np.asarray(weight)
    a, b = np.minimum(pre, post), np.maximum(pre, post)
    fwd = pre <= post
    key = a * n + b
    uniq, inv = np.unique(key, return_inverse=True)
    acc = np.float64 if w.dtype.kind == "f" else np.int64
    wf = np.zeros(len(uniq), acc)
    wr = np.zeros(len(uniq), acc)
    np.add.at(wf, inv[fwd], w[fwd])
    np.add.at(wr, inv[~fwd], w[~fwd])
    hf = np.zeros(len(uniq), bool)
    hr = np.zeros(len(uniq), bool)
    hf[inv[fwd]] = True
    hr[inv[~fwd]] = True
    selfp = (uniq // n) == (uniq % n)
    both = hf & hr
    used = rule
    if rule == "auto":
        nonself = ~selfp
        if not nonself.any() or (both[nonself].all() and np.array_equal(wf[nonself], wr[nonself])):
            used = "mirrored"
        elif not both.any():
            used = "sum"
        else:
            used = "mirrored"
            one_way = int(np.count_nonzero(nonself & ~both))
            unequal = int(np.count_nonzero(nonself & both & (wf != wr)))
            warnings.warn(f"{path}: electrical synapses are listed in both directions for "
                          f"most pairs, but {one_way} pairs only one way and {unequal} pairs "
                          "with different weights; each pair keeps its larger direction",
                          stacklevel=3)
    if used == "mirrored":
        wout = np.maximum(wf, wr)
    elif used == "sum":
        wout = wf + wr
    else:
        raise ValueError(f"unknown electrical rule {rule!r} (auto, mirrored, sum)")
    return uniq // n, uniq % n, wout, used


def weight_dtype(w: np.ndarray) -> np.dtype:
    """int32 for whole synapse counts that fit, else the float type (or int64)."""
    w = np.asarray(w)
    if w.dtype.kind in "iu":
        if w.size == 0 or (w.min() >= -(2 ** 31) and w.max() < 2 ** 31):
            return np.dtype(np.int32)
        return np.dtype(np.int64)
    if w.dtype.kind == "f" and w.size and np.all(np.mod(w, 1) == 0) and np.abs(w).max() < 2 ** 31:
        return np.dtype(np.int32)
    return np.dtype(np.float64) if w.dtype.kind == "f" else np.dtype(np.float64)


def write_small(out, neurons: dict, edges: dict, attrs: dict, sources, loader: str,
                categories: dict | None = None) -> None:
    """Write a store whose edge table is in memory (C. elegans sized)."""
    extra = {k: v.dtype for k, v in edges.items()
             if k not in ("pre", "post", "weight", "kind") and k not in (categories or {})}
    w = ConnectomeWriter(out, neurons, edge_columns=extra, categories=categories,
                         weight_dtype=weight_dtype(edges["weight"]), attrs=attrs)
    w.append(**edges)
    w.close(provenance(sources, loader=loader))


def is_xlsx(path, head: bytes) -> bool:
    """A zip file holding an Office Open XML workbook."""
    if not head.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return "xl/workbook.xml" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def column_letter(j: int) -> str:
    """0-based column index -> spreadsheet letters (0 -> A, 26 -> AA)."""
    s = ""
    j += 1
    while j:
        j, r = divmod(j - 1, 26)
        s = chr(65 + r) + s
    return s


def _col_index(letters: str) -> int:
    v = 0
    for ch in letters:
        v = v * 26 + ord(ch) - 64
    return v - 1


def merged_ranges(path, sheet_name: str) -> list[tuple[int, int, int, int]]:
    """Merged cell ranges of a sheet as 0-based ``(row0, col0, row1, col1)``, inclusive.

    Read straight from the sheet XML, because openpyxl's fast read-only
    mode does not expose them and its full mode is ~30x slower.
    """
    with _zip_errors(path), zipfile.ZipFile(path) as z:
        wb = z.read("xl/workbook.xml").decode("utf-8", "replace")
        rels = z.read("xl/_rels/workbook.xml.rels").decode("utf-8", "replace")
        rid = None
        for m in re.finditer(r"<(?:\w+:)?sheet\b[^>]*>", wb):
            tag = m.group(0)
            name = re.search(r'\bname="([^"]*)"', tag)
            if name and _xml_unescape(name.group(1)) == sheet_name:
                r = re.search(r'\br:id="([^"]*)"|\bid="([^"]*)"', tag)
                rid = r.group(1) or r.group(2) if r else None
        if rid is None:
            return []
        target = None
        for m in re.finditer(r"<Relationship\b[^>]*>", rels):
            tag = m.group(0)
            if re.search(rf'\bId="{re.escape(rid)}"', tag):
                target = re.search(r'\bTarget="([^"]*)"', tag).group(1)
        if target is None:
            return []
        target = target.lstrip("/")
        if not target.startswith("xl/"):
            target = "xl/" + target
        xml = z.read(target).decode("utf-8", "replace")
    out = []
    for m in re.finditer(r'<mergeCell ref="([A-Z]+)(\d+):([A-Z]+)(\d+)"', xml):
        c0, r0, c1, r1 = m.groups()
        out.append((int(r0) - 1, _col_index(c0), int(r1) - 1, _col_index(c1)))
    return out


def _xml_unescape(s: str) -> str:
    return (s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'").replace("&amp;", "&"))


# --------------------------------------------------------------------------- fast xlsx cells

_XLSX_MAX_ROWS, _XLSX_MAX_COLS = 1 << 20, 1 << 14  # Excel's own sheet limits
_CELL = re.compile(rb"<c\b([^>]*?)(?:/>|>(.*?)</c>)", re.S)
_ATTR_R = re.compile(rb'\br="([A-Z]+)(\d+)"')
_ATTR_T = re.compile(rb'\bt="([^"]*)"')
_V = re.compile(rb"<v>(.*?)</v>", re.S)
_T = re.compile(rb"<t\b[^>]*>(.*?)</t>", re.S)
_SI = re.compile(rb"<si>(.*?)</si>", re.S)


def _sheet_target(z: zipfile.ZipFile, sheet_name: str | None, path) -> tuple[str, list[str]]:
    wb = z.read("xl/workbook.xml").decode("utf-8", "replace")
    rels = z.read("xl/_rels/workbook.xml.rels").decode("utf-8", "replace")
    sheets = []
    for m in re.finditer(r"<(?:\w+:)?sheet\b[^>]*>", wb):
        tag = m.group(0)
        name = _xml_unescape(re.search(r'\bname="([^"]*)"', tag).group(1))
        r = re.search(r'\br:id="([^"]*)"', tag) or re.search(r'\b\w+:id="([^"]*)"', tag)
        sheets.append((name, r.group(1) if r else None))
    names = [s[0] for s in sheets]
    if not sheets:
        raise FormatError("workbook lists no sheets", path)
    if sheet_name is None:
        rid = sheets[0][1]
    else:
        found = [rid for n, rid in sheets if n == sheet_name]
        if not found:
            raise FormatError(f"no sheet {sheet_name!r}; sheets: {names}", path)
        rid = found[0]
    for m in re.finditer(r"<Relationship\b[^>]*>", rels):
        tag = m.group(0)
        if re.search(rf'\bId="{re.escape(rid or "")}"', tag):
            target = re.search(r'\bTarget="([^"]*)"', tag).group(1).lstrip("/")
            return (target if target.startswith("xl/") else "xl/" + target), names
    raise FormatError(f"workbook relation {rid!r} of sheet {sheet_name!r} is missing", path)


@contextlib.contextmanager
def _zip_errors(path):
    """Damaged workbooks fail inside zipfile (bad CRC, bad deflate data, missing parts)."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, NotImplementedError,
            UnicodeDecodeError) as e:
        raise CorruptFileError(f"damaged xlsx workbook ({e.__class__.__name__}: {e})",
                               path) from None


def sheet_names(path) -> list[str]:
    """Sheet names of an xlsx workbook, in order."""
    with _zip_errors(path), zipfile.ZipFile(path) as z:
        return _sheet_target(z, None, path)[1]


def _shared_strings(z: zipfile.ZipFile) -> list[str]:
    try:
        xml = z.read("xl/sharedStrings.xml")
    except KeyError:
        return []
    return [_xml_unescape(b"".join(_T.findall(si)).decode("utf-8", "replace"))
            for si in _SI.findall(xml)]


def read_cells(path, sheet_name: str | None = None, max_rows: int | None = None) -> list[list]:
    """Cell values of one sheet as a dense list of rows (None where empty).

    Numbers come back as int (when whole) or float, strings as str,
    booleans as bool. Parses the sheet XML directly, ~10x faster than
    openpyxl for the mostly-empty matrices of adjacency workbooks.
    """
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise FormatError(f"not a readable xlsx workbook ({e})", path) from None
    with z:
        try:
            with _zip_errors(path):
                target, _ = _sheet_target(z, sheet_name, path)
                xml = z.read(target)
        except KeyError as e:
            raise FormatError(f"workbook part missing ({e})", path) from None
        with _zip_errors(path):
            shared = _shared_strings(z)
    start = xml.find(b"<sheetData")
    end = xml.rfind(b"</sheetData>")
    data = xml[start:end if end > 0 else len(xml)]
    cells: dict[tuple[int, int], object] = {}
    nrow = ncol = 0
    for m in _CELL.finditer(data):
        attrs, inner = m.group(1), m.group(2)
        r = _ATTR_R.search(attrs)
        if r is None:
            raise FormatError("cell without a reference in sheet XML", path)
        row = int(r.group(2)) - 1
        if max_rows is not None and row >= max_rows:
            break
        if not inner:
            continue
        col = _col_index(r.group(1).decode())
        t = _ATTR_T.search(attrs)
        t = t.group(1) if t else b"n"
        if t == b"inlineStr":
            val = _xml_unescape(b"".join(_T.findall(inner)).decode("utf-8", "replace"))
        else:
            v = _V.search(inner)
            if v is None:
                continue
            raw = v.group(1)
            if t == b"s":
                try:
                    val = shared[int(raw)]
                except (IndexError, ValueError):
                    raise FormatError(f"cell {r.group(1).decode()}{row + 1} points to shared "
                                      f"string {raw!r} that does not exist", path) from None
            elif t in (b"str", b"e"):
                val = _xml_unescape(raw.decode("utf-8", "replace"))
            elif t == b"b":
                val = raw.strip() == b"1"
            else:
                try:
                    f = float(raw)
                except ValueError:
                    raise FormatError(f"cell {r.group(1).decode()}{row + 1}: bad number "
                                      f"{raw!r}", path) from None
                val = int(f) if f.is_integer() and abs(f) < 2 ** 53 else f
        cells[(row, col)] = val
        nrow = max(nrow, row + 1)
        ncol = max(ncol, col + 1)
    if (nrow > _XLSX_MAX_ROWS or ncol > _XLSX_MAX_COLS
            or nrow * ncol > max(1 << 24, 64 * len(cells))):
        # a damaged cell reference must not make us allocate a huge dense sheet
        raise CorruptFileError(f"sheet claims {nrow} rows x {ncol} columns but holds "
                               f"{len(cells)} cells", path)
    rows = [[None] * ncol for _ in range(nrow)]
    for (i, j), v in cells.items():
        rows[i][j] = v
    return rows
