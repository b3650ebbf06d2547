"""The torch side of neurodata.stream: DataLoader workers, ranks, resume, collations."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

import neurodata

from _pipeline_stores import SENSOR, make_store, to_frame

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

N = 240


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("tpipe") / "syn.zarr", n_samples=N, seed=11)


@pytest.fixture(scope="module", autouse=True)
def compiled_in_parent(store):
    """Compile ToFrame's numba kernel before loader workers fork (they inherit it)."""
    for _ in _frames_stream(store, seed=0):
        pass


@pytest.fixture(scope="module")
def counts(store):
    return zarr.open_group(str(store), mode="r")["count"][:]


def _frames_stream(store, **kw):
    ToFrame = to_frame()
    return neurodata.stream(store, transform=ToFrame(sensor_size=SENSOR, n_time_bins=5),
                            batch_size=16, as_="torch", return_ids=True, **kw)


def test_two_loader_workers_each_sample_once(store, counts):
    ds = _frames_stream(store, seed=3).dataset()
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    ids, n_batches = [], 0
    for frames, labels, bids in loader:
        assert frames.dtype == torch.int16 and labels.dtype == torch.int64
        assert tuple(frames.shape) == (5, len(bids), 2, 34, 34)  # [T, B, C, H, W]
        assert torch.equal(labels, bids)  # label i = sample i in the synthetic store
        per_sample = frames.sum(dim=(0, 2, 3, 4)).numpy()
        assert np.all(per_sample <= counts[bids.numpy()]) and np.all(per_sample >= counts[bids.numpy()] - 1)
        ids.append(bids.numpy())
        n_batches += 1
    ids = np.concatenate(ids)
    assert sorted(ids.tolist()) == list(range(N))
    assert n_batches == int(ds.batches_per_worker(2).sum())


def test_two_ranks_times_two_workers_cover_the_epoch(store):
    seen = []
    for rank in range(2):
        ds = _frames_stream(store, seed=9, rank=rank, world_size=2).dataset()
        for _, _, bids in DataLoader(ds, batch_size=None, num_workers=2):
            seen.append(bids.numpy())
    seen = np.concatenate(seen)
    assert len(seen) == N and sorted(seen.tolist()) == list(range(N))


def test_same_seed_same_batches_in_loader(store):
    def seq(epoch):
        ds = _frames_stream(store, seed=4).dataset()
        ds.set_epoch(epoch)
        return [b.tolist() for _, _, b in DataLoader(ds, batch_size=None, num_workers=2)]

    a, b, c = seq(0), seq(0), seq(1)
    assert a == b and a != c


def test_resume_with_two_workers_gives_exactly_the_rest(store):
    full = [b.tolist() for _, _, b in DataLoader(_frames_stream(store, seed=6).dataset(),
                                                 batch_size=None, num_workers=2)]
    ds = _frames_stream(store, seed=6).dataset()
    it = iter(DataLoader(ds, batch_size=None, num_workers=2))
    head = [next(it)[2].tolist() for _ in range(5)]
    state = ds.state_dict(batches_consumed=5, num_workers=2)
    del it
    assert head == full[:5]
    ds2 = _frames_stream(store, seed=6).dataset()
    ds2.load_state_dict(state)
    it2 = iter(DataLoader(ds2, batch_size=None, num_workers=2))
    middle = [next(it2)[2].tolist() for _ in range(4)]
    state2 = ds2.state_dict(batches_consumed=4, num_workers=2)  # a resumed run saved again
    del it2
    assert middle == full[5:9]
    ds3 = _frames_stream(store, seed=6).dataset()
    ds3.load_state_dict(state2)
    rest = [b.tolist() for _, _, b in DataLoader(ds3, batch_size=None, num_workers=2)]
    assert rest == full[9:]


def test_padded_events_and_lengths(store, counts):
    zs = zarr.open_group(str(store), mode="r")
    start, x, t = zs["start"][:], zs["x"][:], zs["t"][:]
    s = neurodata.stream(store, batch_size=10, as_="torch", collate="padded", return_ids=True,
                         shuffle=False)
    (ev, lengths), labels, ids = next(iter(s))
    assert ev.dtype == torch.int64 and tuple(ev.shape) == (10, int(counts[:10].max()), 4)
    assert lengths.tolist() == counts[:10].tolist() and ids.tolist() == list(range(10))
    for k in (0, 9):
        a, c = int(start[k]), int(counts[k])
        assert ev[k, :c, 0].tolist() == x[a:a + c].tolist()
        assert ev[k, :c, 2].tolist() == t[a:a + c].tolist()
        assert int(ev[k, c:].abs().sum()) == 0


def test_sparse_coo_equals_dense(store):
    ToFrame = to_frame()
    tf = ToFrame(sensor_size=SENSOR, n_time_bins=3)
    dense = next(iter(neurodata.stream(store, transform=tf, batch_size=8, as_="torch", seed=2)))[0]
    sparse = next(iter(neurodata.stream(store, transform=tf, batch_size=8, as_="torch", seed=2,
                                        collate="sparse")))[0]
    assert sparse.is_sparse and tuple(sparse.shape) == (3, 8, 2, 34, 34)
    assert torch.equal(sparse.to_dense(), dense)
    assert sparse._nnz() == int((dense != 0).sum())


def test_torch_stream_in_process_labels_int64(store):
    s = neurodata.stream(store, transform=to_frame()(sensor_size=SENSOR, n_time_bins=2),
                         batch_size=64, as_="torch", time_major=False)
    frames, labels = next(iter(s))
    assert tuple(frames.shape) == (64, 2, 2, 34, 34) and labels.dtype == torch.int64
