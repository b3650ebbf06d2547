"""``neurodata demo OUT``: simulate, convert, stream a batch, preview."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("demo", help="run the main job end to end on simulated event-camera data",
                       description="Simulate a labelled event-camera dataset, convert it into a "
                                   "store, stream one batch of frames and write a preview PNG.")
    p.add_argument("out", nargs="?", default="neurodata-demo", help="output folder")
    p.add_argument("--per-class", type=int, default=25, help="recordings per class")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args) -> int:
    from neurodata.demo import run_demo

    run_demo(args.out, n_per_class=args.per_class, seed=args.seed)
    return 0
