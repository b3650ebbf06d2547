"""``neurodata preview STORE -o FILE.png``: a picture of a store."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("preview", help="draw a picture of a store (PNG)",
                       description="Events: a montage of time-binned ON/OFF frames of the first "
                                   "samples of each class; other modalities: their own plot "
                                   "(EEG traces, calcium mean image and traces, connectome).")
    p.add_argument("store", help="store path")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--samples", type=int, default=6, help="events: rows (samples) to show")
    p.add_argument("--bins", type=int, default=8, help="events: frames per sample")
    return p


def run(args) -> int:
    from neurodata.dataset import store_modality
    from neurodata.preview import preview

    kw = {}
    if store_modality(args.store) == "events":
        kw = {"n_samples": args.samples, "n_bins": args.bins}
    out = preview(args.store, args.output, **kw)
    print(f"wrote {out}")
    return 0
