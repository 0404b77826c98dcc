#!/usr/bin/env python3
"""Leaves requests the broker must hold open, for the shutdown test: a Fetch long poll of ten
minutes at the end of an empty topic, and a JoinGroup that waits for a rebalance that cannot
finish (the group's first member never rejoins; rebalance timeout five minutes). Prints
"holding" once both are in flight, then keeps the connections open until killed.
Usage: hold_requests.py HOST PORT"""
import socket
import struct
import sys
import time


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def frame(api, version, correlation, body):
    payload = struct.pack(">hhi", api, version, correlation) + string("hold") + body
    return struct.pack(">i", len(payload)) + payload


def call(sock, data):
    sock.sendall(data)
    size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
    return sock.recv(size, socket.MSG_WAITALL)


def join(group):
    protocols = struct.pack(">i", 1) + string("range") + struct.pack(">i", 0)
    return frame(11, 1, 3, string(group) + struct.pack(">ii", 30000, 300000) + string("") + string("consumer") + protocols)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    conns = [socket.create_connection((host, port)) for _ in range(3)]
    call(conns[0], frame(3, 1, 1, struct.pack(">i", 1) + string("held")))  # creates the topic
    fetch = struct.pack(">iiiib", -1, 600000, 1, 1 << 20, 0) + struct.pack(">i", 1) + string("held") + struct.pack(">iiqi", 1, 0, 0, 1 << 20)
    conns[0].sendall(frame(1, 4, 2, fetch))
    call(conns[1], join("held-group"))  # the first member: alone, it completes at once
    conns[2].sendall(join("held-group"))  # the second waits for the first to rejoin
    time.sleep(0.5)
    print("holding", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
