"""Downloads and extraction: neurodata against pooch and tonic's download utilities.

A local HTTP server on 127.0.0.1 (the one the tests use) serves a 48 MB file
and a zip of 3000 small sample files (the N-MNIST layout). Measured, medians
of repeats:

1. a clean download with checksum verification (MB/s);
2. a transfer the server drops half way: bytes the server had to send until
   the file was complete (neurodata resumes with HTTP Range; pooch and tonic
   start again when the user reruns);
3. unpacking the zip (neurodata checks every member and writes a manifest;
   tonic and plain zipfile do neither);
4. deciding on reuse that the unpacked folder is intact (neurodata's manifest,
   fast and deep; tonic re-hashes only the archive).

Run: python benchmarks/bench_download.py
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from http_fixture import MisbehavingServer  # noqa: E402

from neurodata import download as dl  # noqa: E402

REPEATS = 3


def median_time(fn, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quiet(fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def tonic_get(url, path, md5):
    """What tonic's download_url does after its redirect probe: fetch, then check the md5."""
    from tonic import download_utils as tdl

    tdl._urlretrieve(url, str(path))
    if not tdl.check_integrity(str(path), md5):
        raise RuntimeError("File not found or corrupted.")


def main():
    import pooch
    from tonic import download_utils as tdl

    payload = np.random.default_rng(0).integers(0, 256, 48 << 20, dtype=np.uint8).tobytes()
    sha = hashlib.sha256(payload).hexdigest()
    md5 = hashlib.md5(payload).hexdigest()
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(3000):
            zf.writestr(f"Train/{i % 10}/{i:05d}.bin", rng.integers(0, 256, 5 * 800, dtype=np.uint8).tobytes())
    zbytes = buf.getvalue()
    rows = []
    with MisbehavingServer() as srv, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        url = srv.add("/big.bin", payload)
        n = [0]

        def fresh():
            n[0] += 1
            d = tmp / f"d{n[0]}"
            d.mkdir()
            return d

        t_nd = median_time(lambda: dl.fetch(dl.RemoteFile("big.bin", [url], sha256=sha), fresh()))
        t_po = median_time(lambda: quiet(lambda: pooch.retrieve(url, f"sha256:{sha}", fname="big.bin",
                                                                path=fresh(), progressbar=False)))
        t_to = median_time(lambda: quiet(lambda: tonic_get(url, fresh() / "big.bin", md5)))
        mb = len(payload) / 1e6
        rows.append(("clean download + checksum (MB/s)", mb / t_nd, mb / t_po, mb / t_to))

        # dropped half way: bytes served until complete
        def served(run_until_ok):
            srv.routes["/drop.bin"] = (payload, "drop")
            srv.hits.pop("/drop.bin", None)
            before = srv.bytes_sent
            run_until_ok()
            return (srv.bytes_sent - before) / len(payload)

        drop = srv.url("/drop.bin")

        def nd_drop():
            dl.fetch(dl.RemoteFile("drop.bin", [drop], sha256=sha), fresh(), backoff=0.01)

        def rerun(call):
            def go():
                for _ in range(3):  # the user runs it again after an error
                    try:
                        quiet(call)
                        return
                    except Exception:
                        continue
            return go

        d_po, d_to = fresh(), fresh()
        rows.append(("dropped at 50 %: bytes served / file size",
                     served(nd_drop),
                     served(rerun(lambda: pooch.retrieve(drop, f"sha256:{sha}", fname="x.bin",
                                                         path=d_po, progressbar=False))),
                     served(rerun(lambda: tonic_get(drop, d_to / "x.bin", md5)))))

        arc = tmp / "samples.zip"
        arc.write_bytes(zbytes)

        def nd_extract():
            dl.extract_archive(arc, fresh() / "x")

        def to_extract():
            quiet(lambda: tdl.extract_archive(str(arc), str(fresh())))

        def zf_extract():
            with zipfile.ZipFile(arc) as zf:
                zf.extractall(fresh())

        t1, t2, t3 = median_time(nd_extract), median_time(to_extract), median_time(zf_extract)
        rows.append(("unpack 3000-file zip (s)", t1, t2, t3))

        target = dl.extract_archive(arc, tmp / "reuse")
        t_fast = median_time(lambda: dl.verify_manifest(target, deep=False))
        t_deep = median_time(lambda: dl.verify_manifest(target, deep=True))
        t_tonic = median_time(lambda: tdl.check_integrity(str(arc), hashlib.md5(zbytes).hexdigest()))
        rows.append(("reuse check, fast manifest vs archive md5 (s)", t_fast, None, t_tonic))
        rows.append(("reuse check, deep manifest vs archive md5 (s)", t_deep, None, t_tonic))

    print(f"{'measure':<48} {'neurodata':>10} {'pooch':>10} {'tonic':>10}   ratios (pooch/nd, tonic/nd)")
    for name, a, b, c in rows:
        fmt = lambda v: f"{v:10.3f}" if v is not None else f"{'-':>10}"  # noqa: E731
        rb = f"{b / a:6.2f}" if b is not None else "     -"
        rc = f"{c / a:6.2f}" if c is not None else "     -"
        print(f"{name:<48} {fmt(a)} {fmt(b)} {fmt(c)}   {rb} {rc}")
    print("unpack row: the 'pooch' column is plain zipfile.extractall (no member checks, no "
          "manifest); tonic's extract_archive also calls zipfile.extractall.")


if __name__ == "__main__":
    main()
