#!/usr/bin/env python3
"""Throws hostile frames at a Kafka listener: random bodies, truncated frames, oversized
length prefixes, unknown API keys, unsupported versions, garbage headers. After every attack
a fresh connection must still get a valid ApiVersions answer. Prints a summary line; exits 1
if the listener stopped answering."""
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
