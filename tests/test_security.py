"""No code execution or resource blow-up from untrusted data.

- a scan of the package source (by syntax tree, not text) for calls that run
  code or unpickle: eval/exec, pickle/marshal/shelve/dill/joblib loads,
  ``np.load(allow_pickle=True)``, ``pd.read_pickle``, ``torch.load`` without
  ``weights_only=True``, non-safe ``yaml.load``, ``tarfile.extractall``
  without a filter, ``zipfile.extractall``, ``shell=True``, ``os.system``;
- XML inputs (GraphML) with entity-expansion bombs or external entities are
  refused without expanding them or reading the referenced file.

suite2p ``stat.npy`` unpickling (restricted unpickler) is tested in
tests/test_calcium.py, archive extraction in tests/test_download.py.
"""
from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

import neurodata
from neurodata.errors import NeurodataError

PACKAGE = Path(neurodata.__file__).resolve().parent

_FORBIDDEN_CALLS = {
    ("eval",): "eval", ("exec",): "exec",
    ("pickle", "load"): "pickle.load", ("pickle", "loads"): "pickle.loads",
    ("cPickle", "load"): "cPickle.load", ("marshal", "loads"): "marshal.loads",
    ("marshal", "load"): "marshal.load", ("shelve", "open"): "shelve.open",
    ("dill", "load"): "dill.load", ("dill", "loads"): "dill.loads",
    ("joblib", "load"): "joblib.load", ("pd", "read_pickle"): "pandas.read_pickle",
    ("pandas", "read_pickle"): "pandas.read_pickle", ("os", "system"): "os.system",
    ("os", "popen"): "os.popen", ("yaml", "unsafe_load"): "yaml.unsafe_load",
    ("yaml", "full_load"): "yaml.full_load",
}


def _dotted(node) -> tuple[str, ...]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str, filename: str = "<src>") -> list[str]:
    """``file:line what`` for every call in ``source`` that can run code from data."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        where = f"{filename}:{node.lineno}"
        if name in _FORBIDDEN_CALLS:
            out.append(f"{where} {_FORBIDDEN_CALLS[name]}")
        elif name[-1:] == ("load",) and name[:-1] in (("np",), ("numpy",)) \
                and _is_true(_kw(node, "allow_pickle")):
            out.append(f"{where} np.load(allow_pickle=True)")
        elif name in (("torch", "load"),) and not _is_true(_kw(node, "weights_only")):
            out.append(f"{where} torch.load without weights_only=True")
        elif name == ("yaml", "load"):
            loader = _kw(node, "Loader")
            if loader is None and len(node.args) > 1:
                loader = node.args[1]
            if loader is None or "Safe" not in ".".join(_dotted(loader)):
                out.append(f"{where} yaml.load without SafeLoader")
        elif name[-1:] == ("extractall",):
            recv = ".".join(name[:-1])
            if "zip" in recv.lower():
                out.append(f"{where} zipfile extractall (no member checks)")
            elif _kw(node, "filter") is None:
                out.append(f"{where} extractall without filter=")
        elif _is_true(_kw(node, "shell")):
            out.append(f"{where} shell=True")
    return out


def test_scanner_finds_what_it_must():
    bad = "\n".join([
        "import pickle, yaml, numpy as np, tarfile, subprocess, os",
        "eval('1')", "pickle.loads(b'')", "np.load('f', allow_pickle=True)",
        "yaml.load(s)", "yaml.load(s, Loader=yaml.Loader)", "tarfile.open('a').extractall('d')",
        "subprocess.run('ls', shell=True)", "os.system('ls')", "torch.load('m.pt')",
    ])
    found = unsafe_calls(bad)
    assert len(found) == 9, found
    ok = "\n".join([
        "import yaml, numpy as np", "yaml.load(s, Loader=yaml.SafeLoader)", "yaml.safe_load(s)",
        "np.load('f')", "np.load('f', allow_pickle=False)", "tf.extractall(d, filter='data')",
        "torch.load('m.pt', weights_only=True)",
    ])
    assert unsafe_calls(ok) == []


def test_package_source_has_no_code_running_loads():
    found = []
    for py in sorted(PACKAGE.rglob("*.py")):
        found += unsafe_calls(py.read_text(encoding="utf-8"), str(py.relative_to(PACKAGE.parent)))
    assert found == [], "calls that can run code from data:\n" + "\n".join(found)


_BOMB = """<?xml version="1.0"?>
<!DOCTYPE graphml [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
 <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
 <!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
]>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
<key id="d0" for="node" attr.name="name" attr.type="string"/>
<graph edgedefault="directed"><node id="n0"><data key="d0">&h;</data></node>
<node id="n1"/><edge source="n0" target="n1"/></graph></graphml>
"""


def test_graphml_entity_bomb_is_refused_quickly(tmp_path):
    src = tmp_path / "bomb.graphml"
    src.write_text(_BOMB)  # 16**7 * 76 bytes = 20 GB if expanded
    t0 = time.monotonic()
    with pytest.raises(NeurodataError, match="bomb.graphml"):
        neurodata.convert(src, tmp_path / "out.zarr")
    assert time.monotonic() - t0 < 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.graphml"]


def test_graphml_external_entity_is_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    src = tmp_path / "xxe.graphml"
    src.write_text(f"""<?xml version="1.0"?>
<!DOCTYPE graphml [<!ENTITY s SYSTEM "file://{secret}">]>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
<key id="d0" for="node" attr.name="name" attr.type="string"/>
<graph edgedefault="directed"><node id="n0"><data key="d0">&s;</data></node>
<node id="n1"/><edge source="n0" target="n1"/></graph></graphml>
""")
    out = tmp_path / "out.zarr"
    try:
        neurodata.convert(src, out)
    except NeurodataError as e:
        assert "xxe.graphml" in str(e)
        assert not out.exists()
        return
    leaked = [p for p in out.rglob("*") if p.is_file() and b"TOP-SECRET" in p.read_bytes()]
    assert leaked == []
