"""Short fuzz run over every registered decoder.

The long run is ``python -m neurodata.testing.fuzz --minutes 10``.

Each format gets a few seconds of seeded mutations of the real files in
../shared/data (plus seeds derived from them for formats without a real
sample). Allowed outcomes: a consistent decode or a NeurodataError naming the
file, with nothing left behind by a failed conversion; anything else -- another
exception, a hang, an allocation beyond the worker's address-space bound, a
crash -- fails with the case number to replay it.
"""
from __future__ import annotations

import numpy as np
import pytest

from neurodata.events import EventRecording
from neurodata.testing import fuzz

#: per-format bounds of the short run: (max inputs, seconds)
BUDGET = {"read": (24, 2.0), "aer": (24, 1.5), "convert": (8, 3.0)}


@pytest.fixture(scope="module")
def seeds(shared_data, tmp_path_factory):
    return fuzz.discover_seeds(shared_data, tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    w = fuzz.Worker(mem_mb=1024, log=tmp_path_factory.mktemp("fuzz-log") / "worker.log")
    w.start()
    yield w
    w.close()


@pytest.mark.parametrize("target,op", fuzz.targets(), ids=[t for t, _ in fuzz.targets()])
def test_decoder_survives_mutations(target, op, seeds, worker, tmp_path):
    if not seeds.get(target):
        pytest.skip(f"no real or derived sample of {target} in the shared data")
    cases, seconds = BUDGET[op]
    rep = fuzz.fuzz_target(target, op, seeds[target], worker, tmp_path, seed=0, cases=cases,
                           seconds=seconds, timeout=30.0, min_cases=3)
    assert rep.tried >= 3
    assert rep.decoded + rep.rejected + len(rep.failures) == rep.tried
    lines = [f"case {f.case} ({f.mutation} of {f.seed}): {f.status}: {f.detail}"
             for f in rep.failures]
    assert not lines, (f"{target}: {len(lines)} of {rep.tried} inputs broke the contract "
                       f"(replay: python -m neurodata.testing.fuzz --format {target} --seed 0)\n"
                       + "\n".join(lines))


def test_every_event_format_with_a_real_sample_is_seeded(seeds, shared_data):
    # the real files of the shared data reach the decoders they belong to
    assert {s.path.name for s in seeds["atis_bin"]} == {"sample_nmnist.bin"}
    assert {s.path.name for s in seeds["prophesee_dat"]} == {"sample_ncars.dat"}
    assert {"evt2_sample.raw", "derived_evt3.raw"} <= {s.path.name for s in seeds["prophesee_raw"]}
    assert {s.path.name for s in seeds["aedat4"]} == {"sample.aedat4"}
    vhdr = next(s for s in seeds["eeg_mne"] if s.path.suffix == ".vhdr")
    assert sorted(c.name for c in vhdr.companions) == ["test.eeg", "test.vmrk"]
    assert any(s.path.is_dir() for s in seeds["suite2p"])


def test_mutations_are_seeded_and_change_the_input(real):
    data = real("events/sample_ncars.dat").read_bytes()
    for kind in fuzz.MUTATIONS:
        a = fuzz.mutate(data, fuzz.case_rng(7, "prophesee_dat", 3), kind)
        b = fuzz.mutate(data, fuzz.case_rng(7, "prophesee_dat", 3), kind)
        assert a == b, kind
        assert a != data, kind
    # truncation keeps a prefix; a huge field keeps the length
    cut = fuzz.mutate(data, fuzz.case_rng(1, "x", 0), "truncate")
    assert len(cut) < len(data) and data.startswith(cut)
    huge = fuzz.mutate(data, fuzz.case_rng(1, "x", 0), "huge_field")
    assert len(huge) == len(data)
    # the text header of a Prophesee file ends where its binary part begins
    end = fuzz._header_end(data)
    assert data[end - 1:end] == b"\n" and data[end:end + 1] != b"%"


def test_zip_member_mutation_keeps_a_valid_container(real, tmp_path):
    import zipfile

    src = real("connectome/NeuronConnectFormatted.xlsx")
    out = tmp_path / "m.xlsx"
    out.write_bytes(fuzz.mutate(src.read_bytes(), fuzz.case_rng(0, "varshney_xlsx", 9),
                                "zip_member"))
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b:
        assert a.namelist() == b.namelist()
        changed = [n for n in a.namelist() if a.read(n) != b.read(n)]
    assert len(changed) == 1


def test_recording_checks_reject_inconsistent_results():
    x = np.arange(4, dtype=np.uint16)
    t = np.arange(4, dtype=np.int64)
    p = np.zeros(4, np.uint8)
    good = EventRecording(x, x.copy(), t, p)
    assert fuzz.check_recording(good) is None
    assert "values" in fuzz.check_recording(EventRecording(x, x[:3], t, p))
    assert "dtype" in fuzz.check_recording(EventRecording(x, x, t.astype(np.float64), p))
    bad_table = EventRecording(x, x, t, p, starts=np.array([0, 3]), counts=np.array([3, 5]))
    assert "outside" in fuzz.check_recording(bad_table)
    assert "EventRecording" in fuzz.check_recording({"x": x})


def test_long_run_command_reports_json(shared_data, tmp_path):
    # the documented long run (`python -m neurodata.testing.fuzz --minutes 10`), kept tiny
    out = tmp_path / "report.json"
    code = fuzz.main(["--format", "atis_bin", "--cases", "12", "--seed", "1",
                      "--data", str(shared_data), "--json", str(out)])
    import json

    reports = {r["target"]: r for r in json.loads(out.read_text())}
    assert code == 0 and set(reports) == {"atis_bin"}
    assert all(r["tried"] == 12 and r["failures"] == [] for r in reports.values())
    assert all(r["decoded"] + r["rejected"] == 12 for r in reports.values())


@pytest.mark.parametrize("target", ["nwb_ophys", "nwb_ecephys", "caiman_hdf5"])
def test_damaged_string_heap_is_refused_before_libhdf5_reads_it(target, seeds, tmp_path):
    # a damaged global heap collection made libhdf5 spin for ever reading an NWB string
    # attribute (found by `--format nwb_ophys --seed 3`, case 100); it is checked first now
    import neurodata
    from neurodata import loaders
    from neurodata.errors import CorruptFileError, UnknownFormatError

    src = seeds[target][0].path
    data = bytearray(src.read_bytes())
    at = data.find(b"GCOL\x01\x00\x00\x00")
    assert at > 0
    csize = int.from_bytes(data[at + 8:at + 16], "little")
    data[at + 24:at + 32] = (2 * csize).to_bytes(8, "little")  # first object overruns it
    bad = tmp_path / src.name
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.zarr"
    with pytest.raises(CorruptFileError, match="heap") as e:
        neurodata.convert(bad, out, target)
    assert str(bad) in str(e.value) and not out.exists()
    with pytest.raises(UnknownFormatError):
        loaders.detect(bad)
