#!/usr/bin/env python3
"""Holds one subscribed socket open and prints how the server closed it.

usage: hold_socket.py ws://127.0.0.1:PORT/socketcluster/
"""
import asyncio
import sys

from raw_client import Client


async def main():
    c = await Client.open(sys.argv[1])
    await c.call("#subscribe", {"channel": "room.x"})
    print("holding", flush=True)
    code, reason = await c.closed(120)
    print("closed %s %s" % (code, reason), flush=True)


asyncio.run(main())
