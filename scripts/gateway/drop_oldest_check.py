#!/usr/bin/env python3
"""The drop-oldest policy, against `sluice serve --ws ... --ws-slow drop-oldest --ws-buffer 64KiB`:
a subscriber that stops reading is not closed; when it reads again it gets messages in order,
without the oldest ones that did not fit, up to the newest.

usage: drop_oldest_check.py ws://127.0.0.1:PORT/socketcluster/
"""
import asyncio
import json
import sys

import websockets

from raw_client import Client

URL = sys.argv[1]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


async def main():
    pub = await Client.open(URL)
    slow = await Client.open(URL, max_queue=1)
    await slow.call("#subscribe", {"channel": "firehose"})
    slow.reader.cancel()
    blob = "x" * 4000
    n = 0
    for _ in range(40):
        packets = []
        for _ in range(50):
            packets.append({"event": "#publish", "data": {"channel": "firehose", "data": {"n": n, "pad": blob}}})
            n += 1
        pub.cid += 1
        packets.append({"event": "#publish", "data": {"channel": "firehose", "data": {"n": n, "pad": blob}}, "cid": pub.cid})
        n += 1
        await pub.send(packets)
        while (await pub.recv()).get("rid") != pub.cid:
            pass
    total = n
    await asyncio.sleep(1)
    seen = []
    try:
        while not seen or seen[-1] != total - 1:
            m = await asyncio.wait_for(slow.ws.recv(), 10)
            if m == "":
                await slow.ws.send("")
                continue
            p = json.loads(m)
            if p.get("event") == "#publish":
                seen.append(p["data"]["data"]["n"])
    except websockets.ConnectionClosed as e:
        fail("the slow subscriber was closed (%s) under drop-oldest after %d messages" % (e, len(seen)))
    except asyncio.TimeoutError:
        fail("the newest message never came (%d seen, last %s)" % (len(seen), seen[-1:]))
    if seen != sorted(set(seen)):
        fail("out of order or duplicated")
    if len(seen) >= total:
        fail("nothing was dropped (%d of %d): the buffer did not fill" % (len(seen), total))
    print("ok drop-oldest: the slow subscriber stayed connected and got %d of %d messages, in order, ending with the newest" % (len(seen), total))


asyncio.run(main())
