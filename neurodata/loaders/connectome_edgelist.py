"""Edge lists: CSV/TSV (plain or gzip), xlsx tables, parquet, feather/Arrow IPC.

One row per connection (or per synapse), with a presynaptic and a
postsynaptic column and optionally a weight, a synapse type, a region and
neurotransmitter predictions. Columns are found by name (case, spaces and
underscores ignored) or mapped explicitly with ``columns=``:

==================  =====================================================
store column        recognised source columns
==================  =====================================================
``pre``             pre, source, from, Neuron 1, pre_root_id (FlyWire),
                    pre_pt_root_id (FlyWire/CAVE), bodyId_pre (neuPrint)
``post``            post, target, to, Neuron 2, post_root_id,
                    post_pt_root_id, bodyId_post
``weight``          weight, syn_count, synapses, count, Nbr, ...
                    (absent: every row is one synapse, weight 1)
``kind``            type, kind, synapse_type (chemical/electrical,
                    Varshney codes S/Sp/R/Rp/EJ/NMJ; absent: chemical)
``region``          neuropil (FlyWire), roi (neuPrint), region
``edge_neuro-``     nt_type (FlyWire edge-level prediction; named so as
``transmitter``     not to clash with the neuron table's column)
``nt_<name>``       gaba_avg, ach_avg, glut_avg, oct_avg, ser_avg, da_avg
``confidence``      confidence, score
==================  =====================================================

Known releases by their documented columns: FlyWire connection tables
(``pre_root_id, post_root_id, neuropil, syn_count[, nt_type]`` in
``connections*.csv.gz``, or ``pre_pt_root_id, post_pt_root_id, neuropil,
syn_count, gaba_avg ... da_avg`` in ``proofread_connections_783.feather``);
neuPrint CSV exports (``traced-total-connections.csv``: ``bodyId_pre,
bodyId_post, weight``; ``traced-roi-connections.csv`` adds ``roi``).

A neuron table (FlyWire ``neurons.csv.gz``/``classification.csv.gz``,
neuPrint ``traced-neurons.csv``, or any CSV with an id column) is given
with ``neurons=``; then every edge endpoint must be in it (an unknown one is
an error naming the row and column) and neurons without edges are kept.

C. elegans tables in this layout: White et al. 1986 and Witvliet et al.
2021 (``pre, post, type, synapses``; tab-separated ``.csv`` or ``.xlsx``;
release, stage and citation are set from ``white_1986`` / ``witvliet_2020_N``
in the file name), and WormWiring's headerless ``pre<TAB>post<TAB>count``
text.

Big tables stream in row batches (``batch_rows``) through pyarrow, in two
passes (neuron ids, then edges), so memory stays bounded by a batch plus the
neuron index. Text files are sniffed for their delimiter (``,`` tab ``;``
``|``), so tab-separated files named ``.csv`` work. Chemical rows keep the
file's order; electrical rows are reduced to one row per pair (see
:func:`neurodata.loaders._connectome.reduce_electrical`) and stored after
them.
"""
from __future__ import annotations

import csv
import functools
import re
import zlib
from pathlib import Path

import numpy as np

from neurodata.errors import FormatError
from neurodata.format.connectome import CHEMICAL, ELECTRICAL, ConnectomeWriter
from neurodata.format.store import provenance
from neurodata.loaders._connectome import (C_ELEGANS, KIND_HELP, is_xlsx, kind_code_of, norm_label,
                                           read_cells, reduce_electrical)

VERSION = "edge list 1 (CSV/TSV/parquet/feather)"

EDGE_ALIASES = {
    "pre": ("pre", "presynaptic", "preid", "presynapticid", "preneuron", "presynapticneuron",
            "source", "src", "sourceid", "from", "neuron1", "prerootid", "preptrootid",
            "bodyidpre", "prebodyid", "preskid"),
    "post": ("post", "postsynaptic", "postid", "postsynapticid", "postneuron",
             "postsynapticneuron", "target", "tgt", "dst", "targetid", "to", "neuron2",
             "postrootid", "postptrootid", "bodyidpost", "postbodyid", "postskid"),
    "weight": ("weight", "syncount", "synapsecount", "synapses", "nsyn", "nsynapses",
               "numsynapses", "count", "nbr", "w", "strength", "value"),
    "kind": ("kind", "type", "synapsetype", "syntype", "connectiontype", "edgetype"),
    "region": ("neuropil", "roi", "region", "brainregion"),
    "edge_neurotransmitter": ("nttype", "predictednt", "neurotransmitter", "transmitter"),
    "confidence": ("confidence", "score"),
}
NT_PROBABILITIES = {"gabaavg": "nt_gaba", "achavg": "nt_ach", "glutavg": "nt_glut",
                    "octavg": "nt_oct", "seravg": "nt_ser", "daavg": "nt_da"}
