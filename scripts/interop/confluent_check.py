#!/usr/bin/env python3
"""Interop checks with confluent-kafka (the librdkafka bundled in its wheel) against a running
`sluice serve`. Prints one line per check and exits 1 at the first failure.

  idempotent   an idempotent producer (enable.idempotence) writes keyed records with the
               Java client's partitioner (murmur2_random)
  groups       three consumers share a 6-partition topic; one leaves, its partitions move
               to the other two; every record is read; offsets are committed and fetched
  transactions a transactional producer consumes, produces and sends its offsets in a
               transaction; an aborted transaction is never seen by a read_committed consumer
"""
import argparse
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def create(admin, name, partitions):
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for f in fs.values():
        f.result(10)


def drain(consumer, want, timeout=30):
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m)
    return got


def idempotent(bootstrap, keyed_out):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = "ck-idem-" + uuid.uuid4().hex[:6]
    create(admin, topic, 4)
    # All topics (an all-topics Metadata request) and one topic by name.
    listed = admin.list_topics(timeout=10)
    if topic not in listed.topics or len(listed.topics[topic].partitions) != 4:
        fail(f"list_topics: {topic} with 4 partitions not listed: {sorted(listed.topics)}")
    one = admin.list_topics(topic=topic, timeout=10)
    if list(one.topics) != [topic]:
        fail(f"list_topics(topic={topic}): {sorted(one.topics)}")
    print(f"ok admin: create_topics and list_topics (all topics: {len(listed.topics)}; one by name)")
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "partitioner": "murmur2_random", "linger.ms": 5})
    delivered = []
    for i in range(1000):
        p.produce(topic, key=f"key-{i % 37}", value=f"{i}", on_delivery=lambda err, m: delivered.append((err, m.key(), m.partition())))
    p.flush(30)
    errors = [e for e, _, _ in delivered if e is not None]
    if len(delivered) != 1000 or errors:
        fail(f"idempotent: {len(delivered)} delivered, errors {errors[:3]}")
    with open(keyed_out, "w") as f:
        for key in sorted({k.decode(): part for _, k, part in delivered}.items()):
            f.write(f"{key[0]} {key[1]}\n")
    print(f"ok idempotent: 1000 records acknowledged by an idempotent producer on topic {topic}")
    return topic


def groups(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = "ck-groups-" + uuid.uuid4().hex[:6]
    create(admin, topic, 6)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(600):
        p.produce(topic, key=str(i), value=str(i))
    p.flush(30)
    group = "ck-group-" + uuid.uuid4().hex[:6]
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    members = [Consumer(dict(conf)) for _ in range(3)]
    for c in members:
        c.subscribe([topic])
    # Poll all three until each owns two partitions.
    deadline = time.time() + 30
    seen = {}
    while time.time() < deadline:
        for c in members:
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen[(m.partition(), m.offset())] = m.value()
        sizes = [len(c.assignment()) for c in members]
        if sizes == [2, 2, 2]:
            break
    else:
        fail(f"groups: the three members never owned two partitions each: {[c.assignment() for c in members]}")
    print("ok groups: three members own two partitions each")
    leaver = members.pop()
    leaver.commit(asynchronous=False) if seen else None
    leaver.close()
    deadline = time.time() + 30
    while time.time() < deadline and len(seen) < 600:
        for c in members:
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen[(m.partition(), m.offset())] = m.value()
    owned = sorted(tp.partition for c in members for tp in c.assignment())
    if owned != [0, 1, 2, 3, 4, 5]:
        fail(f"groups: after one member left, the others own {owned}")
    if len(seen) != 600:
        fail(f"groups: read {len(seen)} of 600 records")
    print("ok groups: a member left, its partitions moved, all 600 records were read")
    # A partition that moved may be read again from its last commit by its new owner (nothing
    # was committed before the move): poll until the owners' positions reach every end.
    def positions():
        return sum(max(tp.offset, 0) for c in members for tp in c.position(c.assignment()))
    deadline = time.time() + 30
    while positions() < 600 and time.time() < deadline:
        for c in members:
            c.poll(0.1)
    for c in members:
        c.commit(asynchronous=False)
    committed = members[0].committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
    total = sum(tp.offset for tp in committed)
    if total != 600:
        fail(f"groups: committed offsets add up to {total}, not 600")
    for c in members:
        c.close()
    print("ok groups: committed offsets fetched back (sum 600)")


def transactions(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    src, out = "ck-src-" + uuid.uuid4().hex[:6], "ck-out-" + uuid.uuid4().hex[:6]
    create(admin, src, 2)
    create(admin, out, 2)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(100):
        p.produce(src, key=str(i), value=str(i))
    p.flush(30)
    group = "ck-txn-" + uuid.uuid4().hex[:6]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.subscribe([src])
    tp = Producer({"bootstrap.servers": bootstrap, "transactional.id": "ck-" + uuid.uuid4().hex[:6]})
    tp.init_transactions(30)
    # An aborted transaction first: its records must stay invisible.
    tp.begin_transaction()
    for i in range(10):
        tp.produce(out, key="aborted", value=f"aborted-{i}")
    tp.flush(30)
    tp.abort_transaction(30)
    records = drain(consumer, 100)
    if len(records) != 100:
        fail(f"transactions: consumed {len(records)} of 100 source records")
    tp.begin_transaction()
    for m in records:
        tp.produce(out, key=m.key(), value=b"copy-" + m.value())
    tp.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
    tp.commit_transaction(30)
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader-" + uuid.uuid4().hex[:6],
                       "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    reader.subscribe([out])
    copies = drain(reader, 100)
    time.sleep(1)
    extra = drain(reader, 1, timeout=2)
    values = [m.value() for m in copies + extra]
    if any(v.startswith(b"aborted") for v in values):
        fail("transactions: a read_committed consumer saw records of an aborted transaction")
    if sorted(values) != sorted(b"copy-" + str(i).encode() for i in range(100)):
        fail(f"transactions: read_committed consumer read {len(values)} records, expected the 100 copies")
    committed = consumer.committed([TopicPartition(src, 0), TopicPartition(src, 1)], timeout=10)
    if sum(t.offset for t in committed) != 100:
        fail(f"transactions: the group's committed offsets are {[t.offset for t in committed]}")
    raw = Consumer({"bootstrap.servers": bootstrap, "group.id": "raw-" + uuid.uuid4().hex[:6],
                    "auto.offset.reset": "earliest", "isolation.level": "read_uncommitted"})
    raw.subscribe([out])
    everything = drain(raw, 110)
    if len(everything) != 110:
        fail(f"transactions: read_uncommitted saw {len(everything)} records, expected 110 (10 aborted)")
    for c in (consumer, reader, raw):
        c.close()
    print("ok transactions: 100 copies committed with their offsets; 10 aborted records hidden from read_committed, seen by read_uncommitted")


def main():
    import confluent_kafka
    print(f"client confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}")
    a = argparse.ArgumentParser()
    a.add_argument("--bootstrap", required=True)
    a.add_argument("--keys-out", required=True, help="file for 'key partition' lines of the idempotent run")
    args = a.parse_args()
    try:
        idempotent(args.bootstrap, args.keys_out)
        groups(args.bootstrap)
        transactions(args.bootstrap)
    except KafkaException as e:
        fail(f"client error: {e}")


if __name__ == "__main__":
    main()
