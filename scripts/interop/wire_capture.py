#!/usr/bin/env python3
"""A recording TCP relay for the Kafka protocol, used by the interop tests.

    wire_capture.py --listen PORT --upstream HOST:PORT --out FILE.jsonl

Start `sluice serve --kafka HOST:UPSTREAM --advertise 127.0.0.1:PORT` so that clients that
bootstrap through the relay also reconnect through it. Every request frame a client sends
and the response frame that answers it are written to FILE as one JSON line:
{"api": key, "version": v, "client": client id, "request": hex, "response": hex}
(response is null for acks=0 produces). The tests read it to see which API versions real
clients chose and to harvest golden byte fixtures. Prints "listening" on stderr once bound."""
import argparse
import asyncio
import json
import struct
import sys


async def read_frame(reader):
    head = await reader.readexactly(4)
    (size,) = struct.unpack(">i", head)
    return head + await reader.readexactly(size)


def describe(frame):
    api, version, correlation = struct.unpack(">hhi", frame[4:12])
    (n,) = struct.unpack(">h", frame[12:14])
    client = frame[14:14 + n].decode("utf-8", "replace") if n >= 0 else None
    return api, version, correlation, client


def no_response(frame, api, version):
    """A Produce with acks=0 gets no answer."""
    if api != 0:
        return False
    (n,) = struct.unpack(">h", frame[12:14])
    at = 14 + max(n, 0)
    if version >= 9:  # request header v2: tagged fields, then a compact nullable string
        at += 1
        length = 0
        shift = 0
        while True:
            b = frame[at]
            at += 1
            length |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        at += max(length - 1, 0)
    else:
        (tn,) = struct.unpack(">h", frame[at:at + 2])
        at += 2 + max(tn, 0)
    (acks,) = struct.unpack(">h", frame[at:at + 2])
    return acks == 0


async def relay(client_reader, client_writer, upstream, out):
    host, port = upstream
    server_reader, server_writer = await asyncio.open_connection(host, port)
    pending = asyncio.Queue()

    async def requests():
        try:
            while True:
                frame = await read_frame(client_reader)
                api, version, correlation, client = describe(frame)
                if not no_response(frame, api, version):
                    await pending.put((api, version, correlation, client, frame))
                else:
                    out.write(json.dumps({"api": api, "version": version, "client": client, "request": frame.hex(), "response": None}) + "\n")
                server_writer.write(frame)
                await server_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            server_writer.close()

    async def responses():
        try:
            while True:
                frame = await read_frame(server_reader)
                api, version, correlation, client, request = await pending.get()
                out.write(json.dumps({"api": api, "version": version, "client": client, "request": request.hex(), "response": frame.hex()}) + "\n")
                out.flush()
                client_writer.write(frame)
                await client_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            client_writer.close()

    await asyncio.gather(requests(), responses())


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    out = open(args.out, "a", buffering=1)
    server = await asyncio.start_server(lambda r, w: relay(r, w, (host, int(port)), out), "127.0.0.1", args.listen)
    print("listening", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
