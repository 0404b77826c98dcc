#!/usr/bin/env python3
"""KIP-848 checks with confluent-kafka consumers on `group.protocol=consumer` against a running
`sluice serve` (started with a short --group-heartbeat-interval). Prints one line per check and
exits 1 at the first failure.

  rebalance  three consumers share a 6-partition topic (two partitions each, assigned by the
             broker); one leaves and the other two take its partitions without revoking any of
             their own; a fourth joins and exactly the partitions that move to it are revoked;
             every record is read and committed offsets (OffsetCommit with the member epoch)
             read back
  migrate    two classic-protocol consumers (cooperative-sticky) share a 6-partition topic; a
             consumer-protocol member joins (the broker upgrades the group online) and the
             three share it, the classic members revoking only what moves to the newcomer; it
             leaves (the group is downgraded) and the classic pair owns all six again; every
             record is read
"""
import argparse
import os
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def fail(msg):
    print("FAIL " + msg, flush=True)
    os._exit(1)  # consumer threads are still polling


def ok(msg):
    print("OK " + msg, flush=True)


class Member:
    """A consumer polled in its own thread, recording what it is given and what it revokes."""

    def __init__(self, bootstrap, group, topic, name, protocol="consumer"):
        self.name = name
        self.owned = set()
        self.revoked = []
        self.values = []
        self.refused = []
        self.assigns = []
        self.lock = threading.Lock()
        self.stop = False
        settings = {"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": protocol,
                    "auto.offset.reset": "earliest", "enable.auto.commit": False}
        if protocol == "classic":
            settings.update({"partition.assignment.strategy": "cooperative-sticky", "session.timeout.ms": 10000,
                             "heartbeat.interval.ms": 300})
        self.c = Consumer(settings)
        self.c.subscribe([topic], on_assign=self.assigned, on_revoke=self.revoking)
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def assigned(self, consumer, parts):
        with self.lock:
            self.owned |= {p.partition for p in parts}
            self.assigns.append({p.partition for p in parts})

    def revoking(self, consumer, parts):
        with self.lock:
            gone = {p.partition for p in parts}
            self.revoked.append(gone)
            self.owned -= gone
        try:
            consumer.commit(asynchronous=False)
        except Exception:
            pass

    def run(self):
        while not self.stop:
            m = self.c.poll(0.2)
            if m is not None and m.error() is None:
                with self.lock:
                    self.values.append(m.value().decode())
                try:
                    self.c.commit(message=m, asynchronous=False)
                except KafkaException as e:
                    # A commit can be refused while the member's epoch moves on (or after its
                    # partition moved away); the next commit, or the new owner, covers it.
                    with self.lock:
                        self.refused.append(str(e))

    def close(self):
        self.stop = True
        self.thread.join()
        self.c.close()

    def snapshot(self):
        with self.lock:
            return set(self.owned), [set(r) for r in self.revoked], list(self.values)


