#!/usr/bin/env python3
"""confluent-kafka against a Kafka listener, for `sluice bench kafka`: produce N records of SIZE
bytes into TOPIC (already created with P partitions, records spread round-robin), or read them
all back with a consumer assigned to every partition from the beginning (no group). Each mode
is its own run so the broker's CPU can be measured per phase. Prints one JSON line:

  {"client": "...", "seconds": ..., "records": N}

usage: confluent_bench.py produce|consume BOOTSTRAP TOPIC PARTITIONS RECORDS SIZE [KEY=VALUE ...]

KEY=VALUE pairs are added to the client's configuration (the consumer runs with librdkafka's
defaults otherwise).
"""
import json
import sys
import time

import confluent_kafka
from confluent_kafka import Consumer, Producer, TopicPartition


def main():
    mode = sys.argv[1]
    bootstrap, topic, partitions, records, size = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    client = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"
    extra = dict(kv.split("=", 1) for kv in sys.argv[7:])
    seconds = produce(bootstrap, topic, partitions, records, size) if mode == "produce" else consume(bootstrap, topic, partitions, records, extra)
    print(json.dumps({"client": client, "seconds": seconds, "records": records}))


def produce(bootstrap, topic, partitions, records, size):
    value = b"x" * size
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 1000000, "acks": 1})
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(err)

    t0 = time.perf_counter()
    for i in range(records):
        while True:
            try:
                p.produce(topic, value, partition=i % partitions, on_delivery=report)
                break
            except BufferError:
                p.poll(0.01)
        if i % 10000 == 0:
            p.poll(0)
    left = p.flush(60)
    produce_s = time.perf_counter() - t0
    if left or failed:
        print(f"produce failed: {left} undelivered, errors {failed[:3]}", file=sys.stderr)
        sys.exit(1)
    return produce_s


def consume(bootstrap, topic, partitions, records, extra):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-unused", "enable.auto.commit": False, **extra})
    c.assign([TopicPartition(topic, n, confluent_kafka.OFFSET_BEGINNING) for n in range(partitions)])
    got = 0
    t0 = time.perf_counter()
    deadline = time.time() + 120
    while got < records and time.time() < deadline:
        for m in c.consume(num_messages=10000, timeout=1.0):
            if m.error() is None:
                got += 1
    consume_s = time.perf_counter() - t0
    c.close()
    if got < records:
        print(f"consume read {got} of {records} records", file=sys.stderr)
        sys.exit(1)
    return consume_s


if __name__ == "__main__":
    main()
