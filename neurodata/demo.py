"""The main job, end to end, on data neurodata makes itself.

``neurodata demo OUT`` simulates a small labelled event-camera dataset
(patterns moving in saccades, written as ATIS ``.bin`` files in the N-MNIST
folder layout), converts it into a store, streams one batch of time-binned
frames, and writes a preview picture. Every step uses the same public API a
user calls on real data.
"""
from __future__ import annotations

import time
from pathlib import Path


def run_demo(out: str | Path, n_per_class: int = 25, batch_size: int = 16,
             seed: int = 0, log=print) -> dict:
    """Run the demo into folder ``out``; return what it produced.

    Returns
    -------
    dict with ``store``, ``preview``, ``batch_shape``, ``labels`` and ``summary``.
    """
    import neurodata
    from neurodata.simulate import SHAPES, write_shapes_dataset
    from neurodata.transforms import ToFrame

    out = Path(out)
    raw = out / "raw"
    t0 = time.perf_counter()
    files = write_shapes_dataset(raw, n_per_class=n_per_class, seed=seed)
    log(f"1/4 simulated {len(files)} recordings ({len(SHAPES)} classes) as ATIS .bin files "
        f"in {raw} [{time.perf_counter() - t0:.1f} s]")

    t0 = time.perf_counter()
    store = out / "shapes.zarr"
    neurodata.convert(raw, store, labels_from_folders=True, class_names=list(SHAPES),
                      overwrite=True,
                      attrs={"dataset": "neurodata simulated shapes", "licence": "CC0-1.0"})
    ds = neurodata.open(store)
    summary = ds.summary()
    log(f"2/4 converted to {store}: {summary['samples']} samples, {summary['events']} events, "
        f"{summary['bytes_per_event']:.2f} bytes/event on disk [{time.perf_counter() - t0:.1f} s]")

    t0 = time.perf_counter()
    transform = ToFrame(sensor_size=ds.sensor_size, n_time_bins=8)
    frames, labels = next(iter(neurodata.stream(store, transform=transform,
                                                batch_size=batch_size, seed=seed)))
    log(f"3/4 streamed a batch: frames {tuple(frames.shape)} (time-major [T, B, P, H, W]), "
        f"labels {list(map(int, labels))} [{time.perf_counter() - t0:.2f} s]")

    t0 = time.perf_counter()
    from neurodata.preview import preview

    png = preview(store, out / "preview.png")
    log(f"4/4 wrote preview picture {png} [{time.perf_counter() - t0:.1f} s]")
    return {"store": store, "preview": png, "batch_shape": tuple(frames.shape),
            "labels": [int(v) for v in labels], "summary": summary}
