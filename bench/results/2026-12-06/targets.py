#!/usr/bin/env python3
"""Computes the targets table of issue 15 from a "bench run --json" file.

usage: targets.py results.json RSA_SIGN_MS

Every ratio is taken within one run (the servers measured minutes apart on
the same machine), then the median over runs is reported with the runs.
RSA_SIGN_MS is one bare RSA-2048 signature in ms (go test -bench Sign ./bench).
"""
import json
import statistics
import sys

data = json.load(open(sys.argv[1]))
rsa_sign = float(sys.argv[2])
by = {}
for s in data["samples"]:
    by[(s["scenario"], s["run"], s["label"])] = s
runs = sorted({s["run"] for s in data["samples"]})

HTTP = "relay (SES over HTTP)"
FWD = "forwarding limit (SES over HTTP)"
BASE = "baseline"
HALF = " at half load"


def per_run(scenario, f):
    out = []
    for r in runs:
        try:
            out.append(f(lambda label: by[(scenario, r, label)]))
        except KeyError:
            pass
    return out


def line(name, xs, fmt, target):
    med = statistics.median(xs) if xs else float("nan")
    runs_s = ", ".join(fmt % x for x in xs)
    print(f"| {name} | {fmt % med} | {runs_s} | {target} |")


rate = lambda s: s["load"]["messages_per_s"]
p99 = lambda s: s["load"]["reply_latency"]["p99_ms"]
cpu = lambda s: s["server_cpu_ms_per_msg"]
MiB = 1 << 20

print("| target | median | per run | target |")
print("|---|---:|---|---|")
line("S1 persistent c=16, 8 KiB: relay / forwarding limit (msg/s)", per_run(1, lambda g: rate(g(HTTP)) / rate(g(FWD))), "%.2f", "≥ 0.90")
line("S1 relay / forwarding, SES over HTTPS for the relay", per_run(1, lambda g: rate(g("relay (SES over HTTPS)")) / rate(g(FWD))), "%.2f", "")
line("S1 relay / discard-only (msg/s)", per_run(1, lambda g: rate(g(HTTP)) / rate(g(BASE))), "%.2f", "")
line("S1 forwarding / discard-only (msg/s)", per_run(1, lambda g: rate(g(FWD)) / rate(g(BASE))), "%.2f", "")
line("S1 server CPU per message: relay / forwarding", per_run(1, lambda g: cpu(g(HTTP)) / cpu(g(FWD))), "%.2f", "")
line("S1 server CPU per message: relay − forwarding (ms)", per_run(1, lambda g: cpu(g(HTTP)) - cpu(g(FWD))), "%.3f", "")
line("S2 connection per message c=16: relay / discard-only (msg/s)", per_run(2, lambda g: rate(g(HTTP)) / rate(g(BASE))), "%.2f", "≥ 0.85")
line("S2 relay / forwarding (msg/s)", per_run(2, lambda g: rate(g(HTTP)) / rate(g(FWD))), "%.2f", "")
line("S1 half load: relay reply p99 − forwarding p99 (ms)", per_run(1, lambda g: p99(g(HTTP + HALF)) - p99(g(FWD + HALF))), "%+.2f", "≤ +1 ms")
line("S1 half load: relay reply p99 − discard-only p99 (ms)", per_run(1, lambda g: p99(g(HTTP + HALF)) - p99(g(BASE + HALF))), "%+.2f", "")
line("S3 DKIM Ed25519: throughput lost against no DKIM", per_run(3, lambda g: 1 - rate(g("relay, DKIM Ed25519")) / rate(g("relay, no DKIM"))), "%.2f", "≤ 0.10")
line("S3 DKIM Ed25519: CPU per message added (ms)", per_run(3, lambda g: cpu(g("relay, DKIM Ed25519")) - cpu(g("relay, no DKIM"))), "%.3f", "")
line(f"S3 DKIM RSA-2048: CPU per message added / bare signature ({rsa_sign:.3f} ms)", per_run(3, lambda g: (cpu(g("relay, DKIM RSA-2048")) - cpu(g("relay, no DKIM"))) / rsa_sign), "%.2f", "≤ 1.05")
line("S4 one 30 MiB message: peak RSS added / size", per_run(4, lambda g: (g(HTTP)["rss_hwm_bytes"] - g(HTTP)["rss_before_bytes"]) / g(HTTP)["load"]["size"]), "%.2f", "≤ 2")
line("S4 one 30 MiB message: peak RSS (VmHWM, MiB)", per_run(4, lambda g: g(HTTP)["rss_hwm_bytes"] / MiB), "%.1f", "")
line("S6 10 concurrent 30 MiB messages: peak RSS (VmHWM, MiB)", per_run(6, lambda g: g(HTTP)["rss_hwm_bytes"] / MiB), "%.0f", "≤ 700 MiB")
line("S6 forwarding limit, same load: peak RSS (MiB)", per_run(6, lambda g: g(FWD)["rss_hwm_bytes"] / MiB), "%.0f", "")
line("S5 1,000 idle authenticated connections: RSS relay / bare go-smtp", per_run(5, lambda g: g(HTTP)["rss_held_bytes"] / g(BASE)["rss_held_bytes"]), "%.2f", "≤ 1.1")
line("S5 RSS held, relay (MiB)", per_run(5, lambda g: g(HTTP)["rss_held_bytes"] / MiB), "%.1f", "")
line("S5 RSS held, bare go-smtp (MiB)", per_run(5, lambda g: g(BASE)["rss_held_bytes"] / MiB), "%.1f", "")
line("S5 KiB per connection, relay − bare go-smtp", per_run(5, lambda g: ((g(HTTP)["rss_held_bytes"] - g(HTTP)["rss_before_bytes"]) / g(HTTP)["load"]["opened"] - (g(BASE)["rss_held_bytes"] - g(BASE)["rss_before_bytes"]) / g(BASE)["load"]["opened"]) / 1024), "%.1f", "")
busy = [s["machine_busy"] for s in data["samples"]]
bg = [s["background_busy"] for s in data["samples"]]
print(f"\nmachine busy during windows: median {100*statistics.median(busy):.0f}%; before each load: median {100*statistics.median(bg):.0f}%, max {100*max(bg):.0f}%")
