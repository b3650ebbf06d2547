"""``neurodata stats STORE``: class balance, durations, event rates (and a plot)."""
from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("stats", help="class balance, durations, rates or channel stats of a store",
                       description="Statistics of a store: samples per class and split, "
                                   "sample durations, events per sample and event rates "
                                   "(events); per-channel mean/std/range (time series); "
                                   "per-ROI trace statistics (imaging).")
    p.add_argument("store", help="store path")
    p.add_argument("-o", "--output", help="also draw the statistics into this PNG")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def run(args) -> int:
    from neurodata.stats import plot_stats, store_stats

    s = store_stats(args.store)
    if args.output:
        plot_stats(s, args.output)
    shown = {k: v for k, v in s.items() if k not in ("per_sample", "per_roi")}
    if not args.json and "per_recording" in shown:  # one line per recording, not per channel
        shown["per_recording"] = {r["recording"]: f"{r['n_channels']} ch, {r['sfreq']:g} Hz, "
                                  f"{r['duration_s']:.1f} s" for r in shown["per_recording"]}
    if args.json:
        print(json.dumps(shown, indent=1, default=str))
    else:
        for key, value in shown.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
                print(f"{key:>18}: {inner}")
            else:
                print(f"{key:>18}: {_fmt(value)}")
    if args.output:
        print(f"wrote {args.output}")
    return 0


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)
