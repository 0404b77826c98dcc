#!/usr/bin/env python3
"""Scale-out chaos: several `sluice run` workers share one pipeline's partitions through a
Kafka-protocol broker (`sluice serve`, reached through librdkafka), and workers are SIGKILLed
and restarted at random; then check_exactly_once.py judges the output.

Input: a 6-partition topic of keyed records {"id", "key", "seq"}, produced with
confluent-kafka at --produce-rate records per second for as long as the kills go on, so there
are always records in flight and the input never runs out early. The pipeline (topic -> json
-> throttle -> map -> topic, exactly-once) runs in --workers processes with `--broker
kafka://127.0.0.1:PORT`, one consumer group between them. Before each kill the run waits until
the output has grown since the last one (the group is past the previous rebalance), then a
random moment more. After --kills kills the producer stops, the run waits until the group has
committed the whole input, stops the workers with SIGTERM (each must exit 0), stops the
broker, and the checker reads the output from its data directory.

Exit status: the checker's (0 ok, 1 defects), or 2 when the run itself went wrong.
"""
import argparse
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))

PIPELINE = """\
name: scaleout
guarantee: {guarantee}
topics:
  input: {{ partitions: 6 }}
  output: {{ partitions: 6 }}
broker_options:
  session.timeout.ms: "3000"
sources:
  in: {{ type: topic, topic: input, fetch_bytes: 16KiB, batch_records: 200 }}
transforms:
  parse: {{ type: json, inputs: [in] }}
  slow: {{ type: throttle, inputs: [parse], rate: {rate} }}
  m: {{ type: map, inputs: [slow], set: {{ doubled: "seq * 2" }} }}
sinks:
  out: {{ type: topic, inputs: [m], topic: output, key: key }}
"""


CLOCK = time.monotonic()


