#!/usr/bin/env python3
"""Two gateway processes on one channel topic: A is `sluice serve --ws` (it owns the data), B is
`sluice serve --ws --broker kafka://<A's Kafka listener>`. A message published through one
reaches subscribers connected to the other, in order; a subscriber of B resumes from the log.

usage: cross_process_check.py ws://A/socketcluster/ ws://B/socketcluster/
"""
import asyncio
import json
import sys

from raw_client import Client

A, B = sys.argv[1], sys.argv[2]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


async def publish(pub, channel, first, count):
    for n in range(first, first + count):
        r = await pub.call("#publish", {"channel": channel, "data": {"n": n}})
        if "error" in r:
            fail("publish: " + json.dumps(r))


async def received(sub, channel, count, timeout=30):
    got = []
    while len(got) < count:
        m = await sub.recv(timeout)
        if m.get("event") == "#publish" and m["data"]["channel"] == channel:
            got.append((m["data"]["data"]["n"], m["data"]["offset"]))
    return got


async def main():
    for (sub_url, pub_url, what) in [(A, B, "published through B, subscribed on A"), (B, A, "published through A, subscribed on B")]:
        channel = "x-" + what[-1]
        sub = await Client.open(sub_url)
        r = await sub.call("#subscribe", {"channel": channel})
        if "error" in r:
            fail("subscribe: " + json.dumps(r))
        pub = await Client.open(pub_url)
        await publish(pub, channel, 0, 100)
        got = await received(sub, channel, 100)
        if [n for n, _ in got] != list(range(100)):
            fail(what + ": " + json.dumps(got[:10]))
        print("ok " + what + ": 100 messages in order")
        await sub.ws.close()
        await pub.ws.close()
    # Resume on B (a Kafka consumer reads the history) while A publishes.
    sub = await Client.open(B)
    await sub.call("#subscribe", {"channel": "r"})
    pub = await Client.open(A)
    await publish(pub, "r", 0, 1)
    (_, last), = await received(sub, "r", 1)
    await sub.ws.close()
    await publish(pub, "r", 1, 200)
    sub = await Client.open(B)
    await sub.call("#subscribe", {"channel": "r", "data": {"lastOffset": last}})
    got = await received(sub, "r", 200)
    if [n for n, _ in got] != list(range(1, 201)):
        fail("resume on B: " + json.dumps(got[:10]))
    await publish(pub, "r", 201, 1)
    live = await received(sub, "r", 1)
    if live[0][0] != 201:
        fail("live after the resume on B: " + json.dumps(live))
    print("ok a subscriber of B resumed the 200 messages published through A while it was away, then live")


asyncio.run(main())
