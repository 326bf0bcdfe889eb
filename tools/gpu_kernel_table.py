#!/usr/bin/env python3
"""Summarises an `ncu --csv --metrics gpu__time_duration.sum` log: total device time per kernel
name, launches, mean, and share, largest first; then the sum over all kernels. Used by
scripts/gpu-ab and scripts/gpu-check to see where a decode step's device time goes."""
import collections
import csv
import sys


def main(path):
    rows = [r for r in csv.reader(open(path, errors="replace")) if len(r) > 5]
    head = next((r for r in rows if "Kernel Name" in r), None)
    if head is None:
        print("no ncu rows")
        return
    k, v, u = head.index("Kernel Name"), head.index("Metric Value"), head.index("Metric Unit")
    agg = collections.defaultdict(list)
    for r in rows:
        if r is head or r[k] == "Kernel Name":
            continue
        try:
            x = float(r[v].replace(",", ""))
        except ValueError:
            continue
        scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1, "us": 1, "msecond": 1e3, "ms": 1e3}
        agg[r[k].split("(")[0].split("<")[0]].append(x * scale.get(r[u], 1))
    tot = sum(sum(x) for x in agg.values())
    for name, xs in sorted(agg.items(), key=lambda kv: -sum(kv[1])):
        print(f"{name[-48:]:48s} n={len(xs):5d} mean {sum(xs)/len(xs):8.2f} us "
              f"max {max(xs):8.1f}  {sum(xs):9.1f} us {100*sum(xs)/tot:5.1f}%")
    print(f"total {tot:.1f} us over {sum(len(x) for x in agg.values())} kernels")


if __name__ == "__main__":
    main(sys.argv[1])