def logged(args, path):
    """Starts a process whose output goes to `path`, each line stamped with the seconds since
    the run began (one clock for the broker, the workers and the kills)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = open(path, "a")

    def copy():
        for line in proc.stdout:
            out.write(f"{time.monotonic() - CLOCK:8.3f} {line.decode(errors='replace')}")
            out.flush()
        out.close()

    threading.Thread(target=copy, daemon=True).start()
    return proc


def broker_gone(serve, work):
    """The one-sentence error for a broker that exited under the run, with its log's tail."""
    if serve.poll() is None:
        return None
    tail = open(os.path.join(work, "serve.log"), errors="replace").read()[-4000:]
    return f"error: the broker (sluice serve) exited {serve.returncode} during the run; {work}/serve.log ends:\n{tail}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sluice", required=True)
    p.add_argument("--work", required=True, help="an empty directory for the data and outputs")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--kills", type=int, default=15)
    p.add_argument("--produce-rate", type=int, default=400, help="input records per second while the kills go on")
    p.add_argument("--keys", type=int, default=300)
    p.add_argument("--rate", type=int, default=500, help="records per second per worker (throttle)")
    p.add_argument("--guarantee", default="exactly-once", choices=["exactly-once", "at-least-once"])
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.work, exist_ok=True)
    data = os.path.join(a.work, "data")
    # Port 0: the system picks a free one, and the broker says which.
    serve = logged([a.sluice, "serve", "--log-level", "info", "--kafka", "127.0.0.1:0", "--data", data],
                   os.path.join(a.work, "serve.log"))
    events = open(os.path.join(a.work, "events.log"), "w")
    port = None
    workers = []
    records = 0
    try:
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            m = re.search(r"Kafka listener on 127\.0\.0\.1:(\d+)", open(os.path.join(a.work, "serve.log")).read())
            if m:
                port = int(m.group(1))
            else:
                time.sleep(0.05)
        if port is None:
            print(broker_gone(serve, a.work) or f"error: the broker did not report its listener within 20 s; see {a.work}/serve.log", file=sys.stderr)
            return 2
        url = f"kafka://127.0.0.1:{port}"
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        for f in admin.create_topics([NewTopic("input", 6, 1)]).values():
            f.result(20)
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "enable.idempotence": True, "linger.ms": 5})
        produced = [0]
        stop_producing = threading.Event()

        def produce_input():
            # --produce-rate records per second, in tenths of a second, until told to stop.
            step = max(1, a.produce_rate // 10)
            while not stop_producing.is_set():
                for _ in range(step):
                    i = produced[0]
                    key = f"k{i % a.keys}"
                    producer.produce("input", key=key, value=f'{{"id":{i},"key":"{key}","seq":{i // a.keys}}}')
                    produced[0] += 1
                producer.poll(0)
                time.sleep(0.1)

        pipeline = os.path.join(a.work, "scaleout.yaml")
        with open(pipeline, "w") as out:
            out.write(PIPELINE.format(guarantee=a.guarantee, rate=a.rate))

        def start(n):
            w = logged([a.sluice, "run", "--quiet", "--log-level", "info", pipeline, "--broker", url, "--data", os.path.join(a.work, f"w{n}")],
                       os.path.join(a.work, f"worker-{n}.log"))
            events.write(f"{time.monotonic() - CLOCK:8.3f} worker {n} started, pid {w.pid}\n")
            events.flush()
            return w

        from confluent_kafka import Consumer, TopicPartition
        probe = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "chaos-probe"})

        def output_end():
            try:
                return sum(probe.get_watermark_offsets(TopicPartition("output", n), timeout=5)[1] for n in range(6))
            except Exception:
                return 0

        feeder = threading.Thread(target=produce_input, daemon=True)
        feeder.start()
        workers = [start(n) for n in range(a.workers)]
        kills = 0
        started = time.monotonic()
        while kills < a.kills:
            base = output_end()
            deadline = time.monotonic() + 60
            while output_end() <= base and time.monotonic() < deadline:
                if all(w.poll() is not None for w in workers):
                    break
                time.sleep(0.05)
            if broker_gone(serve, a.work):
                print(broker_gone(serve, a.work), file=sys.stderr)
                return 2
            if output_end() <= base:
                print(f"error: the output stopped growing after {kills} kills", file=sys.stderr)
                return 2
            time.sleep(rng.uniform(0.1, 0.8))
            alive = [n for n, w in enumerate(workers) if w.poll() is None]
            if not alive:
                break
            n = rng.choice(alive)
            workers[n].send_signal(signal.SIGKILL)
            workers[n].wait()
            events.write(f"{time.monotonic() - CLOCK:8.3f} worker {n} SIGKILLed\n")
            kills += 1
            workers[n] = start(n)
        stop_producing.set()
        feeder.join()
        if producer.flush(30) != 0:
            print("error: the input was not all delivered", file=sys.stderr)
            return 2
        records = produced[0]
        # Every input record committed by the group, then a graceful stop.
        watcher = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "scaleout"})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if broker_gone(serve, a.work):
                print(broker_gone(serve, a.work), file=sys.stderr)
                return 2
            try:
                offsets = watcher.committed([TopicPartition("input", n) for n in range(6)], timeout=10)
            except Exception as e:
                print(f"note: fetching the group's committed offsets failed ({e}); retrying", file=sys.stderr)
                continue
            if sum(max(0, t.offset) for t in offsets) >= records:
                break
            time.sleep(0.2)
        else:
            print(f"error: the group did not commit all {records} input records within 300 s", file=sys.stderr)
            return 2
        watcher.close()
        probe.close()
        producer = admin = None  # their connections close now, not after the broker stopped
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for n, w in enumerate(workers):
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                print(f"error: worker {n} did not stop within 60 s of SIGTERM", file=sys.stderr)
                return 2
            if w.returncode != 0:
                print(f"error: worker {n} exited {w.returncode}; see {a.work}/worker-{n}.log:\n" + open(os.path.join(a.work, f"worker-{n}.log")).read()[-3000:], file=sys.stderr)
                return 2
        print(f"chaos: {a.workers} workers, {a.guarantee} through librdkafka: {kills} SIGKILLs in {time.monotonic() - started:.1f} s, {records} input records")
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
    check = [sys.executable, os.path.join(HERE, "check_exactly_once.py"), "--sluice", a.sluice, "--data", data,
             "--records", str(records), "--topic", "output"]
    if a.guarantee == "at-least-once":
        check.append("--allow-duplicates")
    sys.stdout.flush()
    return subprocess.run(check).returncode


if __name__ == "__main__":
    sys.exit(main())
