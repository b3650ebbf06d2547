"""The README's main job (`neurodata demo`) works end to end, and the README keeps both commands."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import neurodata
from neurodata.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]


def test_demo_converts_streams_and_previews(tmp_path):
    lines = []
    out = run_demo(tmp_path / "demo", n_per_class=3, batch_size=6, log=lines.append)
    assert len(lines) == 4 and lines[0].startswith("1/4") and lines[3].startswith("4/4")
    ds = neurodata.open(out["store"])
    assert len(ds) == 12 and ds.class_names == ["bar", "cross", "disk", "ring"]
    assert sorted(np.bincount(ds.labels).tolist()) == [3, 3, 3, 3]
    assert out["summary"]["bytes_per_event"] < 4.0
    T, B, P, H, W = out["batch_shape"]
    assert (T, B, P, H, W) == (8, 6, 2, 64, 64)
    from PIL import Image

    img = np.asarray(Image.open(out["preview"]).convert("L"))
    assert img.shape[0] > 200 and img.shape[1] > 200 and img.std() > 5  # not blank
    # the simulated files went through the real ATIS loader: provenance names it
    assert ds.provenance()["loader"].startswith("atis_bin/")
    assert ds.provenance()["n_sources"] == 12


def test_readme_has_both_commands_and_ci_runs_the_test_one():
    text = (ROOT / "README.md").read_text()
    first_screen = "\n".join(text.splitlines()[:40])
    assert "neurodata demo" in first_screen and "pytest" in first_screen
    m = re.search(r"<!-- test-command -->\s*```bash\n(.+)\n```", text)
    assert m, "README lacks the marked test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci


def test_cli_demo_subprocess(tmp_path):
    r = subprocess.run([sys.executable, "-m", "neurodata.cli.main", "demo", str(tmp_path / "d"),
                        "--per-class", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "4/4 wrote preview picture" in r.stdout
    assert (tmp_path / "d" / "preview.png").stat().st_size > 10_000
