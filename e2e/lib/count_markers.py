#!/usr/bin/env python3
"""Counts, in the recording proxy's JSONL log, the SendEmail calls SES
accepted (status 200) for the messages PREFIX0-end .. PREFIX<N-1>-end.

    count_markers.py LOG PREFIX N

Prints "delivered=D missing=M duplicates=K ..." and exits 0 when every
message arrived at least once, 1 otherwise.
"""
import base64
import json
import re
import sys

log, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
counts = {}
pat = re.compile(re.escape(prefix) + r"(\d+)-end")
with open(log) as f:
    for line in f:
        e = json.loads(line)
        if e.get("status") != 200:
            continue
        raw = base64.b64decode(e["body"]["Content"]["Raw"]["Data"]).decode("utf-8", "replace")
        m = pat.search(raw)
        if m:
            i = int(m.group(1))
            counts[i] = counts.get(i, 0) + 1
missing = [i for i in range(n) if i not in counts]
dups = {i: c for i, c in counts.items() if c > 1}
print(f"delivered={len(counts)} missing={len(missing)} duplicates={len(dups)} first_missing={missing[:5]} dups={list(dups.items())[:5]}")
sys.exit(0 if not missing else 1)
