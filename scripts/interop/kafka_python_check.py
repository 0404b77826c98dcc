#!/usr/bin/env python3
"""Interop checks with kafka-python against a running `sluice serve`: topic admin
(create, list, delete), keyed produce with acks=all, consume in a group with commits, and a
second group run that continues from the committed offsets. Exits 1 at the first failure."""
import sys
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def main():
    bootstrap = sys.argv[1]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    topic = "kp-" + uuid.uuid4().hex[:6]
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    if topic not in admin.list_topics():
        fail(f"admin: {topic} not listed after create")
    print("ok admin: created and listed", topic)
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(90):
        p.send(topic, key=f"k{i % 9}".encode(), value=f"v{i}".encode(), headers=[("n", str(i).encode())])
    p.flush()
    group = "kpg-" + uuid.uuid4().hex[:6]
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=4000, max_poll_records=40)
    first = []
    for m in c:
        first.append(m)
        if len(first) == 40:
            break
    c.commit()
    c.close()
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=4000)
    rest = list(c)
    c.commit()
    values = sorted(m.value for m in first + rest)
    if values != sorted(f"v{i}".encode() for i in range(90)):
        fail(f"consume: read {len(first)} + {len(rest)} records, expected the 90 produced once each")
    if not all(dict(m.headers).get("n") == m.value[1:] for m in first + rest):
        fail("consume: headers did not travel with their records")
    # Per key, values in produce order.
    by_key = {}
    for m in sorted(first + rest, key=lambda m: (m.partition, m.offset)):
        by_key.setdefault(m.key, []).append(int(m.value[1:]))
    if any(v != sorted(v) for v in by_key.values()):
        fail("consume: per-key order was not kept")
    committed = sum(c.committed(TopicPartition(topic, p)) or 0 for p in range(3))
    c.close()
    if committed != 90:
        fail(f"groups: committed offsets add up to {committed}")
    print(f"ok produce/consume/groups: 90 records with headers, {len(first)} then {len(rest)} in two group runs, offsets committed")
    admin.delete_topics([topic])
    if topic in admin.list_topics():
        fail("admin: topic still listed after delete")
    print("ok admin: deleted", topic)


if __name__ == "__main__":
    main()
