#!/usr/bin/env python3
"""Chaos run: SIGKILLs `sluice run` at random moments until its input is drained, then checks.

Input: a 4-partition topic of N keyed records {"id", "key", "seq"} (K keys, a per-key
sequence number), plus late copies of some records that a dedupe must drop. Three pipelines
run in one `sluice run` process: topic -> dedupe -> map -> topic, -> sqlite and -> file (JSON
lines), with the chosen guarantee. A throttle keeps processing slow enough
that every kill lands while records are in flight. After at least --kills kills the process
is left to drain the input, and check_exactly_once.py judges the outputs.

--fault skip-offsets breaks the run from outside, to show the checker can fail: after every
kill, `sluice group reset-offsets --shift-by` moves each pipeline's committed input offsets
forward, as an operator skipping records would, so records are never processed.

Exit status: the checker's (0 ok, 1 defects), or 2 when the run itself went wrong.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

PIPELINE = """\
name: chaos-{what}
guarantee: {guarantee}
topics:
  input: {{ partitions: 4 }}
  output: {{ partitions: 4 }}
sources:
  in: {{ type: topic, topic: input, fetch_bytes: 16KiB, batch_records: 200 }}
transforms:
  parse: {{ type: json, inputs: [in] }}
  once: {{ type: dedupe, inputs: [parse], key: id, count: 1000000 }}
  slow: {{ type: throttle, inputs: [once], rate: {rate} }}
  m: {{ type: map, inputs: [slow], set: {{ doubled: "seq * 2" }} }}
sinks:
{sink}
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sluice", required=True)
    p.add_argument("--work", required=True, help="an empty directory for the data and outputs")
    p.add_argument("--guarantee", default="exactly-once", choices=["exactly-once", "at-least-once"])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--rate", type=int, default=8_000, help="records per second per pipeline (throttle)")
    p.add_argument("--only-topic", action="store_true", help="run only the topic -> topic pipeline")
    p.add_argument("--fault", default="", choices=["", "skip-offsets"], help="break the run from outside (see above)")
    p.add_argument("--allow-duplicates", action="store_true")
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args()
    rng = random.Random(a.seed)
    data = os.path.join(a.work, "data")
    os.makedirs(a.work, exist_ok=True)

    def sluice(*args, **kw):
        return subprocess.run([a.sluice, *args, "--data", data], check=True, **kw)

    sluice("topic", "create", "input", "--partitions", "4", capture_output=True)
    # Every 20th record from 5,000 on is followed by a late copy of the record 5,000 before it
    # (same key, so same partition): the pipelines' dedupe must drop these copies, across
    # restarts too.
    def record(i):
        return json.dumps({"id": i, "key": f"k{i % a.keys}", "seq": i // a.keys}) + "\n"
    parts = []
    for i in range(a.records):
        parts.append(record(i))
        if i >= 5000 and i % 20 == 0:
            parts.append(record(i - 5000))
    lines = "".join(parts)
    # Small batches (as a trickle of producers would write them), so a poll of fetch_bytes
    # holds a few hundred records and kills land between many commits.
    sluice("produce", "input", "--key-field", "key", "--batch-records", "150", input=lines, text=True, capture_output=True)

    files = []
    topic_sink = "  out: { type: topic, inputs: [m], topic: output, key: key }"
    db = os.path.join(a.work, "out.db")
    sqlite_sink = f"  db: {{ type: sqlite, inputs: [m], path: {db}, table: rows, columns: {{ id: id, key: key, seq: seq, doubled: doubled }} }}"
    jsonl = os.path.join(a.work, "out.jsonl")
    file_sink = f"  f: {{ type: file, inputs: [m], path: {jsonl}, format: jsonl }}"
    for what, sink in [("topic", topic_sink)] + ([] if a.only_topic else [("sqlite", sqlite_sink), ("file", file_sink)]):
        f = os.path.join(a.work, f"{what}.yaml")
        with open(f, "w") as out:
            out.write(PIPELINE.format(what=what, guarantee=a.guarantee, rate=a.rate, sink=sink))
        files.append(f)

    kills = 0
    runs = 0
    started = time.monotonic()
    while True:
        runs += 1
        proc = subprocess.Popen([a.sluice, "run", "--quiet", "--drain", *files, "--data", data],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kills < a.kills:
            time.sleep(rng.uniform(0.15, 0.6))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                if a.fault == "skip-offsets":
                    for f in files:
                        group = "chaos-" + os.path.basename(f)[:-len(".yaml")]
                        sluice("group", "reset-offsets", group, "--topic", "input", "--shift-by", "25", capture_output=True)
                continue
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            print(f"error: sluice run exited {proc.returncode} on run {runs}: {err.strip()}", file=sys.stderr)
            return 2
        break
    print(f"chaos: {a.guarantee}{' with fault ' + a.fault if a.fault else ''}: {kills} SIGKILLs over {runs} runs in {time.monotonic() - started:.1f} s")
    if kills < a.kills:
        print(f"error: the input drained after only {kills} kills; lower --rate", file=sys.stderr)
        return 2
    check = [sys.executable, os.path.join(HERE, "check_exactly_once.py"), "--sluice", a.sluice, "--data", data,
             "--records", str(a.records), "--topic", "output"]
    if not a.only_topic:
        check += ["--sqlite", db, "--table", "rows", "--file", jsonl]
    if a.allow_duplicates:
        check.append("--allow-duplicates")
    sys.stdout.flush()
    return subprocess.run(check).returncode


if __name__ == "__main__":
    sys.exit(main())
