#!/usr/bin/env python3
"""The chat example in a real browser: headless Chromium (Debian's `chromium`) opens the page
that `sluice serve --ws-static pipelines/chat-web ... pipelines/chat.yaml` serves, three times:
ann in room red, bob in room blue, then cat in room red. Each page says something once it has
joined (its `say` parameter). Driven over the DevTools protocol (a WebSocket, with PyPI
websockets); a screenshot of ann's page is saved.

Checks: ann and cat see red's messages only, bob blue's only; cat, who came later, gets
ann's message from the room's history; ann gets cat's live.

usage: browser_check.py http://127.0.0.1:PORT SCREENSHOT.png
"""
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import websockets

BASE, SHOT = sys.argv[1], sys.argv[2]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Page:
    def __init__(self, ws):
        self.ws, self.id = ws, 0

    async def call(self, method, **params):
        self.id += 1
        await self.ws.send(json.dumps({"id": self.id, "method": method, "params": params}))
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if m.get("id") == self.id:
                if "error" in m:
                    fail(method + ": " + json.dumps(m["error"]))
                return m["result"]

    async def eval(self, expression):
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r["result"].get("value")


async def open_page(devtools, url):
    # The page's own query must reach it whole: escaped, or /json/new stops at its first "&".
    req = urllib.request.Request("http://127.0.0.1:%d/json/new?%s" % (devtools, urllib.parse.quote(url, safe="")), method="PUT")
    target = json.loads(urllib.request.urlopen(req, timeout=10).read())
    return Page(await websockets.connect(target["webSocketDebuggerUrl"], max_size=None))


async def wait_until(page, expression, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if await page.eval(expression):
            return
        await asyncio.sleep(0.1)
    fail("timed out waiting for " + what + "; the page shows: " + repr(await page.eval("document.body.innerText")))


LOG = "Array.from(document.querySelectorAll('#log li:not(.notice)')).map(li => li.querySelector('.who').textContent + ': ' + li.lastChild.textContent)"


async def main():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        fail("chromium is not installed (apt-get install chromium)")
    devtools = free_port()
    profile = tempfile.mkdtemp(prefix="sluice-chromium-")
    proc = subprocess.Popen([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                             "--remote-debugging-port=%d" % devtools, "--user-data-dir=" + profile, "--window-size=900,600", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/json/version" % devtools, timeout=2).read()
                break
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    fail("chromium's DevTools endpoint did not come up")
                time.sleep(0.2)
        ann = await open_page(devtools, BASE + "/?room=red&name=ann&say=hello-red")
        bob = await open_page(devtools, BASE + "/?room=blue&name=bob&say=hello-blue")
        for page, room in ((ann, "red"), (bob, "blue")):
            await wait_until(page, "document.body.dataset.joined === '%s'" % room, room + " joined")
        await wait_until(ann, LOG + ".includes('ann: hello-red')", "ann's own message back through the pipeline")
        await wait_until(bob, LOG + ".includes('bob: hello-blue')", "bob's own message back through the pipeline")
        cat = await open_page(devtools, BASE + "/?room=red&name=cat&say=hi-from-cat")
        await wait_until(cat, LOG + ".includes('ann: hello-red')", "cat seeing ann's message from the history")
        await wait_until(cat, LOG + ".includes('cat: hi-from-cat')", "cat's own message")
        await wait_until(ann, LOG + ".includes('cat: hi-from-cat')", "ann seeing cat's message live")
        await asyncio.sleep(0.5)
        logs = {name: await page.eval(LOG) for name, page in (("ann", ann), ("bob", bob), ("cat", cat))}
        if logs["ann"] != ["ann: hello-red", "cat: hi-from-cat"]:
            fail("ann's room: " + json.dumps(logs))
        if logs["bob"] != ["bob: hello-blue"]:
            fail("bob's room: " + json.dumps(logs))
        if logs["cat"] != ["ann: hello-red", "cat: hi-from-cat"]:
            fail("cat's room: " + json.dumps(logs))
        print("ok messages appear only in their own room: " + json.dumps(logs))
        shot = await ann.call("Page.captureScreenshot", format="png")
        with open(SHOT, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print("ok screenshot of ann's page: %s (%d bytes)" % (SHOT, os.path.getsize(SHOT)))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


asyncio.run(main())
