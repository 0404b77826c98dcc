#!/usr/bin/env python3
"""Decodes every request and response a wire_capture.py relay recorded with kafka-python's
classes, which are generated from Apache Kafka's own JSON message definitions, and checks
that each response re-encodes to exactly the bytes Sluice sent (nothing missing, nothing
trailing, every field where the definition puts it) at the version the client chose. This checks Sluice's encoders against the protocol's definitions independently of
Sluice's own decoder.

    check_capture.py CAPTURE.jsonl [--expect CLIENT:API=VERSION ...] [--fixtures DIR [--label NAME]]

--expect asserts the highest version a client family (the first word of its client id:
rdkafka, kafka) used for an API, e.g. rdkafka:JoinGroup=5. --fixtures writes the first
request of each (client, API, version) as DIR/<client>-<Api>-v<version>.hex (golden request
fixtures). Prints one "ok" line per check and exits 1 at the first failure."""
import argparse
import collections
import importlib
import inspect
import io
import json
import os
import pkgutil
import struct
import sys

import kafka.protocol as protocol


def classes():
    """API key -> (request class, response class)."""
    found = collections.defaultdict(dict)
    for m in pkgutil.walk_packages(protocol.__path__, "kafka.protocol."):
        if ".old" in m.name:
            continue
        try:
            mod = importlib.import_module(m.name)
        except Exception:
            continue
        for name, c in inspect.getmembers(mod, inspect.isclass):
            try:
                key = c.API_KEY
            except Exception:
                continue
            if not isinstance(key, int):
                continue
            if name.endswith("Request"):
                found[key]["request"] = c
            elif name.endswith("Response"):
                found[key]["response"] = c
    return found


def uvarint(buf):
    value, shift = 0, 0
    while True:
        b = buf.read(1)[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7


def skip_tagged(buf):
    for _ in range(uvarint(buf)):
        uvarint(buf)
        buf.read(uvarint(buf))


def decode(cls, body, version):
    """The message and the number of bytes it took (kafka-python's decoder, position kept)."""
    flexible = cls.flexible_version_q(version)
    read = cls._struct.compiled_decode_from(version, compact=flexible, tagged=flexible, data_class=cls[None])
    return read(memoryview(body), 0)


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("--expect", nargs="*", default=[])
    ap.add_argument("--fixtures")
    ap.add_argument("--label", help="fixture file prefix instead of the client family, e.g. rdkafka2.16")
    args = ap.parse_args()
    api = classes()
    highest = {}
    kinds = set()
    frames = 0
    written = set()
    trailing = set()
    for n, line in enumerate(open(args.capture), 1):
        rec = json.loads(line)
        key, version = rec["api"], rec["version"]
        client = (rec["client"] or "").split("-")[0] or "unnamed"
        label = args.label or client
        req_cls, resp_cls = api[key]["request"], api[key]["response"]
        name = req_cls.__name__[: -len("Request")]
        where = f"{args.capture}:{n} ({client} {name} v{version})"
        request = bytes.fromhex(rec["request"])
        buf = io.BytesIO(request[4:])
        buf.read(8)  # api key, version, correlation id
        (cid_len,) = struct.unpack(">h", buf.read(2))
        buf.read(max(cid_len, 0))
        flexible = req_cls.flexible_version_q(version)
        if flexible:
            skip_tagged(buf)
        body = buf.read()
        try:
            _, end = decode(req_cls, body, version)
        except Exception as e:
            fail(f"{where}: the request does not decode: {e!r}")
        if end != len(body):
            # Kafka's brokers ignore bytes after a request's last field, and so does Sluice:
            # librdkafka 2.x leaves three in every all-topics Metadata v9+ request.
            trailing.add(f"{client} {name} v{version}: {len(body) - end} bytes after the message")
        if rec["response"] is not None:
            response = bytes.fromhex(rec["response"])
            buf = io.BytesIO(response[4:])
            buf.read(4)  # correlation id
            if flexible and key != 18:  # ApiVersions answers with header v0
                skip_tagged(buf)
            body = buf.read()
            try:
                decoded, end = decode(resp_cls, body, version)
            except Exception as e:
                fail(f"{where}: Sluice's response does not decode with Kafka's definition: {e!r}")
            if end != len(body):
                fail(f"{where}: Sluice's {len(body)}-byte response has {len(body) - end} bytes after the message")
            decoded._header = None
            again = decoded.encode(version=version, header=False)
            if again != body:
                at = next((i for i, (a, b) in enumerate(zip(again, body)) if a != b), min(len(again), len(body)))
                fail(f"{where}: Sluice's {len(body)}-byte response differs from Kafka's encoding of the same message ({len(again)} bytes) from byte {at}: {decoded!r}")
        frames += 1
        kinds.add((name, version))
        highest[(client, name)] = max(highest.get((client, name), -1), version)
        if args.fixtures and (label, name, version) not in written:
            written.add((label, name, version))
            os.makedirs(args.fixtures, exist_ok=True)
            with open(os.path.join(args.fixtures, f"{label}-{name}-v{version}.hex"), "w") as f:
                f.write(rec["request"] + "\n")
    for t in sorted(trailing):
        print(f"note {t} (ignored by Kafka and by Sluice)")
    print(f"ok decoded {frames} requests and their responses ({len(kinds)} API versions) with Kafka's message definitions")
    for e in args.expect:
        who, _, rest = e.partition(":")
        name, _, want = rest.partition("=")
        got = highest.get((who, name))
        if got != int(want):
            fail(f"{who} used {name} v{got}, expected v{want}")
        print(f"ok {who} {name} v{want}")


if __name__ == "__main__":
    main()
