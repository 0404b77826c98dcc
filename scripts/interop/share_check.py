#!/usr/bin/env python3
"""Share-group (KIP-932) checks with confluent-kafka's ShareConsumer (2.15 and later) against a
running `sluice serve`. Prints one line per check and exits 1 at the first failure.

  share      three share consumers on one 1-partition topic (more workers than partitions)
             process every record exactly once between them, and more than one gets work
  redeliver  a member that acquired records is stopped (SIGSTOP): after the lock runs out
             another member gets them, delivery count 2; a member killed with SIGKILL has its
             records released when its connection drops
  reject     explicit acknowledgement: a record rejected with AcknowledgeType.REJECT is never
             delivered again and lands in the dead-letter topic with headers saying why
  deadletter a record released share.delivery.count.limit times reaches the dead-letter topic

Group configs are set the way Kafka users set them: AdminClient.incremental_alter_configs on a
GROUP resource (share.auto.offset.reset, share.record.lock.duration.ms,
share.delivery.count.limit, errors.deadletterqueue.topic.name).
"""
import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                   ResourceType)

try:
    from confluent_kafka import AcknowledgeType, ShareConsumer
except ImportError:
    print("SKIP confluent-kafka %s has no ShareConsumer (it came in 2.15)" % __import__("confluent_kafka").version()[0])
    sys.exit(0)


def fail(msg):
    print("FAIL " + msg, flush=True)
    sys.exit(1)


def ok(msg):
    print("OK " + msg, flush=True)


def create(admin, name, partitions=1):
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        f.result(10)


def configure(admin, group, **configs):
    entries = [ConfigEntry(k.replace("_", "."), str(v), incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()]
    for f in admin.incremental_alter_configs([ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)]).values():
        f.result(10)


def produce(bootstrap, topic, values):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for v in values:
        p.produce(topic, value=v.encode())
    if p.flush(15) != 0:
        fail("records were not all delivered to " + topic)


def share_consumer(bootstrap, group, topic, **extra):
    conf = {"bootstrap.servers": bootstrap, "group.id": group}
    conf.update({k.replace("_", "."): v for k, v in extra.items()})
    c = ShareConsumer(conf)
    c.subscribe([topic])
    return c


def records(batch):
    return [m for m in batch if m.error() is None]


def dead_letters(bootstrap, topic, want, timeout=20):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "dlq-reader-" + uuid.uuid4().hex[:6], "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append((m.value().decode(), {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}))
    c.close()
    return got