def wait_for(members, want, timeout=40, check="rebalance"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        owned = {m.name: m.snapshot()[0] for m in members}
        if all(len(o) == want for o in owned.values()):
            union = set().union(*owned.values())
            if len(union) == 6 and sum(len(o) for o in owned.values()) == 6:
                return owned
        time.sleep(0.2)
    fail(check + ": members did not settle at %d partitions each: %s" % (want, {m.name: sorted(m.snapshot()[0]) for m in members}))


def check_rebalance(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topic, group = "kip848-" + uuid.uuid4().hex[:8], "kip848-" + uuid.uuid4().hex[:6]
    for f in admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)]).values():
        f.result(10)
    p = Producer({"bootstrap.servers": args.bootstrap})
    for i in range(600):
        p.produce(topic, value=b"r%d" % i, partition=i % 6)
    p.flush(10)
    members = [Member(args.bootstrap, group, topic, "m%d" % i) for i in range(3)]
    first = wait_for(members, 2)
    ok("rebalance: three consumer-protocol members own two partitions each: %s" % {k: sorted(v) for k, v in sorted(first.items())})
    marks = {m.name: len(m.snapshot()[1]) for m in members}
    leaving = members.pop()
    leaving.close()
    second = wait_for(members, 3)
    for m in members:
        later = [r for r in m.snapshot()[1][marks[m.name]:] if r]
        if later:
            fail("rebalance: %s revoked %s when %s left; only moved partitions may be revoked" % (m.name, later, leaving.name))
        if not first[m.name] <= second[m.name]:
            fail("rebalance: %s lost partitions it kept: %s -> %s" % (m.name, sorted(first[m.name]), sorted(second[m.name])))
    ok("rebalance: %s left; the other two took its partitions and revoked none of their own: %s" % (leaving.name, {k: sorted(v) for k, v in sorted(second.items())}))
    marks = {m.name: len(m.snapshot()[1]) for m in members}
    newcomer = Member(args.bootstrap, group, topic, "m9")
    members.append(newcomer)
    third = wait_for(members, 2)
    moved = set()
    for m in members[:-1]:
        gone = set().union(*m.snapshot()[1][marks[m.name]:]) if m.snapshot()[1][marks[m.name]:] else set()
        if gone != second[m.name] - third[m.name]:
            fail("rebalance: %s revoked %s but only %s moved away from it" % (m.name, sorted(gone), sorted(second[m.name] - third[m.name])))
        moved |= gone
    if moved != third["m9"]:
        fail("rebalance: revoked %s, but the newcomer got %s" % (sorted(moved), sorted(third["m9"])))
    ok("rebalance: a fourth member joined; exactly the partitions that moved to it were revoked: %s" % sorted(moved))
    deadline = time.time() + 30
    while time.time() < deadline:
        values = set()
        for m in members + [leaving]:
            values |= set(m.snapshot()[2])
        if len(values) == 600:
            break
        time.sleep(0.2)
    if len(values) != 600:
        fail("rebalance: %d of 600 records were read" % len(values))
    for m in members:
        m.close()
    check = Consumer({"bootstrap.servers": args.bootstrap, "group.id": group, "group.protocol": "consumer"})
    committed = check.committed([TopicPartition(topic, i) for i in range(6)], timeout=10)
    check.close()
    if sum(tp.offset for tp in committed) != 600:
        fail("rebalance: committed offsets add up to %d, not 600: %s" % (sum(tp.offset for tp in committed), [(tp.partition, tp.offset) for tp in committed]))
    ok("rebalance: all 600 records read; committed offsets read back (%s)" % [tp.offset for tp in committed])


def check_migrate(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topic, group = "migrate-" + uuid.uuid4().hex[:8], "migrate-" + uuid.uuid4().hex[:6]
    for f in admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)]).values():
        f.result(10)
    p = Producer({"bootstrap.servers": args.bootstrap})
    for i in range(600):
        p.produce(topic, value=b"r%d" % i, partition=i % 6)
    p.flush(10)
    # One classic member first, then a second (a cooperative hand-over before any migration).
    classic = [Member(args.bootstrap, group, topic, "c0", protocol="classic")]
    wait_for(classic, 6, timeout=60, check="migrate")
    classic.append(Member(args.bootstrap, group, topic, "c1", protocol="classic"))
    first = wait_for(classic, 3, timeout=60, check="migrate")
    ok("migrate: two classic members own three partitions each: %s" % {k: sorted(v) for k, v in sorted(first.items())})
    marks = {m.name: len(m.snapshot()[1]) for m in classic}
    newcomer = Member(args.bootstrap, group, topic, "k1")
    members = classic + [newcomer]
    second = wait_for(members, 2, timeout=60, check="migrate")
    moved = set()
    for m in classic:
        gone = set().union(*m.snapshot()[1][marks[m.name]:]) if m.snapshot()[1][marks[m.name]:] else set()
        if not gone <= first[m.name] - second[m.name]:
            fail("migrate: classic member %s revoked %s but only %s moved away from it" % (m.name, sorted(gone), sorted(first[m.name] - second[m.name])))
        if not second[m.name] <= first[m.name]:
            fail("migrate: classic member %s was given %s it did not own before" % (m.name, sorted(second[m.name] - first[m.name])))
        moved |= first[m.name] - second[m.name]
    if moved != second["k1"]:
        fail("migrate: the classic members gave up %s, but the consumer-protocol member got %s" % (sorted(moved), sorted(second["k1"])))
    ok("migrate: a consumer-protocol member joined the classic group; the three share it and only the partitions it took moved: %s" % {k: sorted(v) for k, v in sorted(second.items())})
    newcomer.close()
    third = wait_for(classic, 3, timeout=60, check="migrate")
    ok("migrate: the consumer-protocol member left; the classic members own all six again: %s" % {k: sorted(v) for k, v in sorted(third.items())})
    deadline = time.time() + 30
    while time.time() < deadline:
        values = set()
        for m in members:
            values |= set(m.snapshot()[2])
        if len(values) == 600:
            break
        time.sleep(0.2)
    if len(values) != 600:
        fail("migrate: %d of 600 records were read" % len(values))
    for m in classic:
        m.close()
    ok("migrate: all 600 records read")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("check", choices=["rebalance", "migrate"])
    args = ap.parse_args()
    {"rebalance": check_rebalance, "migrate": check_migrate}[args.check](args)


if __name__ == "__main__":
    main()
