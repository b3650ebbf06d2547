"""Throughput of the hardware-simulation layer: quantisation and AER words.

For 20 M events of a 1280x720 recording (sorted times, ~20 Mev/s) prints
events/s of neurodata's budgeted quantisation (each policy) and AER
encode/decode, beside the plainest numpy doing part of the same work
(``t // dt`` binning; packing fields with shifts and ORs without time
extension) as the speed ceiling, with the ratio. Medians of repeats.

Run: python benchmarks/bench_hardware.py [n_events]
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from neurodata.hardware import decode_aer, encode_aer, flat_address, quantize
from neurodata.hardware.aer import DVS32, WIDE64


def timed(fn, repeats=5):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(n=20_000_000):
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(0.05, n)).astype(np.int64)
    x = rng.integers(0, 1280, n).astype(np.uint16)
    y = rng.integers(0, 720, n).astype(np.uint16)
    p = rng.integers(0, 2, n).astype(np.uint8)
    addr = flat_address(x, y, p, (1280, 720, 2))
    dt = 1000
    per_step = n / (t[-1] / dt)
    budget = int(per_step * 0.8)
    print(f"{n:,} events, {per_step:.0f} events per {dt} us step on average, budget {budget}")
    base = timed(lambda: (t - t[0]) // dt)
    rows = [("numpy t // dt (no budget)", base, base)]
    for policy in ("drop", "defer", "saturate"):
        s = timed(lambda: quantize(t, dt, addr, budget=budget, policy=policy), 3)
        rows.append((f"quantize budget policy={policy}", s, base))
    s = timed(lambda: quantize(t, dt, addr), 3)
    rows.append(("quantize (no budget)", s, base))

    def plain_pack():
        return ((p.astype(np.uint32) << 31) | (y.astype(np.uint32) << 21)
                | (x.astype(np.uint32) << 10) | (np.diff(t, prepend=t[0]) & 1023).astype(np.uint32))

    pack = timed(plain_pack)
    rows.append(("numpy field packing (no time extension)", pack, pack))
    for lay, name in ((DVS32, "DVS32 (dt 10 bit)"), (WIDE64, "WIDE64 (t 32 bit)")):
        s = timed(lambda: encode_aer(x, y, t, p, lay, t_base=int(t[0])), 3)
        rows.append((f"AER encode {name}", s, pack))
        words = encode_aer(x, y, t, p, lay, t_base=int(t[0]))
        s = timed(lambda: decode_aer(words, lay, t_base=int(t[0])), 3)
        rows.append((f"AER decode {name}", s, pack))
    print(f"{'operation':<44}{'Mev/s':>10}{'vs plain numpy':>16}")
    for name, sec, ref in rows:
        print(f"{name:<44}{n / sec / 1e6:>10.1f}{ref / sec:>15.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000_000)