NEURON_ALIASES = {
    "id": ("id", "rootid", "ptrootid", "bodyid", "neuronid", "cellid", "skid", "neuron", "name"),
    "name": ("name", "instance", "neuronname", "label"),
    "cell_type": ("celltype", "type", "primarytype", "hemibraintype"),
    "class": ("class", "superclass", "cellclass"),
    "side": ("side", "somaside", "hemisphere"),
    "neurotransmitter": ("neurotransmitter", "nttype", "consensusnt", "predictednt", "nt"),
    "x": ("x", "somax", "posx"), "y": ("y", "somay", "posy"), "z": ("z", "somaz", "posz"),
}
TEXT_EXTENSIONS = (".csv", ".tsv", ".txt", ".tab", ".edges", ".edgelist")
DELIMITERS = (",", "\t", ";", "|")
BATCH_ROWS = 1 << 20


# --------------------------------------------------------------------------- sniffing

def _text_head(path: Path, head: bytes) -> str | None:
    if head[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(31).decompress(path.read_bytes()[:65536], 16384)
        except zlib.error:
            return None
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8-sig")
    except UnicodeDecodeError:
        return head.decode("latin-1")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def match_columns(names, aliases=EDGE_ALIASES, mapping=None) -> dict[str, str]:
    """Source column name per store column, from ``mapping`` then aliases."""
    norm = {}
    for n in names:
        norm.setdefault(norm_label(n), n)
    out = {}
    for key, given in (mapping or {}).items():
        if given is not None:
            out[key] = given
    for key, alias in aliases.items():
        if key in out or (mapping and key in mapping and mapping[key] is None):
            continue
        for a in alias:
            if a in norm and norm[a] not in out.values():
                out[key] = norm[a]
                break
    return out


HEADERLESS = ("pre", "post", "weight", "kind")


def sniff_delimiter(text: str, mapping: dict | None = None):
    """``(delimiter, column names, has_header)`` of a text edge list, or None.

    With a header: the delimiter under which it names pre and post columns
    and the sample rows have as many fields. Without one (e.g. WormWiring
    ``N2U.txt``: ``AVAL<TAB>AVAR<TAB>3``): every sample row has 3 (or 4)
    fields, two names, then a whole number (then a synapse type); the
    columns are then ``pre, post, weight[, kind]``.
    """
    lines = text.splitlines()
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # last line may be cut by the head limit
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        return None
    for d in DELIMITERS:
        rows = list(csv.reader(lines[:20], delimiter=d))
        header = [h.strip() for h in rows[0]]
        if len(header) < 2:
            continue
        if any(len(r) != len(header) for r in rows[1:] if r):
            continue
        m = match_columns(header, EDGE_ALIASES, mapping)
        if m.get("pre") in header and m.get("post") in header:
            return d, header, True
        if not mapping and len(lines) >= 3 and len(header) in (3, 4) and \
                all(_headerless_row([v.strip() for v in r]) for r in rows):
            return d, list(HEADERLESS[:len(header)]), False
    return None


def _headerless_row(r) -> bool:
    from neurodata.loaders._connectome import kind_code_of

    def number(v):
        try:
            float(v)
            return True
        except ValueError:
            return False

    return (bool(r[0]) and bool(r[1]) and not number(r[0]) and not number(r[1])
            and r[2].isdigit() and (len(r) == 3 or kind_code_of(r[3]) is not None))


def _schema_names(path: Path, head: bytes) -> list[str] | None:
    import pyarrow as pa

    if head[:4] == b"PAR1":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if head[:6] == b"ARROW1":
        with pa.memory_map(str(path)) as src:
            return list(pa.ipc.open_file(src).schema.names)
    if head[:4] == b"FEA1":
        import pyarrow.feather as feather

        return list(feather.read_table(path, memory_map=True).schema.names)
    return None


def sniff(path: Path, head: bytes) -> bool:
    """Parquet/feather/xlsx with pre and post columns, or a text table with a
    known extension whose header names pre and post columns (or that has the
    headerless ``name, name, count`` layout)."""
    if path.is_dir():
        return False
    if head[:4] in (b"PAR1", b"FEA1") or head[:6] == b"ARROW1":
        names = _schema_names(path, head)
        m = match_columns(names or [])
        return "pre" in m and "post" in m
    if is_xlsx(path, head):
        rows = read_cells(path, None, max_rows=1)
        m = match_columns([str(v).strip() for v in rows[0] if v is not None] if rows else [])
        return "pre" in m and "post" in m
    if _base_suffix(path) not in TEXT_EXTENSIONS:
        return False
    text = _text_head(path, head)
    return text is not None and sniff_delimiter(text) is not None


# --------------------------------------------------------------------------- reading

class _Source:
    """Batches of selected columns from a text, parquet or Arrow file."""

    def __init__(self, path: Path, delimiter: str | None = None, batch_rows: int = BATCH_ROWS,
                 mapping: dict | None = None):
        self.path = path
        self.batch_rows = int(batch_rows)
        with open(path, "rb") as f:
            head = f.read(4096)
        if not head:
            raise FormatError("empty file", path)
        if head[:4] == b"PAR1":
            self.kind = "parquet"
        elif head[:6] == b"ARROW1":
            self.kind = "arrow"
        elif head[:4] == b"FEA1":
            self.kind = "feather1"
        elif is_xlsx(path, head):
            self.kind = "xlsx"
        else:
            self.kind = "text"
        self.has_header = True
        if self.kind == "text":
            text = _text_head(path, head)
            if text is None:
                raise FormatError("binary content: not a text edge list", path)
            first = text.splitlines()[0] if text.splitlines() else ""
            found = sniff_delimiter(text, mapping)
            if delimiter is None:
                if found is None:
                    raise FormatError("cannot find the delimiter: no header names a pre and a "
                                      "post column (map them with columns=)", path)
                delimiter = found[0]
            self.delimiter = delimiter
            if found is not None and not found[2]:
                self.names, self.has_header = found[1], False
            else:
                self.names = next(csv.reader([first], delimiter=delimiter))
        elif self.kind == "xlsx":
            rows = read_cells(path)
            if not rows:
                raise FormatError("empty workbook", path)
            self.names = ["" if v is None else str(v) for v in rows[0]]
            while self.names and not self.names[-1].strip():
                self.names.pop()
            self._rows = rows[1:]
        else:
            self.names = _schema_names(path, head)
        self._check_duplicates()

    def _check_duplicates(self) -> None:
        seen = {}
        for j, n in enumerate(self.names):
            k = n.strip()
            if not k:
                raise FormatError(f"column {j + 1} has an empty header", self.path)
            if k in seen:
                raise FormatError(f"duplicate header {k!r} in columns {seen[k] + 1} and {j + 1}",
                                  self.path)
            seen[k] = j

    @property
    def row_offset(self) -> int:
        """File line (text) or sheet row (xlsx) of data row 0."""
        return 2 if self.has_header and self.kind in ("text", "xlsx") else 1

    def where(self, i: int, column: str) -> str:
        """``row N (line M), column 'x'`` for data row index ``i`` (0-based)."""
        if self.kind == "text":
            return f"row {i + 1} (line {i + self.row_offset}), column {column!r}"
        if self.kind == "xlsx":
            return f"row {i + 1} (sheet row {i + self.row_offset}), column {column!r}"
        return f"row {i + 1}, column {column!r}"

    def batches(self, columns: list[str]):
        """Yield ``(first_row_index, {name: pyarrow.Array})`` batches."""
        cols = list(dict.fromkeys(columns))
        start = 0
        for rb in self._record_batches(cols):
            for s in range(0, rb.num_rows, self.batch_rows):
                part = rb.slice(s, self.batch_rows)
                yield start, {c: part.column(part.schema.get_field_index(c)) for c in cols}
                start += part.num_rows

    def _xlsx_table(self, cols):
        import pyarrow as pa

        idx = {n.strip(): j for j, n in enumerate(self.names)}
        rows = [r for r in self._rows if any(v is not None and str(v).strip() for v in r)]
        data = {}
        for c in cols:
            j = idx[c.strip()]
            data[c] = _xlsx_column([r[j] if j < len(r) else None for r in rows], c)
        return pa.table(data)

    def _record_batches(self, cols):
        import pyarrow as pa

        if self.kind == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(self.path)
            yield from pf.iter_batches(batch_size=self.batch_rows, columns=cols)
        elif self.kind == "arrow":
            with pa.memory_map(str(self.path)) as src:
                reader = pa.ipc.open_file(src)
                for i in range(reader.num_record_batches):
                    rb = reader.get_batch(i)
                    yield rb.select(cols)
        elif self.kind == "xlsx":
            yield from self._xlsx_table(cols).to_batches(max_chunksize=self.batch_rows)
        elif self.kind == "feather1":
            import pyarrow.feather as feather

            t = feather.read_table(self.path, columns=cols, memory_map=True)
            yield from t.to_batches(max_chunksize=self.batch_rows)
        else:
            import pyarrow.csv as pcsv

            opts = pcsv.ReadOptions(block_size=1 << 24, skip_rows=1 if self.has_header else 0,
                                    column_names=[n.strip() for n in self.names])
            parse = pcsv.ParseOptions(delimiter=self.delimiter)
            conv = pcsv.ConvertOptions(include_columns=[c.strip() for c in cols],
                                       strings_can_be_null=False)
            try:
                reader = pcsv.open_csv(str(self.path), read_options=opts, parse_options=parse,
                                       convert_options=conv)
                for rb in reader:
                    yield rb
            except pa.ArrowInvalid as e:
                raise FormatError(f"unreadable row ({e})", self.path) from None


def _xlsx_column(values, name):
    """A spreadsheet column as an arrow array: numeric when every cell is a number."""
    import pyarrow as pa

    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return pa.array(values)
    return pa.array(["" if v is None else str(v) for v in values], pa.string())


def _to_numpy_ids(arr, src: _Source, column: str, start: int):
    """An id column as int64 (integer ids) or trimmed str numpy array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        i = int(np.nonzero(np.asarray(arr.is_null()))[0][0])
        raise FormatError(f"{src.where(start + i, column)}: empty neuron id", src.path)
    if pa.types.is_integer(arr.type):
        return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if pa.types.is_floating(arr.type):
        v = arr.to_numpy(zero_copy_only=False)
        bad = v % 1 != 0
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            raise FormatError(f"{src.where(start + i, column)}: neuron id {_show(v[i])} is not an "
                              "integer", src.path)
        return v.astype(np.int64)
    try:
        s = pc.utf8_trim_whitespace(arr.cast(pa.string()))
    except pa.ArrowInvalid as e:  # e.g. bytes that are not UTF-8
        raise FormatError(f"column {column!r}: unreadable neuron ids ({e})", src.path) from None
    return np.asarray(s.to_numpy(zero_copy_only=False), dtype=object)


def _to_numeric(arr, src: _Source, column: str, start: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        if arr.null_count:
            i = int(np.nonzero(np.asarray(arr.is_null()))[0][0])
            raise FormatError(f"{src.where(start + i, column)}: empty value", src.path)
        v = arr.to_numpy(zero_copy_only=False)
    elif pa.types.is_boolean(arr.type):
        v = arr.to_numpy(zero_copy_only=False).astype(np.int32)
    else:
        s = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        try:
            v = pc.cast(s, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            import pandas as pd

            raw = s.to_numpy(zero_copy_only=False)
            num = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy()
            i = int(np.nonzero(np.isnan(num))[0][0])
            raise FormatError(f"{src.where(start + i, column)}: non-numeric value {_show(raw[i])}",
                              src.path) from None
        if np.all(v % 1 == 0):
            v = v.astype(np.int64)
    if v.dtype.kind == "f" and not np.isfinite(v).all():
        i = int(np.nonzero(~np.isfinite(v))[0][0])
        raise FormatError(f"{src.where(start + i, column)}: non-finite value {_show(v[i])}",
                          src.path)
    return v


def _labels_arrow(arr):
    """Trimmed string labels as a pyarrow array (nulls -> "")."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.utf8_trim_whitespace(arr.cast(pa.string()).fill_null(""))


def read_neuron_table(paths, columns: dict | None = None) -> dict[str, np.ndarray]:
    """Neuron table(s) merged on their id column into numpy columns.

    Each file is CSV/TSV (gzip ok, delimiter sniffed), parquet or feather;
    columns are recognised by :data:`NEURON_ALIASES` or mapped explicitly.
    Further columns are kept under their own names.
    """
    import pandas as pd

    if isinstance(paths, (str, Path)):
        paths = [paths]
    merged = None
    for p in paths:
        p = Path(p)
        df = _read_frame(p)
        m = match_columns(list(df.columns), NEURON_ALIASES, columns)
        if "id" not in m:
            raise FormatError(f"no neuron id column among {list(df.columns)}", p)
        if m.get("name") == m["id"]:
            m.pop("name")
        ren = {v: k for k, v in m.items()}
        df = df.rename(columns=ren)
        if df["id"].duplicated().any():
            i = int(np.nonzero(df["id"].duplicated().to_numpy())[0][0])
            raise FormatError(f"row {i + 1}, column {m['id']!r}: duplicate neuron id "
                              f"{df['id'].iloc[i]!r}", p)
        if merged is None:
            merged = df
        else:
            extra = [c for c in df.columns if c not in merged.columns or c == "id"]
            merged = merged.merge(df[extra], on="id", how="outer")
    out = {}
    ids = merged["id"]
    if pd.api.types.is_integer_dtype(ids) or pd.api.types.is_float_dtype(ids):
        out["id"] = ids.to_numpy().astype(np.int64)
    else:
        out["id"] = ids.astype(str).str.strip().to_numpy().astype(str)
    for c in merged.columns:
        if c == "id":
            continue
        col = merged[c]
        key = str(c)
        if pd.api.types.is_numeric_dtype(col) and key not in ("name", "cell_type", "class",
                                                              "side", "neurotransmitter"):
            out[key] = col.to_numpy()
        else:
            out[key] = col.astype(object).where(col.notna(), "").astype(str).to_numpy()
    return out


def _read_frame(p: Path):
    import pandas as pd

    with open(p, "rb") as f:
        head = f.read(4096)
    if head[:4] == b"PAR1":
        return pd.read_parquet(p)
    if head[:6] == b"ARROW1" or head[:4] == b"FEA1":
        return pd.read_feather(p)
    text = _text_head(p, head)
    if text is None:
        raise FormatError("not a text, parquet or feather neuron table", p)
    first = text.splitlines()[0] if text.strip() else ""
    delim = max(DELIMITERS, key=first.count)
    header = [h.strip() for h in next(csv.reader([first], delimiter=delim))]
    dup = [h for h in header if header.count(h) > 1]
    if dup:
        raise FormatError(f"duplicate header {dup[0]!r} in columns "
                          f"{[j + 1 for j, h in enumerate(header) if h == dup[0]]}", p)
    df = pd.read_csv(p, sep=delim, skipinitialspace=True)
    df.columns = [str(c).strip() for c in df.columns]
    return df


#: Developmental stage of the eight Witvliet et al. (2021) datasets, by number.
WITVLIET_STAGES = {1: "L1", 2: "L1", 3: "L1", 4: "L1", 5: "L2", 6: "L3", 7: "adult",
                   8: "adult"}


def _release_attrs(m: dict, path: Path | None = None) -> dict:
    name = path.name.lower() if path is not None else ""
    wit = re.search(r"witvliet_2020_(\d)", name)
    if wit and int(wit.group(1)) in WITVLIET_STAGES:
        k = int(wit.group(1))
        return {"release": f"Witvliet et al. 2021, dataset {k}", "species": C_ELEGANS,
                "stage": WITVLIET_STAGES[k], "sex": "hermaphrodite",
                "citation": "Witvliet D, et al. (2021) Connectomes across development reveal "
                            "principles of brain maturation. Nature 596:257-261. "
                            "doi:10.1038/s41586-021-03778-8"}
    if "white_1986" in name:
        return {"release": "White et al. 1986", "species": C_ELEGANS, "stage": "adult",
                "sex": "hermaphrodite",
                "citation": "White JG, Southgate E, Thomson JN, Brenner S (1986) The structure "
                            "of the nervous system of the nematode Caenorhabditis elegans. "
                            "Phil Trans R Soc Lond B 314:1-340. doi:10.1098/rstb.1986.0056"}
    pre = norm_label(m.get("pre", ""))
    if pre in ("prerootid", "preptrootid"):
        return {"release": "FlyWire", "species": "Drosophila melanogaster"}
    if pre == "bodyidpre":
        return {"release": "neuPrint export", "species": "Drosophila melanogaster"}
    return {}


def _arrow_errors(fn):
    """Damaged text (e.g. bytes that are not UTF-8) fails inside pyarrow casts anywhere
    in a conversion; report it as a FormatError naming the file."""
    @functools.wraps(fn)
    def wrapper(src, *args, **kwargs):
        import pyarrow as pa

        try:
            return fn(src, *args, **kwargs)
        except (pa.ArrowInvalid, UnicodeDecodeError) as e:
            raise FormatError(f"unreadable table ({e.__class__.__name__}: {e})", src) from None
    return wrapper


@_arrow_errors
def convert(src, out, attrs=None, *, columns: dict | None = None, neurons=None,
            neuron_columns: dict | None = None, delimiter: str | None = None,
            electrical: str = "auto", kind: str | None = None, unknown: str = "error",
            batch_rows: int = BATCH_ROWS, **kw) -> None:
    """Convert an edge list into a ``connectome/1`` store, streaming in row batches.

    Parameters
    ----------
    columns : dict, optional
        Store column -> source column (``{"pre": "from_id", "weight": None}``;
        None ignores a column the aliases would pick).
    neurons : path or list of paths, optional
        Neuron table(s) merged on id; defines the neuron order.
    neuron_columns : dict, optional
        Store neuron column -> source column for the neuron tables.
    delimiter : str, optional
        Text delimiter (default: sniffed).
    electrical : {"auto", "mirrored", "sum"}
        How electrical rows are reduced to one per pair.
    kind : {"chemical", "electrical"}, optional
        Kind of every row when the file has no type column.
    unknown : {"error", "add"}
        With ``neurons``: an edge endpoint missing from the table is an
        error (naming row and column), or is appended to the neuron table.
    batch_rows : int
        Rows per batch (memory bound).
    """
    import pyarrow as pa

    src = Path(src)
    source = _Source(src, delimiter, batch_rows, columns)
    m = match_columns([n.strip() for n in source.names], EDGE_ALIASES, columns)
    if "pre" not in m or "post" not in m:
        raise FormatError(f"no pre/post columns among {source.names} (map them with columns=)",
                          src)
    if m["pre"] == m["post"]:
        raise FormatError(f"pre and post both map to column {m['pre']!r}", src)
    stripped = {n.strip(): n for n in source.names}
    for k, v in m.items():
        if v not in stripped:
            raise FormatError(f"column {v!r} (for {k}) is not in the header {source.names}", src)
    nt_cols = {stripped_name: NT_PROBABILITIES[norm_label(stripped_name)]
               for stripped_name in stripped if norm_label(stripped_name) in NT_PROBABILITIES}
    if kind is not None and kind not in ("chemical", "electrical"):
        raise ValueError(f"kind must be 'chemical' or 'electrical', not {kind!r}")
    cat_cols = [k for k in ("region", "edge_neurotransmitter") if k in m]

    # ---- pass 1: neuron ids (unless a table gives them) and category labels
    table = read_neuron_table(neurons, neuron_columns) if neurons is not None else None
    id_kind = None
    int_ids: list[np.ndarray] = []
    str_ids: dict[str, None] = {}
    cats: dict[str, dict[str, None]] = {k: {} for k in cat_cols}
    need_ids = table is None or unknown == "add"
    scan = ([m["pre"], m["post"]] if need_ids else []) + [m[k] for k in cat_cols]
    if scan:
        for start, cols in source.batches(scan):
            if need_ids:
                for end in ("pre", "post"):
                    v = _to_numpy_ids(cols[m[end]], source, m[end], start)
                    id_kind = id_kind or ("int" if v.dtype.kind == "i" else "str")
                    if (v.dtype.kind == "i") != (id_kind == "int"):
                        raise FormatError(f"column {m[end]!r}: neuron ids mix numbers and names",
                                          src)
                    if id_kind == "int":  # arrow's hash unique: ~10x numpy's here
                        int_ids.append(pa.array(v).unique().to_numpy())
                        if len(int_ids) > 16:
                            int_ids = [sorted_unique(np.concatenate(int_ids))]
                    else:
                        str_ids.update(dict.fromkeys(pa.array(v).unique().to_pylist()))
            for k in cat_cols:
                cats[k].update(dict.fromkeys(_labels_arrow(cols[m[k]]).unique().to_pylist()))
    if table is not None:
        nt = dict(table)
        ids = nt["id"]
        if unknown == "add":
            found = (sorted_unique(np.concatenate(int_ids)) if id_kind == "int"
                     else np.array(list(str_ids), dtype=str))
            if id_kind == "int" and ids.dtype.kind != "i":
                found = found.astype(str)
            extra = found[~np.isin(found, ids)]
            if len(extra):
                nt = {k: np.concatenate([v, _blank(v, len(extra)) if k != "id" else
                                         extra.astype(ids.dtype)]) for k, v in nt.items()}
        neuron_table = nt
    else:
        if id_kind is None:
            raise FormatError("the edge list has no rows", src)
        ids = (sorted_unique(np.concatenate(int_ids)) if id_kind == "int"
               else np.array(list(str_ids), dtype=str))
        neuron_table = {"id": ids}
        if id_kind == "str":
            neuron_table["name"] = ids
    ids_arr = pa.array(neuron_table["id"])
    categories = {k: sorted(v) for k, v in cats.items()}
    edge_names = {"pre", "post", "weight", "kind", "confidence", *cat_cols, *nt_cols.values()}
    neuron_table = {(f"neuron_{k}" if k in edge_names else k): v for k, v in neuron_table.items()}

    # ---- pass 2: edges
    weight_col = m.get("weight")
    probe = {}
    if weight_col is not None:
        for _, cols in source.batches([weight_col]):
            probe = cols
            break
    wtype = _weight_dtype(probe.get(weight_col) if weight_col else None)
    extra_cols = {c: np.float32 for c in nt_cols.values()}
    if "confidence" in m:
        extra_cols["confidence"] = np.float32
    a = {"release": src.name, "species": "", "source_columns": m}
    a.update(_release_attrs(m, src))
    a.update(attrs or {})
    writer = ConnectomeWriter(out, neuron_table, edge_columns=extra_cols, categories=categories,
                              weight_dtype=wtype, attrs=a)
    cat_arrays = {k: pa.array(v, pa.string()) for k, v in categories.items()}
    read = [m["pre"], m["post"]] + [m[k] for k in ("weight", "kind", "confidence") if k in m] \
        + [m[k] for k in cat_cols] + list(nt_cols)
    el_p, el_q, el_w = [], [], []
    dropped_receive = 0
    for start, cols in source.batches(read):
        idx = {}
        for end in ("pre", "post"):
            v = _to_numpy_ids(cols[m[end]], source, m[end], start)
            vi = pa.array(v if ids_arr.type != pa.string() else v.astype(str))
            if pa.types.is_integer(ids_arr.type) and not pa.types.is_integer(vi.type):
                raise FormatError(f"{source.where(start, m[end])}: neuron id {_show(v[0])} is not "
                                  "an integer like the neuron table's ids", src)
            if pa.types.is_string(ids_arr.type) and not pa.types.is_string(vi.type):
                vi = vi.cast(pa.string())
            pos = _index_in(vi, ids_arr)
            if pos.null_count:
                i = int(np.nonzero(np.asarray(pos.is_null()))[0][0])
                raise FormatError(f"{source.where(start + i, m[end])}: neuron {_show(v[i])} is "
                                  "not in the neuron table", src)
            idx[end] = pos.to_numpy(zero_copy_only=False).astype(np.int64)
        n = len(idx["pre"])
        w = (_to_numeric(cols[weight_col], source, weight_col, start) if weight_col
             else np.ones(n, np.int32))
        if "kind" in m:
            kc = _kind_codes_arrow(cols[m["kind"]], source, m["kind"], start)
        else:
            kc = np.full(n, ELECTRICAL if kind == "electrical" else CHEMICAL, np.int8)
        extra = {}
        for k in cat_cols:
            extra[k] = _index_in(_labels_arrow(cols[m[k]]), cat_arrays[k]).to_numpy(
                zero_copy_only=False)
        for c, key in nt_cols.items():
            extra[key] = _to_numeric(cols[c], source, c, start).astype(np.float32)
        if "confidence" in m:
            extra["confidence"] = _to_numeric(cols[m["confidence"]], source, m["confidence"],
                                              start).astype(np.float32)
        dropped_receive += int(np.count_nonzero(kc < 0))
        chem = kc == CHEMICAL
        if chem.all():
            writer.append(idx["pre"], idx["post"], w, CHEMICAL, **extra)
        else:
            writer.append(idx["pre"][chem], idx["post"][chem], w[chem], CHEMICAL,
                          **{k: v[chem] for k, v in extra.items()})
            el = kc == ELECTRICAL
            el_p.append(idx["pre"][el]), el_q.append(idx["post"][el]), el_w.append(w[el])
            if extra and el.any():
                _warn_dropped(src, list(extra))
    if el_p and sum(len(x) for x in el_p):
        p, q, w, rule = reduce_electrical(np.concatenate(el_p), np.concatenate(el_q),
                                          np.concatenate(el_w), len(ids_arr), electrical, src)
        # per-row columns do not survive the reduction to pairs: categories get the
        # "unknown" code (one past the labels), numbers NaN
        blank = {k: (np.full(len(p), len(categories[k]), writer.dtypes[k]) if k in categories
                     else np.full(len(p), np.nan, writer.dtypes[k]))
                 for k in writer.dtypes if k not in ("pre", "post", "weight", "kind")}
        writer.append(p, q, w, ELECTRICAL, **blank)
        writer.root.attrs["electrical_rule"] = rule
    if dropped_receive:
        writer.root.attrs["dropped_receive_rows"] = dropped_receive
    loader = f"edgelist/{VERSION}"
    srcs = [src] + ([Path(p) for p in ([neurons] if isinstance(neurons, (str, Path))
                                       else neurons)] if neurons is not None else [])
    writer.close(provenance(srcs, loader=loader))


def _show(v) -> str:
    """repr of a value without numpy's type wrapper (``99``, not ``np.int64(99)``)."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def sorted_unique(v: np.ndarray) -> np.ndarray:
    """Sorted unique values by sort + diff (numpy's hash unique is slow on int64 ids)."""
    v = np.sort(v)
    return v[np.concatenate([[True], v[1:] != v[:-1]])] if len(v) else v


def _blank(v: np.ndarray, n: int) -> np.ndarray:
    if v.dtype.kind in "US":
        return np.full(n, "", dtype=v.dtype if v.dtype.kind == "U" else str)
    if v.dtype.kind == "f":
        return np.full(n, np.nan, v.dtype)
    return np.zeros(n, v.dtype)


def _index_in(values, value_set):
    import pyarrow.compute as pc

    return pc.index_in(values, value_set=value_set)


def _kind_codes_arrow(arr, src: _Source, column: str, start: int) -> np.ndarray:
    """Kind codes through a dictionary encoding: labels are checked once each."""
    enc = _labels_arrow(arr).dictionary_encode()
    labels = np.asarray(enc.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    idx = enc.indices.to_numpy(zero_copy_only=False)
    # first row of every label, so an unknown label is reported at its first row
    first = np.full(len(labels), len(idx), np.int64)
    np.minimum.at(first, idx, np.arange(len(idx)))
    lut = np.empty(len(labels), np.int8)
    for j, lab in enumerate(labels):
        code = kind_code_of(lab)
        if code is None:
            raise FormatError(f"{src.where(start + int(first[j]), column)}: unknown synapse type "
                              f"{str(lab)!r} ({KIND_HELP})", src.path)
        lut[j] = code
    return lut[idx]


def _weight_dtype(arr):
    import pyarrow as pa

    if arr is None:
        return np.int32
    t = arr.type
    if pa.types.is_integer(t):
        return np.int32 if t.bit_width <= 32 and pa.types.is_signed_integer(t) else np.int64
    if pa.types.is_float32(t):
        return np.float32
    if pa.types.is_floating(t):
        return np.float64
    return np.float64


def _warn_dropped(src, names):
    import warnings

    warnings.warn(f"{src}: per-edge columns {names} are not kept for electrical rows "
                  "(reduced to one row per pair)", stacklevel=3)
