"""Synthetic event-camera recordings from moving patterns.

Used by ``neurodata demo`` and by tests and benchmarks that need data of a
known size without a download. Events come from the standard DVS pixel
model: each pixel emits an event whenever its log intensity has moved by a
contrast threshold since its last event, with a per-pixel threshold spread,
sub-step timestamps and background noise events. Patterns move in small
saccades, as the N-MNIST and N-Caltech101 recordings do.
"""
from __future__ import annotations

import numpy as np

from neurodata.events import EVENT_DTYPE

#: pattern names, in label order
SHAPES = ("bar", "cross", "disk", "ring")


def pattern(name: str, size: int = 64) -> np.ndarray:
    """An intensity image (float, 0.1..1) of the named pattern."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    r = np.hypot(xx - c, yy - c)
    img = np.full((size, size), 0.1, np.float32)
    w = size / 10
    if name == "bar":
        img[np.abs(xx - c) < w] = 1.0
    elif name == "cross":
        img[(np.abs(xx - c) < w) | (np.abs(yy - c) < w)] = 1.0
    elif name == "disk":
        img[r < size / 4] = 1.0
    elif name == "ring":
        img[np.abs(r - size / 4) < w / 1.5] = 1.0
    else:
        raise ValueError(f"unknown pattern {name!r}; known: {SHAPES}")
    return img


def simulate_sample(
    label: int,
    sensor: tuple[int, int] = (64, 64),
    duration_us: int = 300_000,
    step_us: int = 1000,
    threshold: float = 0.5,
    noise_rate_hz: float = 0.2,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Events of one pattern moving in three saccades over ``sensor``.

    Parameters
    ----------
    label : int
        Index into :data:`SHAPES`.
    sensor : (width, height)
    duration_us, step_us : int
        Recording length and simulation step in microseconds.
    threshold : float
        Contrast threshold in log intensity (spread 10 % per pixel).
    noise_rate_hz : float
        Background events per pixel per second.
    seed : int or numpy Generator

    Returns
    -------
    Structured array with :data:`~neurodata.events.EVENT_DTYPE`, sorted by t.
    """
    rng = np.random.default_rng(seed)
    width, height = sensor
    size = max(width, height)
    img = np.log(pattern(SHAPES[label], size))
    n_steps = duration_us // step_us
    # three saccades (down-right, down-left, up) like the N-MNIST camera motion
    phase = np.linspace(0, 3, n_steps, endpoint=False)
    k = phase.astype(int)
    frac = phase - k
    dirs = np.array([[1.0, 1.0], [-1.0, 1.0], [0.0, -2.0]]) * (size / 12)
    start = np.cumsum(np.vstack([[0, 0], dirs[:-1]]), axis=0)
    offset = start[k] + dirs[k] * frac[:, None] + rng.normal(0, 0.3, (n_steps, 2))
    thr = threshold * (1 + 0.1 * rng.standard_normal((height, width)))
    ref = _shifted(img, offset[0], width, height)
    xs, ys, ts, ps = [], [], [], []
    for i in range(1, n_steps):
        cur = _shifted(img, offset[i], width, height)
        diff = cur - ref
        n = np.floor(np.abs(diff) / thr).astype(np.int32)
        yy, xx = np.nonzero(n)
        if len(yy):
            counts = n[yy, xx]
            rep = np.repeat(np.arange(len(yy)), counts)
            xs.append(xx[rep])
            ys.append(yy[rep])
            ps.append((diff[yy, xx] > 0)[rep].astype(np.uint8))
            ts.append((i - 1) * step_us + rng.integers(0, step_us, len(rep)))
            ref[yy, xx] += np.sign(diff[yy, xx]) * counts * thr[yy, xx]
    n_noise = rng.poisson(noise_rate_hz * width * height * duration_us / 1e6)
    xs.append(rng.integers(0, width, n_noise))
    ys.append(rng.integers(0, height, n_noise))
    ps.append(rng.integers(0, 2, n_noise).astype(np.uint8))
    ts.append(rng.integers(0, duration_us, n_noise))
    t = np.concatenate(ts).astype(np.int64)
    order = np.argsort(t, kind="stable")
    out = np.empty(len(t), EVENT_DTYPE)
    out["x"] = np.concatenate(xs)[order]
    out["y"] = np.concatenate(ys)[order]
    out["t"] = t[order]
    out["p"] = np.concatenate(ps)[order]
    return out


def _shifted(img: np.ndarray, offset, width: int, height: int) -> np.ndarray:
    """Bilinear sample of ``img`` shifted by ``offset`` (dx, dy), cropped to the sensor."""
    size = img.shape[0]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    sx = np.clip(xx - offset[0], 0, size - 1.001)
    sy = np.clip(yy - offset[1], 0, size - 1.001)
    x0 = sx.astype(np.int32)
    y0 = sy.astype(np.int32)
    fx, fy = sx - x0, sy - y0
    a = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    b = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return a * (1 - fy) + b * fy


def write_shapes_dataset(folder, n_per_class: int = 25, test_fraction: float = 0.2,
                         sensor=(64, 64), seed: int = 0) -> list:
    """Write a small labelled dataset as ATIS ``.bin`` files (one sample per file).

    Layout: ``folder/{train,test}/<shape>/<n>.bin``, the layout N-MNIST uses,
    so ``neurodata convert folder out.zarr --labels-from-folders`` reads it.
    Returns the written paths.
    """
    from pathlib import Path

    from neurodata.loaders.atis_bin import encode

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    n_test = int(round(n_per_class * test_fraction))
    paths = []
    for label, name in enumerate(SHAPES):
        for i in range(n_per_class):
            split = "test" if i < n_test else "train"
            ev = simulate_sample(label, sensor=sensor, seed=rng)
            p = folder / split / name / f"{i:05d}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(encode(ev["x"], ev["y"], ev["t"], ev["p"]))
            paths.append(p)
    return paths
