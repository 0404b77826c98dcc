#!/usr/bin/env python3
# mask-pii: a Sluice process transform. Reads one JSON message per line on stdin and answers
# each with one line on stdout, in order (docs/plugins.md). stderr lines go to Sluice's log.
import json
import re
import sys

EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


def mask_text(text, keep):
    text = EMAIL.sub(lambda m: m.group(1) + "***@" + m.group(2), text)

    def card(m):
        digits = re.sub(r"\D", "", m.group(0))
        return "*" * (len(digits) - keep) + digits[-keep:] if keep else "*" * len(digits)

    return CARD.sub(card, text)


def transform(record, config):
    value = json.loads(record["value"])
    if not isinstance(value, dict):
        raise ValueError("the value is not a JSON object")
    for field in config["fields"]:
        v = value.get(field)
        if isinstance(v, str):
            value[field] = mask_text(v, config["keep"])
    return [{"value": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}]


def handle(message, config):
    results = []
    for record in message["records"]:
        try:
            results.append(transform(record, config))
        except Exception as e:
            results.append({"error": f"{type(e).__name__}: {e}"})
    return {"type": "result", "id": message["id"], "results": results}


def main():
    config = {}
    for line in sys.stdin:
        message = json.loads(line)
        if message["type"] == "configure":
            config = message["config"]
            if config["keep"] < 0:
                reply = {"type": "error", "message": "keep must not be negative"}
            else:
                reply = {"type": "ready"}
        else:
            reply = handle(message, config)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
