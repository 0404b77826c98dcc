"""The pipeline benchmark's job in Bytewax, for `sluice bench pipeline` to compare against:
JSON lines in -> parse -> keep amount > 50 -> add cents -> JSON lines out.
Paths come from BYTEWAX_IN and BYTEWAX_OUT. Run: python -m bytewax.run bytewax_etl:flow"""
import json
import os
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import FileSink, FileSource
from bytewax.dataflow import Dataflow

flow = Dataflow("orders_etl")
lines = op.input("read", flow, FileSource(Path(os.environ["BYTEWAX_IN"]), batch_size=1000))
parsed = op.map("parse", lines, json.loads)
big = op.filter("big", parsed, lambda order: order["amount"] > 50)
tagged = op.map("tag", big, lambda order: {**order, "cents": order["amount"] * 100})
# FileSink routes by key: one key keeps one output file and the input order.
text = op.map("dump", tagged, lambda order: ("all", json.dumps(order, separators=(",", ":"))))
op.output("write", text, FileSink(Path(os.environ["BYTEWAX_OUT"])))
