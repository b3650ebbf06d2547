"""Hardware-simulation layer: AER words, quantisation budgets, simulator inputs, workload."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neurodata
from neurodata.errors import FormatError, TruncatedFileError
from neurodata.hardware import (AERLayout, decode_aer, dequantize, encode_aer, flat_address,
                                quantize, read_aer, workload_stats, write_aer)
from neurodata.hardware.aer import DVS32, WIDE64, iter_aer, to_bytes
from neurodata.hardware import simulators as sim

LAYOUTS = [
    DVS32,
    WIDE64,
    AERLayout([("t", 20), ("x", 11), ("y", 10), ("p", 1)], 64, ">"),
    AERLayout([("pad", 2), ("x", 8), ("y", 8), ("p", 1), ("dt", 13)], 32, ">"),
    AERLayout([("x", 6), ("y", 6), ("t", 4)], 32),  # tiny time field: many extension words
]


@pytest.fixture(scope="module")
def nmnist(real):
    from neurodata.loaders import read_events

    rec = read_events(real("events/sample_nmnist.bin"))
    return rec


def _random_events(rng, n, w=256, h=200, tmax=10**7):
    t = np.sort(rng.integers(0, tmax, n)).astype(np.int64)
    return rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: "-".join(f"{n}{b}" for n, b in l.fields))
def test_aer_round_trip_exact(layout, nmnist):
    sh = layout.shifts()
    x, y, t, p = nmnist.x, nmnist.y, nmnist.t + 5_000_000_000, nmnist.p  # a large clock value
    if "p" not in sh:
        p = np.zeros_like(p)
    base = int(t[0]) - 7
    words = encode_aer(x, y, t, p, layout, t_base=base)
    got = decode_aer(words, layout, t_base=base)
    np.testing.assert_array_equal(got["t"], t)
    np.testing.assert_array_equal(got["x"], x)
    np.testing.assert_array_equal(got["y"], y)
    np.testing.assert_array_equal(got["p"], p)
    # through a file, in small chunks, with the header's t_base
    buf = io.BytesIO()
    n_words = write_aer(buf, x, y, t, p, layout, chunk=1000)
    assert n_words == len(encode_aer(x, y, t, p, layout, t_base=int(t[0])))
    buf.seek(0)
    parts = list(iter_aer(buf, chunk=333))
    assert len(parts) == -(-n_words // 333)
    np.testing.assert_array_equal(np.concatenate([pt["t"] for pt in parts]), t)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**34), min_size=0, max_size=200), st.integers(0, 3))
def test_aer_round_trip_property(times, which):
    layout = LAYOUTS[which]
    t = np.sort(np.asarray(times, np.int64))
    rng = np.random.default_rng(len(times))
    x = rng.integers(0, 40, len(t))
    y = rng.integers(0, 40, len(t))
    p = rng.integers(0, 2, len(t)) if "p" in layout.shifts() else np.zeros(len(t), int)
    got = decode_aer(encode_aer(x, y, t, p, layout), layout)
    np.testing.assert_array_equal(got["t"], t)
    np.testing.assert_array_equal(got["x"], x)


def test_aer_word_bits_are_where_the_layout_says():
    lay = AERLayout([("p", 1), ("y", 10), ("x", 11), ("dt", 10)], 32)
    w = encode_aer([5], [7], [3], [1], lay)
    assert w.dtype == np.dtype("<u4")
    assert int(w[0]) == (1 << 31) | (7 << 21) | (5 << 10) | 3
    # a gap longer than the 10-bit delta: one extension word carrying 2 periods, then the event
    w = encode_aer([5], [7], [2 * 1024 + 3], [1], lay)
    assert [int(v) for v in w] == [(1 << 31) | (1023 << 21) | (2047 << 10) | 2,
                                   (1 << 31) | (7 << 21) | (5 << 10) | 3]


def test_aer_errors(tmp_path):
    with pytest.raises(ValueError, match="too narrow"):
        encode_aer([1], [1], [2**40], [0], LAYOUTS[4])
    with pytest.raises(ValueError, match="reserved"):
        encode_aer([2047], [1023], [0], [1], DVS32)
    with pytest.raises(ValueError, match="11 bits"):
        encode_aer([4096], [0], [0], [0], DVS32)
    with pytest.raises(ValueError, match="exactly one time field"):
        AERLayout([("x", 8), ("y", 8)])
    data = to_bytes(np.arange(10), np.arange(10), np.arange(10) * 7, np.zeros(10), DVS32)
    bad = tmp_path / "bad.aer"
    bad.write_bytes(b"XXXX" + data[4:])
    with pytest.raises(FormatError, match="bad magic") as e:
        read_aer(bad)
    assert str(bad) in str(e.value)
    cut = tmp_path / "cut.aer"
    cut.write_bytes(data[:-2])
    with pytest.raises(TruncatedFileError, match="inside a 4-byte word"):
        read_aer(cut)


def test_quantize_dequantize_within_dt(nmnist):
    addr = flat_address(nmnist.x, nmnist.y, nmnist.p, (34, 34, 2))
    keep, step, rep = quantize(nmnist.t, 1000, addr)
    assert rep.n_out == rep.n_in == len(nmnist.t)
    t_back = dequantize(step, 1000, int(nmnist.t[0]))
    err = nmnist.t[keep] - t_back
    assert err.min() >= 0 and err.max() < 1000


def _reference_budget(step, addr, budget, policy):
    """Independent, event-by-event implementation of the three policies."""
    kept, dropped, merged, deferred = [], 0, 0, 0
    if policy == "defer":
        queue, out, s = [], [], 0
        i = 0
        n = len(step)
        while i < n or queue:
            while i < n and step[i] == s:
                queue.append(i)
                i += 1
            for _ in range(min(budget, len(queue))):
                j = queue.pop(0)
                out.append((j, s))
                deferred += s > step[j]
            s += 1
            if not queue and i < n:
                s = max(s, step[i])
        return out, 0, 0, deferred
    per_step = {}
    seen = set()
    for i, (s, a) in enumerate(zip(step, addr)):
        if policy == "saturate":
            if (s, a) in seen:
                merged += 1
                continue
            seen.add((s, a))
        if per_step.get(s, 0) < budget:
            per_step[s] = per_step.get(s, 0) + 1
            kept.append((i, s))
        else:
            dropped += 1
    return kept, dropped, merged, 0


@pytest.mark.parametrize("policy", ["drop", "defer", "saturate"])
def test_budget_policies_on_bursts(policy):
    rng = np.random.default_rng(7)
    # quiet background plus three bursts far over a budget of 20 events/step
    t = np.concatenate([rng.integers(0, 100_000, 500), 20_000 + rng.integers(0, 900, 400),
                        50_000 + rng.integers(0, 300, 250), 50_500 + rng.integers(0, 400, 90)])
    t = np.sort(t)
    addr = rng.integers(0, 30, len(t))  # few addresses: many merges under saturate
    dt, budget = 1000, 20
    keep, step, rep = quantize(t, dt, addr, t0=0, budget=budget, policy=policy)
    ref, dropped, merged, deferred = _reference_budget(t // dt, addr, budget, policy)
    assert sorted(zip(keep.tolist(), step.tolist())) == sorted(ref)
    assert (rep.dropped, rep.merged, rep.deferred) == (dropped, merged, deferred)
    assert rep.n_in == len(t) and rep.n_out == len(ref)
    assert rep.peak_per_step > budget
    assert np.bincount(step).max() <= budget
    if policy == "defer":
        assert rep.n_out == len(t) and rep.deferred > 0
    else:
        assert rep.dropped > 0


def test_budget_per_core():
    t = np.zeros(10, np.int64)
    core = np.array([0] * 6 + [1] * 4)
    keep, step, rep = quantize(t, 10, t0=0, budget=3, policy="drop", core=core)
    assert rep.dropped == 3 + 1
    assert sorted(keep.tolist()) == [0, 1, 2, 6, 7, 8]


def test_simulator_inputs_layouts(nmnist):
    sensor = (34, 34, 2)
    step, neuron, n, rep = sim.spikes_from_events(nmnist.x, nmnist.y, nmnist.t, nmnist.p, sensor,
                                                  dt=1000)
    T = int(step.max()) + 1
    counts = sim.to_raster(step, neuron, T, n, dtype=np.int32)
    assert counts.shape == (T, 34 * 34 * 2) and counts.sum() == len(nmnist.t)
    raster = sim.to_raster(step, neuron, T, n)
    pairs = sim.to_sparse(step, neuron)
    uniq = np.unique(pairs, axis=0)
    assert raster.sum() == len(uniq)
    idx, times = sim.to_brian2(step, neuron, 1000)
    assert len(idx) == len(uniq)
    assert len(set(zip(idx.tolist(), np.round(times / 1e-3).astype(int).tolist()))) == len(idx)
    nest = sim.to_nest(step, neuron, n, 1000)
    assert len(nest) == n
    for d in nest:
        ts = np.asarray(d["spike_times"])
        assert np.all(ts > 0) and np.all(np.diff(ts) > 0)
    assert sum(len(d["spike_times"]) for d in nest) == len(uniq)
    pynn = sim.to_pynn(step, neuron, n, 1000)
    assert sum(len(a) for a in pynn) == len(uniq)
    lava = sim.to_lava(step, neuron, T, n)
    assert lava.shape == (n, T) and lava.sum() == len(nmnist.t)
    # the neuron index agrees with a flattened (P, H, W) frame
    frame = sim.to_sinabs_raster(step, neuron, T, sensor).sum(axis=0)
    direct = np.zeros((2, 34, 34))
    np.add.at(direct, (nmnist.p, nmnist.y, nmnist.x), 1)
    np.testing.assert_array_equal(frame, direct)
    sp = sim.to_speck_spikes(nmnist.x, nmnist.y, nmnist.t, nmnist.p)
    assert sp.dtype.names == ("layer", "feature", "x", "y", "timestamp")


def test_real_simulator_receives_exactly_the_exported_spikes(nmnist):
    """Drive sinabs (a spiking simulator for Speck/DynapCNN) with a real N-MNIST sample."""
    torch = pytest.importorskip("torch")
    sl = pytest.importorskip("sinabs.layers", reason="sinabs is not installed")
    sensor = (34, 34, 2)
    step, neuron, n, _ = sim.spikes_from_events(nmnist.x, nmnist.y, nmnist.t, nmnist.p, sensor,
                                                dt=1000, budget=None)
    T = int(step.max()) + 1
    raster = sim.to_sinabs_raster(step, neuron, T, sensor)  # [T, P, H, W] counts
    received = []
    layer = sl.IAF(spike_threshold=1.0, min_v_mem=None)
    layer.register_forward_hook(lambda m, inp, out: received.append(inp[0].detach().clone()))
    x = torch.from_numpy(raster).unsqueeze(0)  # sinabs: [B, T, ...]
    with torch.no_grad():
        out = layer(x)
    got_in = received[0][0].numpy()
    np.testing.assert_array_equal(got_in, raster)
    # an integrate-and-fire neuron with threshold 1 fires once per input spike it
    # integrates (multi-spike per step allowed): total output spikes == input events
    assert int(out.sum()) == len(nmnist.t)
    per_step_in = raster.reshape(T, -1).sum(axis=1)
    per_step_out = out[0].reshape(T, -1).sum(dim=1).numpy()
    np.testing.assert_array_equal(per_step_out, per_step_in)


def test_workload_stats_match_direct_computation():
    rng = np.random.default_rng(3)
    samples = [_random_events(rng, n, w=20, h=10, tmax=50_000) for n in (0, 1, 300, 2000)]
    x = np.concatenate([s[0] for s in samples])
    y = np.concatenate([s[1] for s in samples])
    t = np.concatenate([s[2] for s in samples])
    p = np.concatenate([s[3] for s in samples])
    offsets = np.cumsum([0] + [len(s[2]) for s in samples])
    sensor, dt = (20, 10, 2), 1000
    stats = workload_stats(x, y, t, p, sensor, dt, offsets, fan_out=16)
    for i, (sx, sy, stt, sp) in enumerate(samples):
        n = len(stt)
        assert stats["n_events"][i] == n
        assert stats["synaptic_ops"][i] == 16 * n
        if n == 0:
            assert stats["active_inputs"][i] == 0
            continue
        addrs = {(a, b, c) for a, b, c in zip(sx, sy, sp)}
        assert stats["active_inputs"][i] == len(addrs)
        steps = (stt - stt[0]) // dt
        assert stats["peak_events_per_step"][i] == np.bincount(steps).max()
        assert stats["active_steps"][i] == len(set(steps.tolist()))
        assert stats["n_steps"][i] == steps.max() + 1
        slots = len({(s, a, b, c) for s, a, b, c in zip(steps, sx, sy, sp)})
        np.testing.assert_allclose(stats["activation_sparsity"][i],
                                   1 - slots / ((steps.max() + 1) * 400))
    assert stats["batch"]["n_events"] == len(t)


def test_hardware_transforms_in_the_stream(tmp_path, real):
    """Quantisation, rasters and workload figures flow through neurodata.stream."""
    from neurodata.hardware.transforms import QuantizeTime, ToSpikeRaster, WorkloadStats
    from neurodata.transforms import EventBatch

    from neurodata.simulate import simulate_sample

    samples = [simulate_sample(i % 4, sensor=(32, 32), duration_us=50_000, seed=i) for i in range(12)]
    batch = EventBatch.from_samples(samples, sensor_size=(32, 32, 2))
    q = QuantizeTime(dt=1000, budget=30, policy="drop")(batch)
    for i, ev in enumerate(samples):
        steps = (ev["t"] - ev["t"][0]) // 1000
        per = np.bincount(steps)
        assert q.counts[i] == np.minimum(per, 30).sum()
        got = q.sample(i)
        assert np.all((got["t"] - ev["t"][0]) % 1000 == 0)
    assert q.meta["quantize"]["report"]["dropped"] == int(sum(
        np.maximum(np.bincount((ev["t"] - ev["t"][0]) // 1000) - 30, 0).sum() for ev in samples))
    r = ToSpikeRaster((32, 32, 2), dt=1000, n_steps=40, dtype="int32")(batch)
    assert r.shape == (12, 40, 32 * 32 * 2)
    for i, ev in enumerate(samples):
        steps = (ev["t"] - ev["t"][0]) // 1000
        assert r[i].sum() == np.count_nonzero(steps < 40)
    # whole pipeline: rasters and stats batches of the same samples, same seed
    store = tmp_path / "s.zarr"
    from neurodata.format.events import EventStoreWriter
    from neurodata.format.store import atomic_store

    with atomic_store(store) as tmp:
        w = EventStoreWriter(tmp, sensor_size=(32, 32, 2))
        for i, ev in enumerate(samples):
            w.add(ev, label=i % 4)
        w.close()
    rs = list(neurodata.stream(store, transform=ToSpikeRaster((32, 32, 2), 1000, 40),
                               batch_size=5, seed=3, time_major=True))
    ws = list(neurodata.stream(store, transform=WorkloadStats((32, 32, 2), 1000, fan_out=8),
                               batch_size=5, seed=3, time_major=True))
    assert [tuple(b[0].shape) for b in rs] == [(40, 5, 2048), (40, 5, 2048), (40, 2, 2048)]
    for (raster, lab), (stats, lab2) in zip(rs, ws):
        np.testing.assert_array_equal(np.asarray(lab), np.asarray(lab2))
        np.testing.assert_array_equal(stats["synaptic_ops"], 8 * stats["n_events"])
        assert stats["n_events"].sum() >= np.asarray(raster).sum()
