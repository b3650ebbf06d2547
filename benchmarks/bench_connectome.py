"""Connectome conversion and loading: neurodata vs what a user would otherwise write.

The alternative is pandas (``read_excel`` with openpyxl for the C. elegans
workbooks, ``read_feather`` for a FlyWire-like table) plus scipy to build the
sparse adjacency. Prints medians of several repeats and the ratio
(alternative time / neurodata time; > 1 means neurodata is faster).

    python benchmarks/bench_connectome.py [--edges 2000000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "connectome"
COOK = DATA / "cook2019_SI5_connectome_adjacency_matrices.xlsx"
VARSHNEY = DATA / "NeuronConnectFormatted.xlsx"

GEN = """
import sys, numpy as np, pyarrow as pa
n, out = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(7)
ids = np.sort(rng.choice(10**9, 140_000, replace=False)) + 720575940600000000
regions = np.array(["AL_L", "AL_R", "MB_CA_L", "MB_CA_R", "ME_L", "ME_R", "LO_L", "LO_R"])
schema = pa.schema([("pre_root_id", pa.int64()), ("post_root_id", pa.int64()),
                    ("neuropil", pa.string()), ("syn_count", pa.int32())])
with pa.OSFile(out, "wb") as sink, pa.ipc.new_file(sink, schema) as w:
    for s in range(0, n, 1 << 20):
        m = min(1 << 20, n - s)
        w.write_batch(pa.record_batch([pa.array(ids[rng.integers(0, len(ids), m)]),
                                       pa.array(ids[rng.integers(0, len(ids), m)]),
                                       pa.array(regions[rng.integers(0, 8, m)]),
                                       pa.array(rng.integers(1, 200, m).astype(np.int32))],
                                      schema=schema))
"""


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edges", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import pandas as pd
    import scipy.sparse as sp

    import neurodata
    from neurodata.conversion import convert

    tmp = Path(tempfile.mkdtemp(prefix="bench_connectome_"))
    rows = []
    try:
        def nd_convert(src, **kw):
            def run():
                convert(src, tmp / "s.zarr", overwrite=True, **kw)
            return run

        if COOK.exists():
            sheets = ["hermaphrodite chemical", "herm gap jn asymmetric"]

            def pandas_cook():
                frames = pd.read_excel(COOK, sheet_name=sheets, header=None)
                for df in frames.values():
                    body = df.iloc[3:-1, 3:-1].apply(pd.to_numeric, errors="coerce").fillna(0)
                    sp.csr_matrix(body.to_numpy(float))

            rows.append(("Cook 2019 herm workbook -> tables (2 sheets)",
                         median_time(nd_convert(COOK), args.repeats),
                         median_time(pandas_cook, args.repeats), "pandas.read_excel+scipy"))
        if VARSHNEY.exists():
            rows.append(("Varshney 2011 xlsx -> tables",
                         median_time(nd_convert(VARSHNEY), args.repeats),
                         median_time(lambda: pd.read_excel(VARSHNEY), args.repeats),
                         "pandas.read_excel"))
        src = tmp / "connections.feather"
        subprocess.run([sys.executable, "-c", GEN, str(args.edges), str(src)], check=True)

        def pandas_csr():
            df = pd.read_feather(src)
            codes, uniq = pd.factorize(pd.concat([df.pre_root_id, df.post_root_id]),
                                       sort=True)
            n = len(df)
            a = sp.csr_matrix((df.syn_count.to_numpy(), (codes[:n], codes[n:])),
                              shape=(len(uniq), len(uniq)))
            a.sum_duplicates()

        t_conv = median_time(nd_convert(src), 1)
        store = tmp / "s.zarr"

        def nd_csr():
            neurodata.open(store).to_scipy("chemical")

        rows.append((f"{args.edges / 1e6:g}M-edge feather -> store (once)", t_conv,
                     median_time(pandas_csr, args.repeats), "pandas.read_feather+scipy"))
        rows.append((f"{args.edges / 1e6:g}M-edge: open -> scipy CSR", median_time(nd_csr,
                                                                              args.repeats),
                     median_time(pandas_csr, args.repeats), "pandas.read_feather+scipy"))
        size_src = src.stat().st_size
        size_store = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'task':48s} {'neurodata s':>12s} {'other s':>10s} {'ratio':>7s}  other")
    for name, a, b, other in rows:
        print(f"{name:48s} {a:12.3f} {b:10.3f} {b / a:7.2f}  {other}")
    print(f"bytes: feather (uncompressed Arrow) {size_src / 1e6:.1f} MB, "
          f"store {size_store / 1e6:.1f} MB ({size_store / size_src:.2f}x)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
