#!/usr/bin/env python3
"""Checks the outputs of a chaos run against its input.

The input holds N records {"id": i, "key": "k<i % K>", "seq": i // K}. Each output (a topic
read with read_committed, and/or a SQLite table) must hold every id exactly once, and per key
the sequence numbers must be strictly increasing in output order (topic: offset order within
the key's partition; SQLite: rowid order; file: line order).

With --allow-duplicates (at-least-once) an id may appear more than once, but none may be
missing, and per key the first appearances must still be in order.

Exit status: 0 when every check holds, 1 when a defect is found (each one is printed), 2 on
a usage or read error.
"""
import argparse
import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict


def consume(sluice, data, topic, isolation):
    out = subprocess.run(
        [sluice, "consume", topic, "--data", data, "--format", "json", "--isolation", isolation],
        check=True, capture_output=True, text=True)
    rows = []
    for line in out.stdout.splitlines():
        r = json.loads(line)
        value = r["value"] if isinstance(r["value"], dict) else json.loads(r["value"])
        rows.append((r["partition"], r["offset"], value))
    rows.sort(key=lambda t: (t[0], t[1]))
    return [v for _, _, v in rows]


def check(name, values, total, allow_duplicates):
    """Returns the defects found in one output (values in output order)."""
    defects = []
    counts = Counter(v["id"] for v in values)
    missing = [i for i in range(total) if counts[i] == 0]
    duplicated = {i: c for i, c in counts.items() if c > 1}
    unknown = [i for i in counts if not 0 <= i < total]
    if missing:
        defects.append(f"{name}: {len(missing)} input records are missing (first ids: {missing[:5]})")
    if unknown:
        defects.append(f"{name}: {len(unknown)} ids that were never input (first: {sorted(unknown)[:5]})")
    if duplicated and not allow_duplicates:
        extra = sum(c - 1 for c in duplicated.values())
        defects.append(f"{name}: {len(duplicated)} input records appear more than once ({extra} extra copies, first ids: {sorted(duplicated)[:5]})")
    seen = set()
    last = {}
    out_of_order = 0
    for v in values:
        if allow_duplicates:
            if v["id"] in seen:
                continue
            seen.add(v["id"])
        k, s = v["key"], v["seq"]
        if k in last and s <= last[k]:
            out_of_order += 1
        last[k] = s
    if out_of_order:
        defects.append(f"{name}: {out_of_order} records break the per-key order of sequence numbers")
    print(f"{name}: {len(values)} records, {len(counts)} distinct ids, {len(duplicated)} duplicated, {len(missing)} missing")
    return defects


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sluice", required=True, help="path of the sluice binary")
    p.add_argument("--data", required=True, help="data directory of the embedded broker")
    p.add_argument("--records", type=int, required=True, help="how many records were input")
    p.add_argument("--topic", help="output topic to check (read with read_committed)")
    p.add_argument("--sqlite", help="SQLite database to check")
    p.add_argument("--table", default="rows", help="table in the SQLite database")
    p.add_argument("--file", help="JSON-lines file to check")
    p.add_argument("--allow-duplicates", action="store_true", help="at-least-once: duplicates are allowed, losses are not")
    a = p.parse_args()
    defects = []
    try:
        if a.topic:
            committed = consume(a.sluice, a.data, a.topic, "read_committed")
            everything = consume(a.sluice, a.data, a.topic, "read_uncommitted")
            hidden = len(everything) - len(committed)
            print(f"topic {a.topic}: {hidden} records of aborted or open transactions in the log, hidden from read_committed")
            defects += check(f"topic {a.topic}", committed, a.records, a.allow_duplicates)
        if a.sqlite:
            db = sqlite3.connect(a.sqlite)
            rows = db.execute(f'SELECT id, key, seq FROM "{a.table}" ORDER BY rowid').fetchall()
            defects += check(f"sqlite {a.table}", [{"id": i, "key": k, "seq": s} for i, k, s in rows], a.records, a.allow_duplicates)
        if a.file:
            with open(a.file) as f:
                values = [json.loads(line) for line in f if line.strip()]
            defects += check(f"file {os.path.basename(a.file)}", values, a.records, a.allow_duplicates)
    except (OSError, subprocess.CalledProcessError, sqlite3.Error, ValueError, KeyError) as e:
        print(f"error: cannot read the outputs: {e}", file=sys.stderr)
        return 2
    for d in defects:
        print("DEFECT " + d)
    if defects:
        print(f"FAILED: {len(defects)} defects")
    elif a.allow_duplicates:
        print("OK: no input record is missing and per-key order holds (duplicates allowed)")
    else:
        print("OK: every input record appears exactly once, in per-key order")
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
