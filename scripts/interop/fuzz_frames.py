#!/usr/bin/env python3
"""Throws hostile frames at a Kafka listener: random bodies, truncated frames, oversized
length prefixes, unknown API keys, unsupported versions, garbage headers. After every attack
a fresh connection must still get a valid ApiVersions answer. With a fixtures directory
(Tests/SluiceKafkaWireTests/Fixtures: request frames captured from real clients), it also
sends those frames mutated — bytes flipped, cut short, extended, 0xff runs spliced into
varints — so the attacks reach deep into each API's parser at versions clients really use.
Prints a summary line per kind of attack; exits 1 if the listener stopped answering.

    fuzz_frames.py HOST PORT [ROUNDS] [FIXTURES_DIR]"""
import os
import random
import socket
import struct
import sys


def api_versions(host, port, version=0, correlation=7):
    s = socket.create_connection((host, port), timeout=5)
    body = struct.pack(">hhi", 18, version, correlation) + struct.pack(">h", 4) + b"fuzz"
    if version >= 3:
        body += b"\x00" + b"\x05fuzz" + b"\x041.0" + b"\x00"
    s.sendall(struct.pack(">i", len(body)) + body)
    size = struct.unpack(">i", recv_exact(s, 4))[0]
    data = recv_exact(s, size)
    s.close()
    corr, err = struct.unpack(">ih", data[:6])
    return corr, err


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def attack(host, port, frame, read=True):
    """Sends `frame`; returns 'closed', 'answered' or 'silent'."""
    s = socket.create_connection((host, port), timeout=3)
    try:
        s.sendall(frame)
        if not read:
            return "sent"
        try:
            data = s.recv(4)
            return "answered" if data else "closed"
        except socket.timeout:
            return "silent"
        except ConnectionResetError:
            return "closed"
    finally:
        s.close()


def main():
    host, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 300
    rng = random.Random(1234)
    outcomes = {}
    for i in range(rounds):
        kind = i % 6
        if kind == 0:  # random body with a valid length
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
            frame = struct.pack(">i", len(body)) + body
        elif kind == 1:  # truncated: the prefix promises more than is sent, then the peer leaves
            body = struct.pack(">hhi", 3, 1, i) + b"\x00\x01x"
            frame = struct.pack(">i", len(body) + 100) + body
        elif kind == 2:  # oversized length prefix
            frame = struct.pack(">i", rng.choice([0x7fffffff, 500 << 20, -5])) + b"\x00" * 16
        elif kind == 3:  # unknown API key
            body = struct.pack(">hhi", rng.choice([77, 999, -3]), 0, i) + struct.pack(">h", -1)
            frame = struct.pack(">i", len(body)) + body
        elif kind == 4:  # unsupported version of a known API
            body = struct.pack(">hhi", 3, rng.choice([40, 99, -1]), i) + struct.pack(">h", -1) + b"\xff\xff\xff\xff"
            frame = struct.pack(">i", len(body)) + body
        else:  # a Produce whose record set claims a huge array
            body = struct.pack(">hhi", 0, 3, i) + struct.pack(">h", -1) + struct.pack(">h", -1) + struct.pack(">hi", 1, 1000) + struct.pack(">i", 0x7ffffff0)
            frame = struct.pack(">i", len(body)) + body
        result = attack(host, port, frame, read=kind != 1)
        outcomes[(kind, result)] = outcomes.get((kind, result), 0) + 1
        if i % 25 == 0:
            corr, err = api_versions(host, port, correlation=i)
            if corr != i or err != 0:
                print(f"FAIL: after attack {i} ApiVersions answered correlation {corr}, error {err}")
                return 1
    corr, err = api_versions(host, port, version=99, correlation=5)
    if err != 35:
        print(f"FAIL: ApiVersions v99 answered error {err}, expected 35 (UNSUPPORTED_VERSION)")
        return 1
    names = ["random", "truncated", "oversized", "unknown-api", "bad-version", "huge-array"]
    summary = ", ".join(f"{names[k]} {r} {n}" for (k, r), n in sorted(outcomes.items()))
    print(f"ok fuzz: {rounds} hostile frames ({summary}); the listener kept answering")
    if len(sys.argv) > 4:
        return mutate(host, port, sys.argv[4], rng)
    return 0


# Requests whose mutations would mostly create or delete things (topics of up to 10,000
# partitions, groups) rather than exercise parsers; everything else is mutated.
SKIPPED = ("CreateTopics", "CreatePartitions", "DeleteTopics", "DeleteGroups")


def mutate(host, port, directory, rng):
    frames = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".hex") and not any(f"-{api}-" in name for api in SKIPPED):
            frames.append((name, bytes.fromhex(open(os.path.join(directory, name)).read().strip())))
    if not frames:
        print(f"FAIL: no fixtures in {directory}")
        return 1
    outcomes = {}
    rounds = 6 * len(frames)
    for i in range(rounds):
        name, frame = frames[i % len(frames)]
        body = bytearray(frame[4:])
        how = rng.choice(["flip", "cut", "extend", "ff-run"])
        start = min(8, len(body) - 1)  # keep the API key and version: reach that API's parser
        if how == "flip":
            for _ in range(rng.randint(1, 3)):
                body[rng.randrange(start, len(body))] ^= 1 << rng.randrange(8)
        elif how == "cut":
            del body[rng.randrange(start, len(body)):]
        elif how == "extend":
            body += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 20)))
        else:
            at = rng.randrange(start, len(body))
            body[at:at] = b"\xff" * rng.randint(1, 6)
        result = attack(host, port, struct.pack(">i", len(body)) + bytes(body))
        outcomes[(how, result)] = outcomes.get((how, result), 0) + 1
        if i % 20 == 0:
            corr, err = api_versions(host, port, correlation=i)
            if corr != i or err != 0:
                print(f"FAIL: after mutated {name} ({how}) ApiVersions answered correlation {corr}, error {err}")
                return 1
    summary = ", ".join(f"{h} {r} {n}" for (h, r), n in sorted(outcomes.items()))
    print(f"ok mutated: {rounds} mutated client frames from {len(frames)} fixtures ({summary}); the listener kept answering")
    return 0


if __name__ == "__main__":
    sys.exit(main())
