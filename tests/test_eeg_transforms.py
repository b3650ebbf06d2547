"""Signal transforms against MNE and scipy references."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal, stats

mne = pytest.importorskip("mne")
mne.set_log_level("ERROR")

from neurodata.transforms import signal as sig  # noqa: E402

SF = 250.0


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(0).standard_normal((4, 20000))


@pytest.mark.parametrize("l_freq,h_freq", [(1.0, 40.0), (0.5, None), (None, 30.0), (70.0, 40.0)])
def test_fir_matches_mne(noise, l_freq, h_freq):
    f = sig.BandPass(SF, l_freq, h_freq)
    ref_h = mne.filter.create_filter(None, SF, l_freq, h_freq, fir_design="firwin")
    np.testing.assert_allclose(f._h, ref_h, atol=1e-12)
    ref = mne.filter.filter_data(noise, SF, l_freq, h_freq, fir_design="firwin")
    m = f.margin
    np.testing.assert_allclose(f(noise)[:, m:-m], ref[:, m:-m], atol=1e-10)


@pytest.mark.parametrize("l_freq,h_freq", [(1.0, 40.0), (None, 30.0), (8.0, None)])
def test_iir_matches_mne(noise, l_freq, h_freq):
    f = sig.BandPass(SF, l_freq, h_freq, method="iir")
    ref = mne.filter.filter_data(noise, SF, l_freq, h_freq, method="iir",
                                 iir_params=dict(order=4, ftype="butter", output="sos"))
    m = f.margin
    np.testing.assert_allclose(f(noise)[:, m:-m], ref[:, m:-m], atol=1e-5)


def test_notch_matches_mne_and_scipy(noise):
    n = sig.Notch(SF, [50.0])
    ref = mne.filter.notch_filter(noise, SF, [50.0], method="fir")
    m = n.margin
    np.testing.assert_allclose(n(noise)[:, m:-m], ref[:, m:-m], atol=1e-10)
    both = sig.Notch(SF, [50.0, 100.0])
    ref2 = mne.filter.notch_filter(noise, SF, [50.0, 100.0], method="fir")
    np.testing.assert_allclose(both(noise)[:, both.margin:-both.margin],
                               ref2[:, both.margin:-both.margin], atol=1e-4)
    ni = sig.Notch(SF, [50.0], method="iir", width=2.0)
    b, a = signal.iirnotch(50.0, 25.0, fs=SF)
    ref3 = signal.filtfilt(b, a, noise, axis=-1)
    np.testing.assert_allclose(ni(noise)[:, ni.margin:-ni.margin],
                               ref3[:, ni.margin:-ni.margin], atol=1e-3)
    # 50 Hz line removed: its power drops by > 30 dB
    t = np.arange(20000) / SF
    line = np.sin(2 * np.pi * 50 * t)[None]
    assert np.std(n(line)[:, m:-m]) < np.std(line) * 10 ** (-30 / 20)


def test_filters_keep_float32_and_batch_shape(noise):
    x = noise.astype(np.float32).reshape(2, 2, -1)
    y = sig.BandPass(SF, 1.0, 40.0)(x)
    assert y.dtype == np.float32 and y.shape == x.shape


def test_resample_matches_scipy_and_mne(noise):
    y = sig.resample(noise, 250.0, 100.0)
    np.testing.assert_allclose(y, signal.resample_poly(noise, 2, 5, axis=-1), atol=1e-12)
    ref = mne.filter.resample(noise, up=2, down=5, method="polyphase")
    # MNE pads the ends by reflection, scipy (and we) by zeros: compare the interior
    np.testing.assert_allclose(y[:, 50:-50], ref[:, 50:-50], atol=1e-10)


@pytest.mark.parametrize("sf_out,block", [(100.0, 3000), (1000.0, 1000), (128.0, 4096)])
def test_resample_blocks_equal_whole(noise, sf_out, block):
    x = noise[:, :19999]
    got = np.concatenate(list(sig.resample_blocks(lambda a, b: x[:, a:b], x.shape[1], SF, sf_out,
                                                  block=block)), axis=1)
    np.testing.assert_allclose(got, sig.resample(x, SF, sf_out), atol=1e-12)


def test_references_match_mne(noise):
    names = ["LA1", "LA2", "LA3", "LB1"]
    info = mne.create_info(names, SF, "seeg")
    raw = mne.io.RawArray(noise, info)
    avg = raw.copy().set_eeg_reference("average", ch_type="seeg").get_data()
    np.testing.assert_allclose(sig.average_reference(noise), avg, atol=1e-12)
    an, ca, pair_names = sig.shaft_pairs(names)
    assert pair_names == ["LA1-LA2", "LA2-LA3"]
    bip = mne.set_bipolar_reference(raw, ["LA1", "LA2"], ["LA2", "LA3"], drop_refs=False)
    np.testing.assert_allclose(sig.bipolar_reference(noise, an, ca),
                               bip.get_data(picks=["LA1-LA2", "LA2-LA3"]), atol=1e-12)
    # rows: only the listed channels are re-referenced
    part = sig.average_reference(noise, rows=[0, 1])
    np.testing.assert_allclose(part[2:], noise[2:])
    np.testing.assert_allclose(part[0], noise[0] - noise[:2].mean(0))


def test_shaft_pairs_skip_gaps_and_types():
    names = ["A'1", "A'2", "A'4", "B10", "B11", "EKG1", "EKG2"]
    types = ["seeg"] * 5 + ["ecg", "ecg"]
    an, ca, pn = sig.shaft_pairs(names, types)
    assert pn == ["A'1-A'2", "B10-B11"]
    assert an.tolist() == [0, 3] and ca.tolist() == [1, 4]


def test_scaling(noise):
    x = noise * 3 + 2
    np.testing.assert_allclose(sig.zscore(x), stats.zscore(x, axis=-1), atol=1e-12)
    rs = sig.robust_scale(x)
    med = np.median(x, axis=-1, keepdims=True)
    iqr = stats.iqr(x, axis=-1, keepdims=True)
    np.testing.assert_allclose(rs, (x - med) / iqr, atol=1e-12)


def test_pick_channels():
    names = ["Fp1", "Fz", "LA1", "LA2", "EOG", "STI"]
    types = ["eeg", "eeg", "seeg", "seeg", "eog", "stim"]
    regions = ["", "", "hippocampus", "amygdala", "", ""]
    assert sig.pick_channels(names, types, types="seeg").tolist() == [2, 3]
    assert sig.pick_channels(names, types, pattern=r"^F").tolist() == [0, 1]
    assert sig.pick_channels(names, types, regions=regions, region_pattern="hippo").tolist() == [2]
    assert sig.pick_channels(names, types, types=["eeg", "eog"], exclude=["Fz"]).tolist() == [0, 4]


def test_augmentations_are_seeded_and_correct():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 3, 500)).astype(np.float32)
    for make in (lambda s: sig.TimeShift(20, seed=s), lambda s: sig.GaussianNoise(0.1, seed=s),
                 lambda s: sig.ChannelDropout(0.3, seed=s), lambda s: sig.AmplitudeScale(seed=s),
                 lambda s: sig.SignFlip(seed=s), lambda s: sig.FrequencyShift(SF, 3.0, seed=s)):
        a, b, c = make(1)(x), make(1)(x), make(2)(x)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c) and a.shape == x.shape and a.dtype == np.float32
    flipped = sig.SignFlip(p=1.0)(x)
    np.testing.assert_array_equal(flipped, -x)
    drop = sig.ChannelDropout(p=0.5, seed=3)(x)
    zero_rows = (drop == 0).all(axis=-1)
    kept = ~zero_rows
    np.testing.assert_array_equal(drop[kept], x[kept])
    ts = sig.TimeShift(20, seed=4)
    shifted = ts(x)
    s = np.random.default_rng(4).integers(-20, 21, 8)
    for i in range(8):
        k = int(s[i])
        ref = np.zeros_like(x[i])
        if k >= 0:
            ref[:, k:] = x[i][:, :500 - k]
        else:
            ref[:, :500 + k] = x[i][:, -k:]
        np.testing.assert_array_equal(shifted[i], ref)


def test_frequency_shift_moves_peak():
    t = np.arange(2500) / SF
    x = np.sin(2 * np.pi * 10 * t)[None, None].repeat(4, 0).astype(np.float32)
    fs = sig.FrequencyShift(SF, 3.0, seed=7)
    y = fs(x)
    df = np.random.default_rng(7).uniform(-3, 3, 4)
    freqs = np.fft.rfftfreq(2500, 1 / SF)
    peaks = freqs[np.abs(np.fft.rfft(y[:, 0], axis=-1)).argmax(-1)]
    np.testing.assert_allclose(peaks, 10 + df, atol=0.15)


def test_spike_encoding():
    t = np.arange(1000) / SF
    x = np.sin(2 * np.pi * 2 * t)[None]  # 8 periods
    spikes = sig.delta_encode(x, 0.1)
    recon = np.cumsum(spikes.astype(float), axis=-1) * 0.1
    assert np.abs(recon - (x - x[:, :1])).max() <= 0.1 + 1e-12
    assert spikes.dtype == np.int8
    # a unit sine crosses +0.1 levels: 10 up-steps per rising quarter, 8 periods -> ~ 8 * 20 ups
    ups = int((spikes > 0).sum())
    assert 150 <= ups <= 170
    th = sig.threshold_encode(x, 0.5)
    assert int((th == 1).sum()) == 8 and int((th == -1).sum()) == 8
    first_up = int(np.argmax(th[0] == 1))
    assert x[0, first_up] >= 0.5 > x[0, first_up - 1]


def test_compose_margin(noise):
    c = sig.Compose(sig.BandPass(SF, 1.0, 40.0), sig.Notch(SF, [50.0], method="iir"))
    assert c.margin == max(sig.BandPass(SF, 1.0, 40.0).margin,
                           sig.Notch(SF, [50.0], method="iir").margin)
    assert c(noise).shape == noise.shape
