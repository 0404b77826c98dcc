#!/usr/bin/env python3
"""confluent-kafka's ShareConsumer (2.15+) against a Kafka listener, for `sluice bench queue`:
read RECORDS records of TOPIC as one member of a share group, acknowledging each record on its
own (share.acknowledgement.mode=explicit, acknowledge(msg, ACCEPT) per record, commit_sync per
poll); or, as the peer in the same run, the same client's ordinary group consumer (subscribe,
commit per poll). The group is new and starts at the earliest offset (set beforehand through
IncrementalAlterConfigs). Prints one JSON line:

  {"client": "...", "seconds": ..., "records": N}

usage: share_bench.py share|group BOOTSTRAP TOPIC RECORDS GROUP
"""
import json
import sys
import time

import confluent_kafka
from confluent_kafka import Consumer


def main():
    mode, bootstrap, topic, records, group = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    client = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"
    seconds = share(bootstrap, topic, records, group) if mode == "share" else classic(bootstrap, topic, records, group)
    print(json.dumps({"client": client, "seconds": seconds, "records": records}))


def share(bootstrap, topic, records, group):
    from confluent_kafka import AcknowledgeType, ShareConsumer
    c = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group, "share.acknowledgement.mode": "explicit", "max.poll.records": 2000})
    c.subscribe([topic])
    got = 0
    t0 = None
    deadline = time.time() + 300
    while got < records and time.time() < deadline:
        batch = c.poll(1.0)
        n = 0
        for m in batch:
            if m.error() is None:
                c.acknowledge(m, AcknowledgeType.ACCEPT)
                n += 1
        if n and t0 is None:
            t0 = time.perf_counter()
        got += n
        if n:
            c.commit_sync()
    seconds = time.perf_counter() - (t0 or time.perf_counter())
    c.close()
    if got < records:
        print(f"share consumer read {got} of {records}", file=sys.stderr)
        sys.exit(1)
    return seconds


def classic(bootstrap, topic, records, group):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = 0
    t0 = None
    deadline = time.time() + 300
    while got < records and time.time() < deadline:
        msgs = c.consume(2000, 1.0)
        n = sum(1 for m in msgs if m.error() is None)
        if n and t0 is None:
            t0 = time.perf_counter()
        got += n
        if n:
            c.commit(asynchronous=False)
    seconds = time.perf_counter() - (t0 or time.perf_counter())
    c.close()
    if got < records:
        print(f"group consumer read {got} of {records}", file=sys.stderr)
        sys.exit(1)
    return seconds


if __name__ == "__main__":
    main()