def check_share(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topic, group = "jobs-" + uuid.uuid4().hex[:8], "workers-" + uuid.uuid4().hex[:6]
    create(admin, topic)
    configure(admin, group, share_auto_offset_reset="earliest")
    total = 3000
    produce(args.bootstrap, topic, ["job-%d" % i for i in range(total)])
    seen, lock = {}, threading.Lock()
    errors = []

    def work(name):
        c = share_consumer(args.bootstrap, group, topic)
        idle_until = time.time() + 30
        try:
            while time.time() < idle_until:
                with lock:
                    if len(seen) >= total:
                        break
                for m in records(c.poll(0.5)):
                    if m.delivery_count() != 1:
                        errors.append("%s delivered %d times" % (m.value(), m.delivery_count()))
                    with lock:
                        seen.setdefault(m.value().decode(), []).append(name)
                    time.sleep(0.0002)  # some work, so the three take turns
            # librdkafka's close() releases what the last poll delivered; commit it first.
            c.commit_sync()
        finally:
            c.close()

    threads = [threading.Thread(target=work, args=("w%d" % i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        fail("share: " + errors[0])
    if len(seen) != total:
        fail("share: %d of %d records were processed" % (len(seen), total))
    twice = [v for v, who in seen.items() if len(who) > 1]
    if twice:
        fail("share: %d records went to two members, e.g. %s to %s" % (len(twice), twice[0], seen[twice[0]]))
    per = {}
    for who in seen.values():
        per[who[0]] = per.get(who[0], 0) + 1
    if len(per) < 2:
        fail("share: one member got every record: %s" % per)
    ok("share: 3 members on 1 partition processed %d records exactly once between them (%s)" % (total, ", ".join("%s %d" % kv for kv in sorted(per.items()))))


def hold(args):
    """Child: acquire records, say how many, then wait to be stopped or killed."""
    c = share_consumer(args.bootstrap, args.group, args.topic)
    deadline = time.time() + 20
    while time.time() < deadline:
        got = records(c.poll(0.5))
        if got:
            print("HELD %d" % len(got), flush=True)
            time.sleep(120)
    print("HELD 0", flush=True)


def start_holder(args, group, topic):
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--bootstrap", args.bootstrap, "hold", "--group", group, "--topic", topic],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if not line.startswith("HELD ") or line == "HELD 0":
        p.kill()
        fail("redeliver: the holding member acquired nothing (%r)" % line)
    return p, int(line.split()[1])


def drain(c, want, timeout=20):
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        got += records(c.poll(0.5))
    return got


def check_redeliver(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topic, group = "jobs-" + uuid.uuid4().hex[:8], "redeliver-" + uuid.uuid4().hex[:6]
    create(admin, topic)
    configure(admin, group, share_auto_offset_reset="earliest", share_record_lock_duration_ms=1500)
    produce(args.bootstrap, topic, ["job-%d" % i for i in range(40)])
    # Stopped, not killed: its connection stays open, so only the lock's expiry frees the records.
    holder, held = start_holder(args, group, topic)
    holder.send_signal(signal.SIGSTOP)
    other = share_consumer(args.bootstrap, group, topic)
    started = time.time()
    got = drain(other, held)
    waited = time.time() - started
    holder.kill()
    holder.wait()
    if len(got) < held:
        fail("redeliver: %d of the %d records held by a stopped member came back" % (len(got), held))
    counts = sorted({m.delivery_count() for m in got})
    if counts != [2]:
        fail("redeliver: redelivered records have delivery counts %s, not [2]" % counts)
    if waited < 1.0:
        fail("redeliver: records came back after %.2f s, before the 1.5 s lock ran out" % waited)
    other.commit_sync()
    other.close()
    ok("redeliver: %d records held by a stopped member went to another after its lock ran out (%.1f s), delivery count 2" % (held, waited))
    # Killed: the connection drops and its records are released at once.
    produce(args.bootstrap, topic, ["more-%d" % i for i in range(20)])
    configure(admin, group, share_record_lock_duration_ms=60000)
    holder, held = start_holder(args, group, topic)
    holder.kill()
    holder.wait()
    other = share_consumer(args.bootstrap, group, topic)
    started = time.time()
    got = drain(other, held, timeout=30)
    waited = time.time() - started
    other.close()
    if len(got) < held:
        fail("redeliver: %d of the %d records of a killed member came back" % (len(got), held))
    if waited > 20:
        fail("redeliver: the killed member's records took %.1f s to come back (lock 60 s; the dropped connection should free them)" % waited)
    ok("redeliver: a member killed with SIGKILL had its %d records handed to another in %.1f s (lock 60 s)" % (held, waited))


def check_reject(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topic, group = "jobs-" + uuid.uuid4().hex[:8], "reject-" + uuid.uuid4().hex[:6]
    dlq = topic + ".dlq"
    create(admin, topic)
    configure(admin, group, share_auto_offset_reset="earliest", errors_deadletterqueue_topic_name=dlq, share_record_lock_duration_ms=1000)
    produce(args.bootstrap, topic, ["job-%d" % i for i in range(10)])
    c = share_consumer(args.bootstrap, group, topic, share_acknowledgement_mode="explicit")
    done = set()
    deadline = time.time() + 20
    while len(done) < 10 and time.time() < deadline:
        for m in records(c.poll(0.5)):
            v = m.value().decode()
            c.acknowledge(m, AcknowledgeType.REJECT if v == "job-3" else AcknowledgeType.ACCEPT)
            if v in done:
                fail("reject: %s was delivered again after it was settled" % v)
            done.add(v)
        c.commit_sync()
    if len(done) != 10:
        fail("reject: %d of 10 records were delivered" % len(done))
    # Nothing comes back, not even after the lock duration.
    again = drain(c, 1, timeout=3)
    c.close()
    if again:
        fail("reject: %s was delivered again" % again[0].value())
    letters = dead_letters(args.bootstrap, dlq, 1)
    if [v for v, _ in letters] != ["job-3"]:
        fail("reject: the dead-letter topic holds %s, not [job-3]" % [v for v, _ in letters])
    h = letters[0][1]
    if h.get("sluice.dlq.reason") != "rejected" or h.get("sluice.dlq.topic") != topic or h.get("sluice.dlq.offset") != "3":
        fail("reject: the dead letter's headers are %s" % h)
    ok("reject: REJECT archived job-3 (never delivered again) and put it in %s with reason rejected, offset 3" % dlq)


def check_deadletter(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topic, group = "jobs-" + uuid.uuid4().hex[:8], "poison-" + uuid.uuid4().hex[:6]
    dlq = topic + ".dlq"
    create(admin, topic)
    configure(admin, group, share_auto_offset_reset="earliest", errors_deadletterqueue_topic_name=dlq, share_delivery_count_limit=3)
    produce(args.bootstrap, topic, ["ok-0", "poison", "ok-2"])
    c = share_consumer(args.bootstrap, group, topic, share_acknowledgement_mode="explicit")
    deliveries = {}
    deadline = time.time() + 30
    while time.time() < deadline:
        for m in records(c.poll(0.5)):
            v = m.value().decode()
            deliveries[v] = m.delivery_count()
            c.acknowledge(m, AcknowledgeType.RELEASE if v == "poison" else AcknowledgeType.ACCEPT)
        c.commit_sync()
        if deliveries.get("poison") == 3 and len(deliveries) == 3:
            break
    extra = drain(c, 1, timeout=2)
    c.close()
    if deliveries.get("poison") != 3:
        fail("deadletter: the poison record was delivered %s times, not 3" % deliveries.get("poison"))
    if extra:
        fail("deadletter: %s was delivered after the limit" % extra[0].value())
    letters = dead_letters(args.bootstrap, dlq, 1)
    if len(letters) != 1 or letters[0][0] != "poison":
        fail("deadletter: the dead-letter topic holds %s" % [v for v, _ in letters])
    h = letters[0][1]
    if h.get("sluice.dlq.reason") != "delivery-limit" or h.get("sluice.dlq.delivery.count") != "3":
        fail("deadletter: the dead letter's headers are %s" % h)
    ok("deadletter: released 3 times (share.delivery.count.limit=3), the poison record went to %s with reason delivery-limit" % dlq)


def check_configs(args):
    """Group configs the broker refuses come back as INVALID_CONFIG with a sentence naming the
    setting; a refused change leaves the group's settings as they were."""
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    group = "cfg-" + uuid.uuid4().hex[:8]
    configure(admin, group, share_record_lock_duration_ms=2000)
    cases = [
        ({"share.record.lock.duration.ms": "soon"}, "share.record.lock.duration.ms must be a whole number, not 'soon'"),
        ({"share.record.lock.duration.ms": "5"}, "lock duration 5 ms is outside 100 ms...1 h"),
        ({"share.auto.offset.reset": "by_duration:PT1H"}, "share.auto.offset.reset must be earliest or latest"),
        ({"share.colour": "blue"}, "'share.colour' is not a share group config"),
    ]
    for configs, expected in cases:
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()]
        try:
            for f in admin.incremental_alter_configs([ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)]).values():
                f.result(10)
            fail("configs: %s was accepted" % configs)
        except KafkaException as e:
            err = e.args[0]
            if err.code() != KafkaError.INVALID_CONFIG or expected not in err.str():
                fail("configs: %s was refused with %s %r, not INVALID_CONFIG naming %r" % (configs, err.name(), err.str(), expected))
            ok("configs: %s refused: %s" % (configs, err.str()))
    described = admin.describe_configs([ConfigResource(ResourceType.GROUP, group)])
    values = {k: v.value for k, v in list(described.values())[0].result(10).items()}
    if values.get("share.record.lock.duration.ms") != "2000":
        fail("configs: after the refusals the lock duration is %r, not 2000" % values.get("share.record.lock.duration.ms"))
    ok("configs: the refusals left the group's settings as they were (lock 2000 ms)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    sub = ap.add_subparsers(dest="check", required=True)
    for name in ("share", "redeliver", "reject", "deadletter", "configs", "all"):
        sub.add_parser(name)
    h = sub.add_parser("hold")
    h.add_argument("--group", required=True)
    h.add_argument("--topic", required=True)
    args = ap.parse_args()
    checks = {"share": check_share, "redeliver": check_redeliver, "reject": check_reject, "deadletter": check_deadletter, "configs": check_configs}
    if args.check == "hold":
        hold(args)
    elif args.check == "all":
        for f in checks.values():
            f(args)
    else:
        checks[args.check](args)


if __name__ == "__main__":
    main()
