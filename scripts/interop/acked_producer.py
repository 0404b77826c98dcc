#!/usr/bin/env python3
"""Produces COUNT records ("v-000001", ...) with confluent-kafka (acks=all, idempotent) to a
one-partition TOPIC and appends the value of every record the broker acknowledged to ACKED,
one per line, as the acknowledgements arrive. The interop test SIGKILLs the server while this
runs, then checks that every acknowledged record survived. Usage:
acked_producer.py BOOTSTRAP TOPIC COUNT ACKED"""
import sys
import time

from confluent_kafka import Producer


def main():
    bootstrap, topic, count, acked_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    acked = open(acked_path, "a", buffering=1)
    failed = 0

    def report(err, msg):
        nonlocal failed
        if err is None:
            acked.write(msg.value().decode() + "\n")
        else:
            failed += 1

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 5000, "linger.ms": 2, "batch.num.messages": 200})
    for i in range(1, count + 1):
        while True:
            try:
                p.produce(topic, value=f"v-{i:06d}".encode(), partition=0, on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        if i % 200 == 0:
            p.poll(0)
            time.sleep(0.01)  # spread the run over a few seconds so the kill lands mid-stream
    p.flush(15)
    print(f"produced {count}, failed {failed}", flush=True)


if __name__ == "__main__":
    main()
