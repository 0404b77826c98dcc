#!/usr/bin/env python3
"""A real SocketCluster client (PyPI socketclusterclient) against `sluice serve --ws`.

Two sockets: A subscribes to room-a, B to room-b. B publishes to room-a (with an ack), A to
room-b; each must receive only its own room's message. Then a custom invoke no server
procedure handles gets an error back. Prints "ok ..." lines; exits 1 on the first failure.

usage: sc_client_check.py ws://127.0.0.1:PORT/socketcluster/
"""
import json
import sys
import threading
import time

from socketclusterclient import Socketcluster

url = sys.argv[1]
lock = threading.Lock()
events = []  # (socket name, kind, detail)


def note(*item):
    with lock:
        events.append(item)


def wait_for(pred, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with lock:
            if pred(events):
                return
        time.sleep(0.02)
    with lock:
        print("FAIL: timed out waiting for " + what + "; events: " + json.dumps(events))
    sys.exit(1)


def acked(sock, call, first, data, ack):
    """sock.publishack / sock.emitack from this thread. socketclusterclient 1.3.6 registers
    the ack only after sending the frame, so an answer that comes back at once (loopback) is
    dropped as unknown; the ack is registered first here, under the cid the call will take."""
    sock.acks[sock.cnt + 1] = [first, ack]
    call(first, data, ack)


def make(name, room):
    s = Socketcluster.socket(url)

    def on_auth(sock, is_authenticated):
        note(name, "handshake", bool(is_authenticated))
        sock.subscribeack(room, lambda ch, err, obj: note(name, "subscribed", ch if not err else "error: " + json.dumps(err)))

    def on_message(channel, data):
        note(name, "message", channel, data)

    s.setBasicListener(lambda sock: None, lambda sock: note(name, "closed"), lambda sock, err: note(name, "error", str(err)))
    s.setAuthenticationListener(lambda sock, token: None, on_auth)
    s.onchannel("room-a", on_message)
    s.onchannel("room-b", on_message)
    t = threading.Thread(target=s.connect, daemon=True)
    t.start()
    return s


a = make("A", "room-a")
b = make("B", "room-b")
wait_for(lambda e: ("A", "subscribed", "room-a") in e and ("B", "subscribed", "room-b") in e, "both subscriptions")
with lock:
    if ("A", "handshake", False) not in events or ("B", "handshake", False) not in events:
        print("FAIL: handshakes: " + json.dumps(events)); sys.exit(1)
print("ok handshake and subscribe acknowledged for both sockets")

acked(b, b.publishack, "room-a", {"text": "hello a", "from": "B"}, lambda ch, err, obj: note("B", "published", ch, err or None))
acked(a, a.publishack, "room-b", {"text": "hello b", "from": "A"}, lambda ch, err, obj: note("A", "published", ch, err or None))
wait_for(lambda e: ("B", "published", "room-a", None) in e and ("A", "published", "room-b", None) in e, "publish acks")
print("ok publish acknowledged without an error")
wait_for(lambda e: any(x[:3] == ("A", "message", "room-a") for x in e) and any(x[:3] == ("B", "message", "room-b") for x in e), "deliveries")
time.sleep(0.5)
with lock:
    got = [x for x in events if x[1] == "message"]
if sorted((x[0], x[2], x[3]["text"]) for x in got) != [("A", "room-a", "hello a"), ("B", "room-b", "hello b")]:
    print("FAIL: deliveries: " + json.dumps(got)); sys.exit(1)
print("ok each socket received only its own room's message, once")

acked(a, a.emitack, "no-such-procedure", {"x": 1}, lambda ev, err, obj: note("A", "emitted", ev, err))
wait_for(lambda e: any(x[:3] == ("A", "emitted", "no-such-procedure") for x in e), "the custom event's answer")
with lock:
    answer = [x for x in events if x[:3] == ("A", "emitted", "no-such-procedure")][0]
if not answer[3] or answer[3].get("name") != "InvalidActionError":
    print("FAIL: custom event answer: " + json.dumps(answer)); sys.exit(1)
print("ok an unhandled custom invoke gets InvalidActionError")
a.disconnect()
b.disconnect()
print("ok socketclusterclient done")
