#!/usr/bin/env python3
"""Resuming from the log, against `sluice serve --ws ... --ws-buffer 64KiB`:

1. A subscriber sees one message, disconnects; 1,000 messages are published to its channel
   (and 1,000 to another channel, which shares partitions); it reconnects with the last
   offset it saw and must get exactly those 1,000, in order, then live ones.
2. A subscriber resumes from the start while 2,000 more are being published: every message
   once, in order, across the switch from the log to live delivery.
3. A subscriber that stops reading is closed with 4100 once its 64 KiB buffer fills; it
   reconnects from its last offset and gets the rest: nothing lost.

usage: resume_check.py ws://127.0.0.1:PORT/socketcluster/
"""
import asyncio
import json
import sys
import time

import websockets

from raw_client import Client

URL = sys.argv[1]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


async def publish_many(pub, channel, first, count, filler=None, batch=100):
    """Publishes {"n": first..first+count-1} to channel (and as many to filler), 100 invokes a frame."""
    n = first
    while n < first + count:
        packets = []
        for i in range(n, min(n + batch, first + count)):
            pub.cid += 1
            packets.append({"event": "#publish", "data": {"channel": channel, "data": {"n": i}}, "cid": pub.cid})
            if filler:
                pub.cid += 1
                packets.append({"event": "#publish", "data": {"channel": filler, "data": {"n": i}}, "cid": pub.cid})
        await pub.send(packets)
        last = pub.cid
        while True:
            r = await pub.recv()
            if "error" in r:
                fail("publish: " + json.dumps(r))
            if r.get("rid") == last:
                break
        n += batch


async def deliveries(c, channel, count, timeout=20):
    """The next `count` deliveries of `channel` as (n, offset)."""
    out = []
    deadline = time.time() + timeout
    while len(out) < count:
        m = await c.recv(max(0.1, deadline - time.time()))
        if m.get("event") == "#publish":
            if m["data"]["channel"] != channel:
                fail("a delivery of " + m["data"]["channel"] + " to a subscriber of " + channel)
            out.append((m["data"]["data"]["n"], m["data"]["offset"]))
    return out


def check_sequence(got, first, count, what):
    ns = [n for n, _ in got]
    if ns != list(range(first, first + count)):
        missing = sorted(set(range(first, first + count)) - set(ns))
        fail(what + ": %d messages, %d missing (first %s), %d duplicated" % (len(ns), len(missing), missing[:5], len(ns) - len(set(ns))))
    offsets = [o for _, o in got]
    if offsets != sorted(offsets) or len(set(offsets)) != len(offsets):
        fail(what + ": offsets out of order")


async def main():
    pub = await Client.open(URL)

    # 1. Disconnect, 1,000 published, resume with the last offset seen.
    sub = await Client.open(URL)
    await sub.call("#subscribe", {"channel": "room"})
    await publish_many(pub, "room", 0, 1)
    (n0, last), = await deliveries(sub, "room", 1)
    await sub.ws.close()
    await publish_many(pub, "room", 1, 1000, filler="other")
    sub = await Client.open(URL)
    r = await sub.call("#subscribe", {"channel": "room", "data": {"lastOffset": last}})
    if "error" in r:
        fail("resume subscribe: " + json.dumps(r))
    got = await deliveries(sub, "room", 1000)
    check_sequence(got, 1, 1000, "resume after 1,000")
    await publish_many(pub, "room", 1001, 1)
    live = await deliveries(sub, "room", 1)
    if live[0][0] != 1001 or live[0][1] <= got[-1][1]:
        fail("the live message after the resume: " + json.dumps(live))
    try:
        extra = await sub.recv(0.5)
        fail("more than expected after the resume: " + json.dumps(extra))
    except asyncio.TimeoutError:
        pass
    print("ok resumed: exactly the 1,000 messages published while away, in order, then the live one")

    # 2. Resume from the beginning while 2,000 more are published.
    sub2 = await Client.open(URL)
    producer = asyncio.get_running_loop().create_task(publish_many(pub, "room", 1002, 2000, batch=50))
    await asyncio.sleep(0.05)
    r = await sub2.call("#subscribe", {"channel": "room", "data": {"lastOffset": -1}})
    if "error" in r:
        fail("subscribe from the start: " + json.dumps(r))
    got = await deliveries(sub2, "room", 3002, timeout=60)
    await producer
    check_sequence(got, 0, 3002, "resume from the start during publishing")
    print("ok resumed from the start while 2,000 were published: 3,002 messages, each once, in order")

    # 3. A subscriber that stops reading: closed with 4100, then resumes without a loss.
    slow = await Client.open(URL, max_queue=1)
    await slow.call("#subscribe", {"channel": "firehose"})
    slow.reader.cancel()  # stop reading: the socket's buffers fill
    blob = "x" * 4000
    n = 0
    closed = None
    for round in range(40):
        pub.cid += 1
        packets = []
        for i in range(50):
            pub.cid += 1
            packets.append({"event": "#publish", "data": {"channel": "firehose", "data": {"n": n, "pad": blob}}})
            n += 1
        packets.append({"event": "#publish", "data": {"channel": "firehose", "data": {"n": n, "pad": blob}}, "cid": pub.cid})
        n += 1
        await pub.send(packets)
        while True:
            r = await pub.recv()
            if r.get("rid") == pub.cid:
                break
    total = n
    # Read what reached the client before the close.
    seen = []
    try:
        while True:
            m = await asyncio.wait_for(slow.ws.recv(), 10)
            if m == "":
                continue
            p = json.loads(m)
            if p.get("event") == "#publish":
                seen.append((p["data"]["data"]["n"], p["data"]["offset"]))
    except websockets.ConnectionClosed as e:
        closed = e.rcvd.code if e.rcvd else None
    except asyncio.TimeoutError:
        fail("the slow subscriber was never closed (%d of %d seen)" % (len(seen), total))
    if closed != 4100:
        fail("the slow subscriber was closed with %s, not 4100" % closed)
    if not seen or len(seen) >= total:
        fail("the slow subscriber saw %d of %d before the close" % (len(seen), total))
    check_sequence(seen, 0, len(seen), "before the 4100 close")
    again = await Client.open(URL)
    await again.call("#subscribe", {"channel": "firehose", "data": {"lastOffset": seen[-1][1]}})
    rest = await deliveries(again, "firehose", total - len(seen), timeout=60)
    check_sequence(seen + rest, 0, total, "the slow subscriber after resuming")
    print("ok a subscriber that stopped reading was closed with 4100 after %d of %d messages and resumed the other %d" % (len(seen), total, len(rest)))


asyncio.run(main())
