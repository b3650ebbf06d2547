"""Conversions killed with SIGKILL at seeded random points leave no partial store.

The source is a folder of real N-MNIST files (copies of the shared sample in
two class folders), big enough that the CLI conversion runs for about a second.
Kill points are drawn from a seeded generator, half at absolute times after
start (some before the writer has begun) and half relative to the moment the
temporary sibling appears (inside the writing phase). After every kill the
target is absent (fresh conversion) or is exactly the previous complete store
(overwrite); the only other thing allowed next to it is a ``.NAME.tmp-*``
sibling, which the next conversion removes. Rerunning always succeeds.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import neurodata
from neurodata.format.store import atomic_store, remove_stale_siblings

N_PER_CLASS = 60
KILLS_PER_SCENARIO = 4


def store_digest(path) -> str:
    """sha256 over every sample's columns, label and source name: the store's content."""
    ds = neurodata.open(str(path))
    h = hashlib.sha256()
    srcs = ds.reader.sources()
    for i in range(len(ds)):
        cols = ds.columns(i)
        for c in ("x", "y", "t", "p"):
            h.update(np.ascontiguousarray(cols[c]).tobytes())
        h.update(f"{int(ds.labels[i])}:{srcs[i]};".encode())
    return h.hexdigest()


def make_source(root: Path, sample: Path, classes=("a", "b")) -> Path:
    for c in classes:
        d = root / c
        d.mkdir(parents=True)
        for i in range(N_PER_CLASS):
            shutil.copyfile(sample, d / f"{i:04d}.bin")
    return root


def convert_cmd(src, out, overwrite=False):
    cmd = [sys.executable, "-m", "neurodata.cli.main", "convert", str(src), str(out),
           "--labels-from-folders", "--no-progress"]
    return cmd + (["--overwrite"] if overwrite else [])


def siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def run_and_kill(cmd, out: Path, delay: float, after_tmp: bool) -> bool:
    """Start ``cmd``, SIGKILL it ``delay`` s after start (or after its temp sibling
    appears); return whether it finished before the kill."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    if after_tmp:
        while proc.poll() is None and not any(".tmp-" in s for s in siblings(out)):
            if time.monotonic() - t0 > 60:
                break
            time.sleep(0.005)
    time.sleep(delay)
    finished = proc.poll() is not None
    if not finished:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return finished and proc.returncode == 0


@pytest.fixture(scope="module")
def source(real, tmp_path_factory):
    sample = real("events/sample_nmnist.bin")
    root = tmp_path_factory.mktemp("interrupt")
    src_a = make_source(root / "src_a", sample)
    src_b = make_source(root / "src_b", sample, classes=("b",))
    ref_a = root / "ref_a.zarr"
    t0 = time.monotonic()
    subprocess.run(convert_cmd(src_a, ref_a), check=True, stdout=subprocess.DEVNULL)
    duration = time.monotonic() - t0
    ref_b = root / "ref_b.zarr"
    subprocess.run(convert_cmd(src_b, ref_b), check=True, stdout=subprocess.DEVNULL)
    return {"a": src_a, "b": src_b, "digest_a": store_digest(ref_a),
            "digest_b": store_digest(ref_b), "duration": duration, "n": 2 * N_PER_CLASS}


def _kill_points(seed, duration):
    rng = np.random.default_rng(seed)
    pts = []
    for k in range(KILLS_PER_SCENARIO):
        after_tmp = bool(k % 2)
        delay = rng.uniform(0, 0.6 * duration) if after_tmp else rng.uniform(0.05, 0.9 * duration)
        pts.append((float(delay), after_tmp))
    return pts


def test_killed_fresh_conversion_leaves_no_store(source, tmp_path):
    out = tmp_path / "fresh.zarr"
    killed_mid_write = 0
    for delay, after_tmp in _kill_points(11, source["duration"]):
        finished = run_and_kill(convert_cmd(source["a"], out), out, delay, after_tmp)
        if finished or out.exists():
            # the store was moved into place before the kill (the CLI may still have been
            # printing its summary): then it is the complete store
            assert store_digest(out) == source["digest_a"], f"kill after {delay:.2f} s"
            shutil.rmtree(out)
            continue
        left = siblings(out)
        assert all(".tmp-" in s for s in left), left
        killed_mid_write += bool(left)
    # the kills hit the writing phase, not only start-up
    assert killed_mid_write >= 1
    stale = siblings(out)
    # rerunning succeeds, gives the full store and removes the dead writers' temp folders
    subprocess.run(convert_cmd(source["a"], out), check=True, stdout=subprocess.DEVNULL)
    assert store_digest(out) == source["digest_a"]
    assert len(neurodata.open(str(out))) == source["n"]
    assert siblings(out) == [], f"stale siblings {stale} were not cleaned"


def test_killed_overwrite_keeps_the_previous_store(source, tmp_path):
    out = tmp_path / "over.zarr"
    subprocess.run(convert_cmd(source["b"], out), check=True, stdout=subprocess.DEVNULL)
    assert store_digest(out) == source["digest_b"]
    seen = set()
    for delay, after_tmp in _kill_points(23, source["duration"]):
        finished = run_and_kill(convert_cmd(source["a"], out, overwrite=True), out, delay,
                                after_tmp)
        digest = store_digest(out)  # the target always opens and reads completely
        assert digest in (source["digest_a"], source["digest_b"])
        if finished:
            assert digest == source["digest_a"]
        seen.add("new" if digest == source["digest_a"] else "old")
        if digest == source["digest_a"]:  # restore the old version for the next kill
            subprocess.run(convert_cmd(source["b"], out, overwrite=True), check=True,
                           stdout=subprocess.DEVNULL)
        assert all(".tmp-" in s for s in siblings(out)), siblings(out)
    assert "old" in seen  # at least one kill interrupted an overwrite in progress
    subprocess.run(convert_cmd(source["a"], out, overwrite=True), check=True,
                   stdout=subprocess.DEVNULL)
    assert store_digest(out) == source["digest_a"]
    assert siblings(out) == []


def test_stale_siblings_of_live_or_foreign_writers_are_kept(tmp_path):
    out = tmp_path / "s.zarr"
    from neurodata.format.store import _host_tag

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    host = _host_tag()
    mine = tmp_path / f".s.zarr.tmp-{host}.{os.getpid()}.aaaaaaaa"
    gone = tmp_path / f".s.zarr.tmp-{host}.{dead_pid}.bbbbbbbb"
    gone_old = tmp_path / f".s.zarr.old-{host}.{dead_pid}.cccccccc"
    other_host = tmp_path / f".s.zarr.tmp-ffffff.{dead_pid}.dddddddd"
    unrelated = tmp_path / ".t.zarr.tmp-x"
    for p in (mine, gone, gone_old, other_host, unrelated):
        p.mkdir()
        (p / "zarr.json").write_text("{}")
    removed = remove_stale_siblings(out)
    assert sorted(p.name for p in removed) == sorted([gone.name, gone_old.name])
    assert mine.exists() and other_host.exists() and unrelated.exists()
    assert not gone.exists() and not gone_old.exists()


def test_failed_writer_removes_its_temp_and_keeps_the_old_store(tmp_path, real):
    out = tmp_path / "k.zarr"
    neurodata.convert(real("events/sample_nmnist.bin"), out)
    before = store_digest(out)
    with pytest.raises(RuntimeError):
        with atomic_store(out, overwrite=True) as tmp:
            neurodata.convert(real("events/sample_nmnist.bin"), tmp / "inner.zarr")
            raise RuntimeError("writer failed half way")
    assert store_digest(out) == before
    assert siblings(out) == []
