#!/usr/bin/env python3
"""Protocol edge cases and hostile input against `sluice serve --ws`, with a raw WebSocket
client (PyPI websockets). The server is started by the caller with:

  --ws-auth-key KEYFILE --ws-rule 'private.* subscribe=claim:role=admin publish=claim:role=admin'
  --ws-rule 'readonly.* publish=nobody' --ws-max-frame 64KiB --ws-max-message 8KiB --ws-rate 200
  --ws-ping-interval 1s --ws-ping-timeout 3s --ws-handshake-timeout 2s

Each check prints "ok ..."; the first failure prints FAIL and exits 1. A bystander socket
subscribed throughout must keep working after every attack.

and --ws-login http://127.0.0.1:LOGIN_PORT/login (this script serves that login hook: ann with
the password "open sesame" is an admin).

usage: ws_edge_check.py ws://127.0.0.1:PORT/socketcluster/ KEYFILE LOGIN_PORT
"""
import asyncio
import base64
import hashlib
import hmac
import http.server
import json
import sys
import threading
import time
import urllib.request

import websockets

from raw_client import Client

URL, KEYFILE, LOGIN_PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
KEY = open(KEYFILE, "rb").read().strip()


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, key=KEY, alg="HS256"):
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(key, (head + "." + body).encode(), hashlib.sha256).digest())
    return head + "." + body + "." + sig


async def expect_error(c, event, data, name, what):
    r = await c.call(event, data)
    if "error" not in r or r["error"].get("name") != name:
        fail(what + ": expected a " + name + ", got " + json.dumps(r))
    print("ok " + what + ": " + name + ": " + r["error"]["message"])


async def expect_close(c, code, what, action=None):
    if action:
        await action()
    got, reason = await c.closed()
    if got != code:
        fail(what + ": expected close code " + str(code) + ", got " + str(got) + " " + str(reason))
    print("ok " + what + ": closed with " + str(code) + " (" + str(reason) + ")")


class LoginHook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body == {"user": "ann", "password": "open sesame"}:
            answer, status = json.dumps({"sub": "ann", "role": "admin"}).encode(), 200
        else:
            answer, status = b"wrong user or password", 401
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


