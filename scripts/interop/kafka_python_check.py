#!/usr/bin/env python3
"""Interop checks with kafka-python against a running `sluice serve`: topic admin
(create, list, describe configs, add partitions, delete; describe, list by state, fetch offsets
of and delete groups), keyed produce with acks=all, consume in a group with commits, and a
second group run that continues from the committed offsets. Exits 1 at the first failure."""
import sys
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic


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
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    text = str(configs)
    if "retention.ms" not in text:
        fail(f"admin: describe_configs did not list retention.ms: {text[:300]}")
    print("ok admin: described the topic's configs")
    admin.create_partitions({topic: NewPartitions(total_count=5)})
    meta = KafkaConsumer(bootstrap_servers=bootstrap)
    parts = meta.partitions_for_topic(topic)
    meta.close()
    if parts != {0, 1, 2, 3, 4}:
        fail(f"admin: after create_partitions the topic has {parts}")
    print("ok admin: grew the topic to 5 partitions")
    described = str(admin.describe_groups([group]))
    if group not in described or "Empty" not in described:
        fail(f"admin: describe_groups did not describe the (now empty) group: {described[:300]}")
    listed = admin.list_group_offsets({group: None, group + "-none": None})
    offsets = listed.get(group, {})
    if sum(o.offset for o in offsets.values()) != 90 or listed.get(group + "-none"):
        fail(f"admin: list_group_offsets for two groups at once gave {listed}")
    empty = str(admin.list_groups(states_filter=["Empty"]))
    if group not in empty or group in str(admin.list_groups(states_filter=["Stable"])):
        fail(f"admin: list_groups by state gave {empty[:300]}")
    print("ok admin: described the group, listed it by state, fetched its offsets with another group's in one request (sum 90)")
    admin.delete_groups([group])
    if group in str(admin.list_groups()):
        fail("admin: the group is still listed after delete_groups")
    print("ok admin: deleted the consumer group")
    admin.delete_topics([topic])
    if topic in admin.list_topics():
        fail("admin: topic still listed after delete")
    print("ok admin: deleted", topic)


if __name__ == "__main__":
    main()
