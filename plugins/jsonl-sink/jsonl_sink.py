#!/usr/bin/env python3
# jsonl-sink: a Sluice process sink. Each write message is answered with an ack once its
# records are durable (written and fsync'ed); Sluice commits offsets only after the ack.
import json
import os
import sys


def main():
    target = None
    for line in sys.stdin:
        message = json.loads(line)
        if message["type"] == "configure":
            try:
                target = open(message["config"]["path"], "a", encoding="utf-8")
                reply = {"type": "ready"}
            except OSError as e:
                reply = {"type": "error", "message": f"cannot open {message['config']['path']}: {e.strerror}"}
        else:
            for record in message["records"]:
                target.write((record["value"] or "") + "\n")
            target.flush()
            os.fsync(target.fileno())
            reply = {"type": "ack", "id": message["id"]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
