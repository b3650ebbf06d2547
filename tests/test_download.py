"""Downloads against a local server that misbehaves, and hostile archives."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest

from http_fixture import MisbehavingServer
from neurodata import download as dl
from neurodata.errors import (ChecksumError, CorruptFileError, DownloadError, NeurodataError,
                              UnsafeArchiveError)


@pytest.fixture
def server():
    with MisbehavingServer() as s:
        yield s


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURODATA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NEURODATA_OFFLINE", raising=False)
    return tmp_path / "home"


def payload(n=300_000, seed=0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_data_home_and_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURODATA_HOME", str(tmp_path / "x"))
    assert dl.data_home() == tmp_path / "x"
    monkeypatch.delenv("NEURODATA_HOME")
    from platformdirs import user_cache_dir
    assert dl.data_home() == dl.Path(user_cache_dir("neurodata"))
    monkeypatch.setenv("NEURODATA_OFFLINE", "1")
    assert dl.is_offline()
    monkeypatch.setenv("NEURODATA_OFFLINE", "0")
    assert not dl.is_offline()


def test_plain_download_verifies_sha256_and_md5(server, tmp_path):
    data = payload()
    url = server.add("/a.bin", data)
    rf = dl.RemoteFile("a.bin", [url], sha256=sha(data), md5=hashlib.md5(data).hexdigest(),
                       size=len(data))
    out = dl.fetch(rf, tmp_path)
    assert out.read_bytes() == data
    assert not (tmp_path / "a.bin.part").exists()
    # second call reuses the verified file without any request
    n = len(server.log)
    assert dl.fetch(rf, tmp_path) == out
    assert len(server.log) == n


def test_dropped_connection_resumes_with_range(server, tmp_path):
    data = payload(400_000, seed=1)
    url = server.add("/drop.bin", data, "drop")
    out = dl.fetch(dl.RemoteFile("drop.bin", [url], sha256=sha(data)), tmp_path, backoff=0.01)
    assert out.read_bytes() == data
    statuses = [(r, s) for p, r, s in server.log if p == "/drop.bin"]
    assert statuses[0] == (None, 200)
    # the second request asked for the rest, from the bytes already kept (a whole
    # number of 64 KiB blocks of the half that arrived), not from zero
    rng, status = statuses[1]
    start = int(rng.removeprefix("bytes=").rstrip("-"))
    assert status == 206 and 0 < start <= len(data) // 2 and start % 65536 == 0
    assert len(statuses) == 2


def test_partial_file_is_never_taken_for_complete(server, tmp_path):
    data = payload(200_000, seed=2)
    # a leftover .part of the first half (an earlier interrupted run)
    (tmp_path / "p.bin.part").write_bytes(data[:50_000])
    url = server.add("/p.bin", data)
    out = dl.fetch(dl.RemoteFile("p.bin", [url], sha256=sha(data)), tmp_path)
    assert out.read_bytes() == data
    assert server.log[-1] == ("/p.bin", "bytes=50000-", 206)


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = payload(100_000, seed=3)
    (tmp_path / "n.bin.part").write_bytes(b"\0" * 1000)
    url = server.add("/n.bin", data, "norange")
    out = dl.fetch(dl.RemoteFile("n.bin", [url], sha256=sha(data)), tmp_path)
    assert out.read_bytes() == data


def test_404_first_mirror_falls_over_to_next(server, tmp_path):
    data = payload(50_000, seed=4)
    dead = server.url("/dead/m.bin")
    good = server.add("/m.bin", data)
    out = dl.fetch(dl.RemoteFile("m.bin", [dead, good], sha256=sha(data)), tmp_path)
    assert out.read_bytes() == data
    assert [s for p, _, s in server.log] == [404, 200]


def test_503_is_retried_on_the_same_mirror(server, tmp_path):
    data = payload(10_000, seed=5)
    url = server.add("/busy.bin", data, "503once")
    out = dl.fetch(dl.RemoteFile("busy.bin", [url], sha256=sha(data)), tmp_path, backoff=0.01)
    assert out.read_bytes() == data
    assert [s for _, _, s in server.log] == [503, 200]


def test_corrupt_download_raises_and_keeps_nothing(server, tmp_path):
    good = payload(80_000, seed=6)
    bad = bytearray(good)
    bad[1234] ^= 0xFF
    url = server.add("/c.zip", bytes(bad))
    with pytest.raises(ChecksumError) as e:
        dl.fetch(dl.RemoteFile("c.zip", [url], sha256=sha(good)), tmp_path)
    assert "c.zip" in str(e.value) and url in str(e.value) and sha(good) in str(e.value)
    assert not (tmp_path / "c.zip").exists()
    assert not (tmp_path / "c.zip.part").exists()


def test_corrupt_first_mirror_good_second(server, tmp_path):
    good = payload(20_000, seed=7)
    u1 = server.add("/bad/f.bin", good[::-1])
    u2 = server.add("/good/f.bin", good)
    out = dl.fetch(dl.RemoteFile("f.bin", [u1, u2], md5=hashlib.md5(good).hexdigest()), tmp_path)
    assert out.read_bytes() == good


def test_every_mirror_dead_names_each_url(server, tmp_path):
    u1, u2 = server.url("/x/1"), server.url("/x/2")
    with pytest.raises(DownloadError) as e:
        dl.fetch(dl.RemoteFile("gone.bin", [u1, u2], sha256="0" * 64), tmp_path, retries=0)
    msg = str(e.value)
    assert msg.startswith("gone.bin:") and u1 in msg and u2 in msg and "HTTP 404" in msg


def test_cached_file_with_wrong_checksum_is_replaced(server, tmp_path):
    data = payload(30_000, seed=8)
    (tmp_path / "r.bin").write_bytes(b"stale")
    url = server.add("/r.bin", data)
    out = dl.fetch(dl.RemoteFile("r.bin", [url], sha256=sha(data)), tmp_path)
    assert out.read_bytes() == data


def test_offline_mode(server, tmp_path, monkeypatch):
    data = payload(5_000, seed=9)
    url = server.add("/o.bin", data)
    rf = dl.RemoteFile("o.bin", [url], sha256=sha(data))
    monkeypatch.setenv("NEURODATA_OFFLINE", "1")
    with pytest.raises(DownloadError, match="NEURODATA_OFFLINE"):
        dl.fetch(rf, tmp_path)
    assert server.log == []
    monkeypatch.delenv("NEURODATA_OFFLINE")
    dl.fetch(rf, tmp_path)
    monkeypatch.setenv("NEURODATA_OFFLINE", "1")
    assert dl.fetch(rf, tmp_path).read_bytes() == data  # cached copy works offline
    assert len(server.log) == 1


# --------------------------------------------------------------------------- archives
def make_tar(path, members: dict[str, bytes], links=(), mode="w:gz"):
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
            info.linkname = target
            tf.addfile(info)
    return path


def make_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("mode,ext", [("w:gz", "tar.gz"), ("w:bz2", "tar.bz2"),
                                      ("w:xz", "tar.xz"), ("w", "tar")])
def test_tar_extraction_and_manifest(tmp_path, mode, ext):
    members = {"d/a.txt": b"alpha", "d/sub/b.bin": bytes(range(256)), "c.txt": b""}
    arc = make_tar(tmp_path / f"t.{ext}", members, links=[("d/link", "a.txt", "sym")], mode=mode)
    out = dl.extract_archive(arc, tmp_path / "out")
    for name, data in members.items():
        assert (out / name).read_bytes() == data
    assert os.readlink(out / "d/link") == "a.txt"
    man = json.loads((out / dl.MANIFEST_NAME).read_text())
    assert set(man["files"]) == set(members)
    assert man["files"]["d/sub/b.bin"]["sha256"] == sha(bytes(range(256)))
    assert man["archive"]["sha256"] == dl.file_digest(arc)
    assert dl.verify_manifest(out)["files"]["d/a.txt"]["size"] == 5


def test_zip_extraction(tmp_path):
    members = {"x/1.bin": b"\x01" * 10, "x/2.bin": b"\x02" * 20}
    out = dl.extract_archive(make_zip(tmp_path / "z.zip", members), tmp_path / "zout")
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.bin")} == set(members)
    assert (out / "x/2.bin").read_bytes() == b"\x02" * 20


@pytest.mark.parametrize("members,links,what", [
    ({"../evil.txt": b"x"}, [], "leaves the target"),
    ({"ok/../../evil.txt": b"x"}, [], "leaves the target"),
    ({"/tmp/evil_abs.txt": b"x"}, [], "absolute path"),
    ({"a.txt": b"x"}, [("out_link", "../../outside", "sym")], "symlink"),
    ({"a.txt": b"x"}, [("abs_link", "/etc/passwd", "sym")], "absolute path"),
    ({"a.txt": b"x"}, [("hard", "../outside.txt", "hard")], "hard link"),
])
def test_hostile_tar_rejected_and_nothing_written(tmp_path, members, links, what):
    arc = make_tar(tmp_path / "evil.tar.gz", {"good/first.txt": b"ok", **members}, links)
    before = set(tmp_path.rglob("*"))
    with pytest.raises(UnsafeArchiveError, match=what) as e:
        dl.extract_archive(arc, tmp_path / "sandbox" / "target")
    assert "evil.tar.gz" in str(e.value)
    assert set(tmp_path.rglob("*")) - before <= {tmp_path / "sandbox"}
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "sandbox" / "target").exists()


def test_tar_symlink_then_file_through_it_rejected(tmp_path):
    # a classic: a symlink to outside, then a member written "through" it
    arc = tmp_path / "through.tar"
    with tarfile.open(arc, "w") as tf:
        info = tarfile.TarInfo("sub")
        info.type = tarfile.SYMTYPE
        info.linkname = ".."
        tf.addfile(info)
        info = tarfile.TarInfo("sub/escaped.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(UnsafeArchiveError):
        dl.extract_archive(arc, tmp_path / "t")
    assert not (tmp_path / "escaped.txt").exists()


def test_device_member_rejected(tmp_path):
    arc = tmp_path / "dev.tar"
    with tarfile.open(arc, "w") as tf:
        info = tarfile.TarInfo("null")
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="device"):
        dl.extract_archive(arc, tmp_path / "t")


def test_zip_slip_rejected(tmp_path):
    arc = make_zip(tmp_path / "slip.zip", {"fine.txt": b"1", "../../slipped.txt": b"2"})
    with pytest.raises(UnsafeArchiveError, match="leaves the target"):
        dl.extract_archive(arc, tmp_path / "z" / "t")
    assert not (tmp_path / "slipped.txt").exists()
    assert not (tmp_path / "z" / "t").exists()


def test_not_an_archive(tmp_path):
    p = tmp_path / "junk.zip"
    p.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(CorruptFileError, match="not a zip or tar"):
        dl.extract_archive(p, tmp_path / "t")


def test_truncated_archive_leaves_no_target(tmp_path):
    arc = make_tar(tmp_path / "big.tar.gz", {"f.bin": payload(200_000)})
    data = arc.read_bytes()
    arc.write_bytes(data[: len(data) // 2])
    with pytest.raises(NeurodataError):
        dl.extract_archive(arc, tmp_path / "t")
    assert not (tmp_path / "t").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".t.extract")]


def test_manifest_detects_tampering(tmp_path):
    arc = make_zip(tmp_path / "m.zip", {"a.txt": b"hello", "b/c.txt": b"world"})
    out = dl.extract_archive(arc, tmp_path / "m")
    dl.verify_manifest(out)
    (out / "b/c.txt").write_bytes(b"WORLD")  # same size, other content
    with pytest.raises(ChecksumError, match="content differs") as e:
        dl.verify_manifest(out, deep=True)
    assert str(e.value).startswith(str(out / "b/c.txt"))
    os.utime(out / "b/c.txt", ns=(1, 1))
    with pytest.raises(ChecksumError, match="modified after extraction"):
        dl.verify_manifest(out, deep=False)
    (out / "b/c.txt").unlink()
    with pytest.raises(ChecksumError, match="missing, e.g. 'b/c.txt'"):
        dl.verify_manifest(out, deep=False)
    (out / "b/c.txt").write_bytes(b"world")
    (out / "extra.txt").write_bytes(b"?")
    with pytest.raises(ChecksumError, match="not from the archive"):
        dl.verify_manifest(out, deep=False)


def test_no_manifest_means_incomplete(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(ChecksumError, match="extraction never completed"):
        dl.verify_manifest(tmp_path / "half")


def test_html_page_instead_of_file_is_named(server, tmp_path):
    page = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
    u1 = server.add("/login/data.zip", page)
    with pytest.raises(ChecksumError, match="HTML page instead of the file") as e:
        dl.fetch(dl.RemoteFile("data.zip", [u1]), tmp_path)  # no checksum published
    assert u1 in str(e.value)
    assert not list(tmp_path.iterdir())


def test_extraction_refused_when_the_disk_is_too_small(tmp_path, monkeypatch):
    arc = make_zip(tmp_path / "big.zip", {"a.bin": b"\0" * 100_000})
    real_usage = dl.shutil.disk_usage
    monkeypatch.setattr(dl.shutil, "disk_usage",
                        lambda p: real_usage(p)._replace(free=50_000))
    with pytest.raises(NeurodataError, match="unpacking needs 0.00 GB"):
        dl.extract_archive(arc, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def _zip_with_links(path, links, files=()):
    import stat as st

    with zipfile.ZipFile(path, "w") as zf:
        for name, target in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (st.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
        for name, data in files:
            zf.writestr(name, data)
    return path


def test_zip_link_chain_escaping_through_a_link_to_root_rejected(tmp_path):
    # d -> "." looks harmless, d/l -> ".." looks like the root, but is its parent
    arc = _zip_with_links(tmp_path / "chain.zip", [("d", "."), ("d/l", "..")],
                          [("d/l/escaped.txt", b"x")])
    with pytest.raises(UnsafeArchiveError, match="outside the target folder|through a link"):
        dl.extract_archive(arc, tmp_path / "box" / "t")
    assert not (tmp_path / "box" / "escaped.txt").exists()
    assert not (tmp_path / "box" / "t").exists()


def test_zip_inside_links_are_kept(tmp_path):
    arc = _zip_with_links(tmp_path / "ok.zip", [("latest", "v1")], [("v1/a.txt", b"a")])
    out = dl.extract_archive(arc, tmp_path / "t")
    assert os.readlink(out / "latest") == "v1" and (out / "latest" / "a.txt").read_bytes() == b"a"
    assert set(json.loads((out / dl.MANIFEST_NAME).read_text())["files"]) == {"v1/a.txt"}


def test_tar_link_chain_rejected(tmp_path):
    arc = make_tar(tmp_path / "chain.tar", {}, links=[("d", ".", "sym"), ("d/l", "..", "sym")],
                   mode="w")
    with tarfile.open(arc, "a") as tf:
        info = tarfile.TarInfo("d/l/escaped.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(UnsafeArchiveError):
        dl.extract_archive(arc, tmp_path / "box" / "t")
    assert not (tmp_path / "box" / "escaped.txt").exists()