async def main():
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", LOGIN_PORT), LoginHook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    bystander = await Client.open(URL)
    if bystander.handshake.get("data", {}).get("isAuthenticated") is not False:
        fail("handshake: " + json.dumps(bystander.handshake))
    r = await bystander.call("#subscribe", {"channel": "lobby"})
    if r != {"rid": 1 + 1}:
        fail("subscribe answer: " + json.dumps(r))
    publisher = await Client.open(URL)
    sent = 0

    # Presence over HTTP on the gateway's port.
    base = URL.replace("ws://", "http://").split("/socketcluster")[0]
    everyone = json.loads(urllib.request.urlopen(base + "/channels", timeout=5).read())
    lobby = json.loads(urllib.request.urlopen(base + "/channels/lobby", timeout=5).read())
    if everyone.get("lobby") != 1 or lobby != {"channel": "lobby", "subscribers": [bystander.handshake["data"]["id"]]}:
        fail("presence: " + json.dumps(everyone) + " " + json.dumps(lobby))
    print("ok presence over HTTP: GET /channels and /channels/lobby name the one subscriber")

    async def bystander_still_works(after):
        nonlocal sent
        sent += 1
        await publisher.call("#publish", {"channel": "lobby", "data": {"n": sent}})
        while True:
            m = await bystander.recv()
            if m.get("event") == "#publish":
                if m["data"]["channel"] != "lobby" or m["data"]["data"] != {"n": sent}:
                    fail("bystander after " + after + ": " + json.dumps(m))
                return

    # Pings: protocol 2 empty frames, about once a second; the bystander answers them.
    await asyncio.sleep(2.5)
    await bystander_still_works("pings")
    if bystander.pings < 1:
        fail("no ping within 2.5 s")
    print("ok the server pings with empty frames and a socket that answers stays (" + str(bystander.pings) + " pings)")

    # A batch: an array of packets is handled in order.
    c = await Client.open(URL)
    await c.send([{"event": "#subscribe", "data": {"channel": "b1"}, "cid": 10}, {"event": "#subscribe", "data": {"channel": "b2"}, "cid": 11}])
    got = [await c.recv(), await c.recv()]
    if got != [{"rid": 10}, {"rid": 11}]:
        fail("batch: " + json.dumps(got))
    print("ok a batch of two invokes is answered in order")
    # Protocol 1 ping from the client gets "#2"; raw text is ignored.
    await c.send("#1")
    m = await c.text(5)
    if m != "#2":
        fail("a #1 ping got " + repr(m))
    await c.send("just some raw text")
    await c.send({"event": "some-transmit", "data": [1, 2]})
    r = await c.call("#unsubscribe", "b1")
    if r.get("rid") != c.cid or "error" in r:
        fail("unsubscribe: " + json.dumps(r))
    print("ok #1 gets #2; raw text and unknown transmits are ignored; #unsubscribe with a cid is answered")

    # Unknown invoke, bad subscribe data, long channel names, oversized and forbidden publishes.
    await expect_error(c, "no-such-procedure", {"x": 1}, "InvalidActionError", "an unknown invoke")
    await expect_error(c, "#subscribe", "lobby", "InvalidActionError", "#subscribe with a string for data")
    await expect_error(c, "#subscribe", {"channel": "x" * 300}, "InvalidActionError", "a 300-byte channel name")
    await expect_error(c, "#publish", {"channel": 7, "data": 1}, "InvalidActionError", "#publish to a number")
    await expect_error(c, "#publish", {"channel": "lobby", "data": "y" * 9000}, "InvalidMessageError", "a 9,000-byte message")
    await expect_error(c, "#publish", {"channel": "readonly.news", "data": 1}, "ForbiddenError", "publishing to a channel nobody may publish to")
    await expect_error(c, "#subscribe", {"channel": "private.admin"}, "ForbiddenError", "subscribing to a claim-guarded channel without a token")
    await bystander_still_works("bad calls")

    # Tokens: forged, expired, not yet valid, then a good one through #authenticate.
    now = int(time.time())
    forged = await Client.open(URL, token=jwt({"sub": "eve", "role": "admin", "exp": now + 600}, key=b"not-the-key"))
    d = forged.handshake["data"]
    if d["isAuthenticated"] or d.get("authError", {}).get("name") != "AuthTokenInvalidError":
        fail("forged token handshake: " + json.dumps(forged.handshake))
    m = await forged.recv()
    if m != {"event": "#removeAuthToken"}:
        fail("after a forged token: " + json.dumps(m))
    await expect_error(forged, "#subscribe", {"channel": "private.admin"}, "ForbiddenError", "a forged admin token")
    print("ok a forged token: handshake unauthenticated with AuthTokenInvalidError, then #removeAuthToken")
    expired = await Client.open(URL, token=jwt({"sub": "ann", "role": "admin", "exp": now - 10}))
    d = expired.handshake["data"]
    if d["isAuthenticated"] or d.get("authError", {}).get("name") != "AuthTokenExpiredError":
        fail("expired token handshake: " + json.dumps(expired.handshake))
    m = await expired.recv()
    if m != {"event": "#removeAuthToken"}:
        fail("after an expired token: " + json.dumps(m))
    print("ok an expired token: AuthTokenExpiredError, then #removeAuthToken")
    r = await expired.call("#authenticate", jwt({"sub": "ann", "role": "admin", "nbf": now + 3600}))
    if r.get("data", {}).get("isAuthenticated") is not False or r["data"]["authError"]["name"] != "AuthTokenNotBeforeError":
        fail("not-before token: " + json.dumps(r))
    print("ok a token not valid yet: AuthTokenNotBeforeError")
    r = await expired.call("#authenticate", jwt({"sub": "ann", "role": "admin", "exp": now + 600}))
    if r != {"rid": expired.cid, "data": {"isAuthenticated": True, "authError": None}}:
        fail("#authenticate: " + json.dumps(r))
    r = await expired.call("#subscribe", {"channel": "private.admin"})
    if "error" in r:
        fail("admin subscribe after #authenticate: " + json.dumps(r))
    r = await expired.call("#publish", {"channel": "private.admin", "data": "for admins"})
    if "error" in r:
        fail("admin publish: " + json.dumps(r))
    m = await expired.recv()
    if m.get("event") != "#publish" or m["data"]["data"] != "for admins":
        fail("admin delivery: " + json.dumps(m))
    user = await Client.open(URL, token=jwt({"sub": "bob", "role": "user", "exp": now + 600}))
    if not user.handshake["data"]["isAuthenticated"]:
        fail("user handshake: " + json.dumps(user.handshake))
    await expect_error(user, "#subscribe", {"channel": "private.admin"}, "ForbiddenError", "a valid token without the claim")
    await expired.send({"event": "#removeAuthToken"})
    await expect_error(expired, "#publish", {"channel": "private.admin", "data": 1}, "ForbiddenError", "publishing after #removeAuthToken")
    print("ok #authenticate with a good token opens the claim-guarded channel; #removeAuthToken closes it again")
    await bystander_still_works("tokens")

    # The login hook: the gateway asks it, signs the claims it answers with, sends the token.
    c = await Client.open(URL)
    await expect_error(c, "login", {"user": "ann", "password": "wrong"}, "LoginError", "a login the hook refuses")
    r = await c.call("login", {"user": "ann", "password": "open sesame"})
    if r != {"rid": c.cid, "data": {"isAuthenticated": True}}:
        fail("login: " + json.dumps(r))
    m = await c.recv()
    if m.get("event") != "#setAuthToken":
        fail("after login: " + json.dumps(m))
    token = m["data"]["token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    if claims.get("sub") != "ann" or claims.get("role") != "admin" or claims.get("exp", 0) <= now:
        fail("the signed token's claims: " + json.dumps(claims))
    r = await c.call("#subscribe", {"channel": "private.admin"})
    if "error" in r:
        fail("subscribe after login: " + json.dumps(r))
    again = await Client.open(URL, token=token)
    if again.handshake["data"]["isAuthenticated"] is not True:
        fail("handshake with the signed token: " + json.dumps(again.handshake))
    print("ok the login hook: refused credentials get LoginError; accepted ones a signed token (#setAuthToken) that opens the guarded channel and a later handshake")

    # Closing attacks, each on its own socket.
    c = await Client.open(URL, handshake=False)
    await expect_close(c, 4009, "a #subscribe before #handshake", lambda: c.send({"event": "#subscribe", "data": {"channel": "x"}, "cid": 1}))
    c = await Client.open(URL, handshake=False)
    await expect_close(c, 4008, "a #handshake without a cid", lambda: c.send({"event": "#handshake", "data": {}}))
    c = await Client.open(URL, handshake=False)
    t0 = time.time()
    await expect_close(c, 4005, "no #handshake at all")
    if time.time() - t0 > 5:
        fail("the handshake timeout took " + str(time.time() - t0) + " s")
    c = await Client.open(URL)
    await expect_close(c, 1007, "malformed JSON", lambda: c.send('{"event":"#publish","data":{"channel":"lobby",'))
    c = await Client.open(URL)
    await expect_close(c, 1009, "a 100 KiB frame", lambda: c.send(json.dumps({"event": "big", "data": "z" * 100_000})))
    silent = await websockets.connect(URL, ping_interval=None)
    await silent.send(json.dumps({"event": "#handshake", "data": {}, "cid": 1}))
    t0 = time.time()
    try:
        while True:
            await asyncio.wait_for(silent.recv(), 10)  # never answers pings
    except websockets.ConnectionClosed as e:
        if not e.rcvd or e.rcvd.code != 4001:
            fail("a socket that never pongs: " + str(e))
        print("ok a socket that never answers pings: closed with 4001 after %.1f s" % (time.time() - t0))
    await bystander_still_works("closing attacks")

    # A flood: calls over the rate get RateLimitError, and a socket that keeps on is closed.
    flood = await Client.open(URL)
    limited = 0
    try:
        for i in range(5000):
            await flood.send({"event": "#publish", "data": {"channel": "flood", "data": i}, "cid": 100 + i})
        while True:
            m = await flood.recv(5)
            if m.get("error", {}).get("name") == "RateLimitError":
                limited += 1
    except websockets.ConnectionClosed as e:
        if not e.rcvd or e.rcvd.code != 4429 or limited == 0:
            fail("flood: closed " + str(e) + " after " + str(limited) + " RateLimitErrors")
        print("ok a flood of 5,000 publishes: " + str(limited) + " RateLimitErrors, then closed with 4429")
    except asyncio.TimeoutError:
        fail("flood: the socket was not closed (" + str(limited) + " RateLimitErrors)")
    await bystander_still_works("the flood")
    print("ok the bystander received every message through all of it")


asyncio.run(main())
