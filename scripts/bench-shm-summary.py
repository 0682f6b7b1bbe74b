#!/usr/bin/env python3
"""Summarises a run of scripts/bench-shm-campaign.sh: for each target of doc/performance.md,
the memcast figure, its same-run floor and their ratio, as the median of the three runs with
the runs in brackets.

    scripts/bench-shm-summary.py OUT_DIR
"""
import json
import statistics
import sys


def load(out, name):
    try:
        with open(f"{out}/{name}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def runs(out, name):
    return [load(out, f"{name}.{r}") for r in (1, 2, 3)]


def size_entry(doc, size):
    return next(s for s in doc["sizes"] if s["size"] == size)


def show(label, values, fmt="{:.3f}"):
    got = [v for v in values if v is not None]
    if not got:
        print(f"  {label}: no data")
        return
    inner = ", ".join(fmt.format(v) if v is not None else "-" for v in values)
    print(f"  {label}: {fmt.format(statistics.median(got))} ({inner})")


def latency(out, name, size, floor_key=None, stat="p50_us"):
    memcast, floor, ratio = [], [], []
    for doc in runs(out, name):
        if doc is None:
            memcast.append(None), floor.append(None), ratio.append(None)
            continue
        entry = size_entry(doc, size)
        m = entry["memcast"][stat]
        f = doc[floor_key][stat] if floor_key else entry["floor"][stat]
        memcast.append(m), floor.append(f), ratio.append(m / f)
    print(f"{name} {size} B {stat} against {floor_key or 'its payload floor'}")
    show("memcast us", memcast)
    show("floor us", floor)
    show("ratio", ratio, "{:.2f}")


def throughput(out, name, size):
    rate, memcpy_share, floor_ratio = [], [], []
    for doc in runs(out, name):
        entry = size_entry(doc, size) if doc else None
        rate.append(entry["msgs_per_s"] if entry else None)
        memcpy_share.append(entry["memcpy_ratio"] * 100 if entry else None)
        floor_ratio.append(entry["floor_ratio"] if entry else None)
    print(f"{name} {size} B")
    show("msg/s", rate, "{:.0f}")
    show("% of memcpy", memcpy_share, "{:.1f}")
    show("of the streaming floor", floor_ratio, "{:.2f}")


def fan_out(out, kind, key):
    ratio = []
    for r in (1, 2, 3):
        one, eight = load(out, f"{kind}_1.{r}"), load(out, f"{kind}_8.{r}")
        if one is None or eight is None:
            ratio.append(None)
            continue
        a, b = one["sizes"][0], eight["sizes"][0]
        ratio.append(b[key] / a[key])
        print(f"{kind} run {r}: {key} 1 subscriber {a[key]:.1f}, 8 subscribers {b[key]:.1f}; "
              f"lost {a['lost']} / {b['lost']}, corrupt {a['corrupt']} / {b['corrupt']}")
    show(f"{kind} 8 / 1", ratio, "{:.2f}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    for size in (64, 4096, 1 << 20, 8 << 20):
        latency(out, "lat_copy", size)
        latency(out, "lat_zc", size)
    for size in (64, 4096):
        latency(out, "lat_spin", size, "floor_line_spin")
        latency(out, "lat_look0", size)
        latency(out, "lat_look0_zc", size)
    latency(out, "lat_look0", 64, "floor_line_block")
    latency(out, "lat_look0", 64, "floor_line_block", "p99_us")
    for size in (64, 4096, 1 << 20):
        throughput(out, "tp_rel", size)
    for size in (64, 1 << 20):
        throughput(out, "tp_rel_zc", size)
    for size in (1 << 20, 8 << 20):
        throughput(out, "tp_rel_zcu", size)
        latency(out, "lat_zcu", size)
    fan_out(out, "fan_be", "pub_cpu_ns_per_msg")
    fan_out(out, "fan_rel", "pub_cpu_ns_per_msg")
    fan_out(out, "pace_be", "publish_ns_per_msg")
    fan_out(out, "pace_rel", "publish_ns_per_msg")


main()
