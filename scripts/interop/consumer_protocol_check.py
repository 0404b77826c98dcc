#!/usr/bin/env python3
"""KIP-848 checks with confluent-kafka consumers on `group.protocol=consumer` against a running
`sluice serve` (started with a short --group-heartbeat-interval). Prints one line per check and
exits 1 at the first failure.

  rebalance  three consumers share a 6-partition topic (two partitions each, assigned by the
             broker); one leaves and the other two take its partitions without revoking any of
             their own; a fourth joins and exactly the partitions that move to it are revoked;
             every record is read and committed offsets (OffsetCommit with the member epoch)
             read back
"""
import argparse
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def fail(msg):
    print("FAIL " + msg, flush=True)
    sys.exit(1)


def ok(msg):
    print("OK " + msg, flush=True)


class Member:
    """A consumer polled in its own thread, recording what it is given and what it revokes."""

    def __init__(self, bootstrap, group, topic, name):
        self.name = name
        self.owned = set()
        self.revoked = []
        self.values = []
        self.refused = []
        self.lock = threading.Lock()
        self.stop = False
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
                           "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.c.subscribe([topic], on_assign=self.assigned, on_revoke=self.revoking)
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def assigned(self, consumer, parts):
        with self.lock:
            self.owned |= {p.partition for p in parts}

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


def wait_for(members, want, timeout=40):
    deadline = time.time() + timeout
    while time.time() < deadline:
        owned = {m.name: m.snapshot()[0] for m in members}
        if all(len(o) == want for o in owned.values()):
            union = set().union(*owned.values())
            if len(union) == 6 and sum(len(o) for o in owned.values()) == 6:
                return owned
        time.sleep(0.2)
    fail("rebalance: members did not settle at %d partitions each: %s" % (want, {m.name: sorted(m.snapshot()[0]) for m in members}))


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("check", choices=["rebalance"])
    args = ap.parse_args()
    check_rebalance(args)


if __name__ == "__main__":
    main()
