#!/usr/bin/env python3
"""Kernel launches by kind in a cubecl profile log, for finding what a GPU forward launches.

    CUBECL_DEBUG_LOG=/tmp/cubecl.log CUBECL_DEBUG_OPTION=profile-full xtask infer --backend cuda ...
    python3 scripts/cubecl_profile_summary.py /tmp/cubecl.log [--forwards N]

`profile-full` blocks on every launch to time it, so the times are upper bounds (a one-element
kernel reads ~25-50 µs); the counts are exact. With --forwards, counts are also given per forward.
"""
import argparse
import collections
import re

UNITS = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
# A timed launch: "| 48.915µs   | burn_cubecl::kernel::...::SliceAssignKernel<...>: ...".
LAUNCH = re.compile(r"^\| ([0-9.]+)(ns|µs|ms|s)\s*\| ([^<:]+(?:::[^<:]+)*)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--forwards", type=int, help="forwards in the log, for per-forward counts")
    args = parser.parse_args()

    seconds, launches = collections.Counter(), collections.Counter()
    with open(args.log, errors="replace") as log:
        for line in log:
            match = LAUNCH.match(line)
            if match:
                kind = match.group(3).strip().split("::")[-1]
                seconds[kind] += float(match.group(1)) * UNITS[match.group(2)]
                launches[kind] += 1

    total, timed = sum(launches.values()), sum(seconds.values())
    columns = ["kernel", "launches", "timed s", "mean µs"] + (["per forward"] if args.forwards else [])
    print(f"{total} launches, {timed:.2f} s timed\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    rows = [[kind, count, f"{seconds[kind]:.3f}", f"{seconds[kind] / count * 1e6:.1f}"]
            for kind, count in launches.most_common()] + [["all", total, f"{timed:.3f}", ""]]
    for row in rows:
        if args.forwards:
            row.append(f"{row[1] / args.forwards:.1f}")
        print("| " + " | ".join(map(str, row)) + " |")

if __name__ == "__main__":
    main()
