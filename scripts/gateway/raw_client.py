"""A raw SocketCluster client over PyPI websockets, for the gateway's tests: a reader task
answers pings and queues everything else; calls match answers by cid."""
import asyncio
import json

import websockets


class Client:
    """A socket whose reader answers pings as they come and queues everything else."""

    def __init__(self, ws):
        self.ws = ws
        self.cid = 0
        self.pings = 0
        self.inbox = asyncio.Queue()
        self.stash = []
        self.close_exc = websockets.ConnectionClosed(None, None)
        self.reader = asyncio.get_running_loop().create_task(self.read())

    async def read(self):
        try:
            while True:
                # recv, not `async for`: a clean close (1000, 1001) ends the iteration without
                # telling its code, and recv raises ConnectionClosedOK with it.
                m = await self.ws.recv()
                if m == "":
                    self.pings += 1
                    await self.ws.send("")
                else:
                    await self.inbox.put(m)
        except websockets.ConnectionClosed as e:
            self.close_exc = e
        await self.inbox.put(None)

    @classmethod
    async def open(cls, url, token=None, handshake=True, **options):
        c = cls(await websockets.connect(url, max_size=None, ping_interval=None, **options))
        if handshake:
            r = await c.call("#handshake", {"authToken": token})
            c.handshake = r
        return c

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    async def text(self, timeout=10):
        m = await asyncio.wait_for(self.inbox.get(), timeout)
        if m is None:
            await self.inbox.put(None)
            raise self.close_exc
        return m

    async def recv(self, timeout=10):
        """The next packet that is not a ping (or one a call set aside)."""
        if self.stash:
            return self.stash.pop(0)
        return json.loads(await self.text(timeout))

    async def call(self, event, data=None, timeout=10):
        self.cid += 1
        p = {"event": event, "cid": self.cid}
        if data is not None:
            p["data"] = data
        await self.send(p)
        while True:
            r = json.loads(await self.text(timeout))
            if r.get("rid") == self.cid:
                return r
            self.stash.append(r)  # e.g. a delivery that overtook the answer

    async def closed(self, timeout=10):
        """Reads until the server closes; returns (code, reason)."""
        try:
            while True:
                await self.text(timeout)
        except websockets.ConnectionClosed as e:
            return (e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None)
        except asyncio.TimeoutError:
            return ("timeout", None)
