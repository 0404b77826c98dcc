#!/usr/bin/env python3
"""Generates Swift request/response types from Apache Kafka's JSON message definitions.

Usage (from the repository root):

    python3 scripts/codegen/kafka_messages.py /tmp/kafka-messages Sources/SluiceKafkaWire/Messages /tmp/kafka-4.2-messages

The first argument is a directory holding Kafka's clients/src/main/resources/common/message/*.json
(for example extracted from a checkout of apache/kafka; record the commit in KAFKA_COMMIT below). The
third argument is the same directory from the Kafka 4.2 line (K42_REPO at K42_COMMIT), where the share
group RPCs and the consumer group protocol are stable; the APIs marked "k42" below are read from it. The
definitions are read only; they are not part of this repository. The second argument is the output
directory: one Swift file per API (e.g. Metadata.swift with MetadataRequest and MetadataResponse).
Generated files that are no longer produced are removed from it; other files are left alone.

What is generated, per message (request or response):

* a struct conforming to KafkaMessage (WireCodec.swift) with static apiKey, versions (the versions
  Sluice accepts, from the API table below, not the JSON's validVersions) and firstFlexibleVersion
  (Int16.max when never flexible); requests also name their Response type;
* one stored property per field, in JSON order, named in lowerCamelCase (TopicId -> topicId; Swift
  keywords are escaped with backticks); a field nullable in any generated version is Optional;
  defaults come from the JSON "default" (null, numbers incl. 0x hex, true/false, strings), else
  0 / false / "" / [] / .zero / an empty struct, or nil for Optional fields;
* nested structs (array elements, struct fields, commonStructs) as nested types of the message,
  all at one level (MetadataResponse.Partition, not MetadataResponse.Topic.Partition; Kafka's struct
  names are unique within a message). A nested type is named after the JSON struct type with the
  message name as prefix removed (MetadataResponseTopic -> Topic), unless that leaves a name Swift
  reserves (Protocol, Type, ...) or one that clashes; then the JSON name is kept
  (JoinGroupRequest.JoinGroupRequestProtocol);
* init() and a memberwise init whose every argument has the field's default;
* init(from:version:) and encode(to:version:) for the body (no request/response header). The
  top level sets the reader's/writer's `flexible` from the version; nested structs inherit it. The
  top-level tagged-field section is read, but KafkaReader.finish() is not called: the caller checks
  that nothing is left over (KafkaReader.requireEnd()).

Version handling: a field absent in a version is neither read nor written and keeps its default;
fields absent from every generated version are left out (a comment lists them). Null read where
the version does not allow it throws WireError. Encoding nil where the version does not allow null
writes the empty value ("" / [] / empty bytes / a default struct). Tagged fields (flexible versions)
are decoded by tag, unknown tags are skipped (and not kept), and a tagged field is written only
when its value differs from its default. Fields Kafka marks non-ignorable are written the same way
as others: a value set on a field the version lacks is dropped silently (Kafka would throw).
"""

import json
import os
import re
import sys

KAFKA_REPO = "apache/kafka"
KAFKA_PATH = "clients/src/main/resources/common/message"
# The commit the definitions were taken from; stamped into every generated file.
KAFKA_COMMIT = "1eb7644349cb07139d6a3c1ad1986979647cac99"
# Kafka 4.2 (Confluent's build of the 4.2 branch): share groups (KIP-932) and KIP-848 became stable there.
K42_REPO = "confluentinc/kafka"
K42_COMMIT = "d26e85231a8f8be3d2d7f4607c47bac9918c7952"

# API name -> versions Sluice accepts (inclusive), or None for the JSON's whole validVersions.
APIS = [
    ("Produce", (3, 11)),
    ("Fetch", (4, 16)),
    ("ListOffsets", (1, 9)),
    ("Metadata", (0, 12)),
    ("OffsetCommit", (2, 9)),
    ("OffsetFetch", (1, 9)),
    ("FindCoordinator", (0, 5)),
    ("JoinGroup", (0, 9)),
    ("Heartbeat", (0, 4)),
    ("LeaveGroup", (0, 5)),
    ("SyncGroup", (0, 5)),
    ("DescribeGroups", (0, 5)),
    ("ListGroups", (0, 5)),
    ("SaslHandshake", (0, 1)),
    ("ApiVersions", (0, 4)),
    ("CreateTopics", (0, 7)),
    ("DeleteTopics", (0, 6)),
    ("InitProducerId", (0, 5)),
    ("AddPartitionsToTxn", (0, 3)),
    ("AddOffsetsToTxn", (0, 4)),
    ("EndTxn", (0, 4)),
    ("TxnOffsetCommit", (0, 4)),
    ("DescribeConfigs", (0, 4)),
    ("SaslAuthenticate", (0, 2)),
    ("CreatePartitions", (0, 3)),
    ("DeleteGroups", (0, 2)),
    ("IncrementalAlterConfigs", (0, 1)),
    # Share groups (KIP-932) and the consumer protocol (KIP-848), from Kafka 4.2's definitions.
    ("ShareGroupHeartbeat", (1, 1), "k42"),
    ("ShareGroupDescribe", (1, 1), "k42"),
    ("ShareFetch", (1, 1), "k42"),
    ("ShareAcknowledge", (1, 1), "k42"),
    ("DescribeShareGroupOffsets", (0, 1), "k42"),
    ("ConsumerGroupHeartbeat", (0, 1), "k42"),
    ("ConsumerGroupDescribe", (0, 1), "k42"),
    # Not served yet; generated over the JSON's whole range for future use.
    ("OffsetForLeaderEpoch", None),
]

# Notes added to a message's doc comment.
NOTES = {
    "ApiVersionsResponse": "Always sent with response header v0 (no header tagged fields), even in flexible "
                           "versions, so that clients can parse it before they know the broker's versions; "
                           "firstFlexibleVersion describes the body only.",
}

GENERATED_MARK = "generated by scripts/codegen/kafka_messages.py"
MAXV = 0x7FFF
LINE = 120

SWIFT_KEYWORDS = {
    "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init",
    "inout", "internal", "let", "open", "operator", "private", "precedencegroup", "protocol", "public",
    "rethrows", "static", "struct", "subscript", "typealias", "var", "break", "case", "catch", "continue",
    "default", "defer", "do", "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return",
    "throw", "switch", "where", "while", "Any", "as", "await", "false", "is", "nil", "self", "Self",
    "super", "throws", "true", "try", "some", "any",
}
# Nested type names that Swift forbids or that would shadow a type the generated code uses.
RESERVED_TYPE_NAMES = {
    "Type", "Protocol", "Self", "Any", "String", "Bool", "Int8", "Int16", "Int32", "Int64", "UInt16",
    "UInt32", "Double", "Optional", "Array", "UUID", "KafkaUUID", "RecordBytes", "WireError",
    "KafkaReader", "KafkaWriter", "Response", "Error",
}

PRIMITIVES = {
    # kafka type: (swift type, zero value, read method, nullable read method, write method)
    "int8": ("Int8", "0", "int8", None, "int8"),
    "int16": ("Int16", "0", "int16", None, "int16"),
    "uint16": ("UInt16", "0", "uint16", None, "uint16"),
    "int32": ("Int32", "0", "int32", None, "int32"),
    "int64": ("Int64", "0", "int64", None, "int64"),
    "float64": ("Double", "0", "float64", None, "float64"),
    "bool": ("Bool", "false", "bool", None, "bool"),
    "uuid": ("KafkaUUID", ".zero", "uuid", None, "uuid"),
    "string": ("String", '""', "string", "nullableString", "string"),
    "bytes": ("[UInt8]", "[]", "byteArray", "nullableByteArray", "bytes"),
    "records": ("RecordBytes", "RecordBytes()", "records", "nullableRecords", "records"),
}


class GenError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Versions: (lo, hi) inclusive, or None for "none".

def parse_versions(s, what):
    if s is None:
        return None
    s = str(s).strip()
    if s == "none":
        return None
    m = re.fullmatch(r"(\d+)\+", s)
    if m:
        return (int(m.group(1)), MAXV)
    m = re.fullmatch(r"(\d+)-(\d+)", s)
    if m:
        return (int(m.group(1)), int(m.group(2)))
    m = re.fullmatch(r"\d+", s)
    if m:
        return (int(s), int(s))
    raise GenError(f"{what}: cannot parse versions {s!r}")


def intersect(a, b):
    if a is None or b is None:
        return None
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else None


def hull(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), max(a[1], b[1]))


def covers(outer, inner):
    return inner is None or (outer is not None and outer[0] <= inner[0] and inner[1] <= outer[1])


def vstr(v):
    if v is None:
        return "none"
    if v[1] == MAXV:
        return f"{v[0]}+"
    return f"{v[0]}" if v[0] == v[1] else f"{v[0]}-{v[1]}"


def condition(rng, ctx):
    """Swift condition for `version in rng`, knowing version is in ctx. "" = always, None = never."""
    r = intersect(rng, ctx)
    if r is None:
        return None
    lo_needed, hi_needed = r[0] > ctx[0], r[1] < ctx[1]
    if lo_needed and hi_needed:
        return f"version == {r[0]}" if r[0] == r[1] else f"version >= {r[0]} && version <= {r[1]}"
    if lo_needed:
        return f"version >= {r[0]}"
    if hi_needed:
        return f"version <= {r[1]}"
    return ""


# ---------------------------------------------------------------------------------------------
# Definitions

def load_json(path):
    with open(path, encoding="utf-8") as f:
        text = "\n".join(line for line in f.read().split("\n") if not line.lstrip().startswith("//"))
    return json.loads(text)


def lower_camel(name):
    return name[0].lower() + name[1:]


def swift_ident(name):
    return f"`{name}`" if name in SWIFT_KEYWORDS else name


class Field:
    def __init__(self, spec, owner):
        self.spec = spec
        self.name = spec["name"]
        self.where = f"{owner}.{self.name}"
        self.about = spec.get("about", "")
        self.tagged = parse_versions(spec.get("taggedVersions"), self.where)
        v = spec.get("versions")
        self.versions = parse_versions(v, self.where) if v is not None else self.tagged
        self.nullable = parse_versions(spec.get("nullableVersions"), self.where)
        self.tag = spec.get("tag")
        self.default = spec.get("default")
        if "flexibleVersions" in spec:
            raise GenError(f"{self.where}: field-level flexibleVersions is not supported")
        if self.tagged is not None:
            if self.tag is None or self.tagged[1] != MAXV or not covers(self.versions, self.tagged):
                raise GenError(f"{self.where}: unsupported tagged field declaration")
        t = spec["type"]
        self.is_array = t.startswith("[]")
        self.elem = t[2:] if self.is_array else t
        self.is_struct = self.elem not in PRIMITIVES
        if self.is_array and self.elem == "records":
            raise GenError(f"{self.where}: arrays of records are not supported")
        self.struct = None  # StructDef, resolved later
        self.swift_name = swift_ident(lower_camel(self.name))
        self.param_name = lower_camel(self.name)

    @property
    def untagged(self):
        """Versions in which the field is a regular (positional) field."""
        if self.versions is None:
            return None
        if self.tagged is None:
            return self.versions
        if self.tagged[0] <= self.versions[0]:
            return None
        return (self.versions[0], self.tagged[0] - 1)


class StructDef:
    def __init__(self, json_name, fields_spec, where):
        self.json_name = json_name
        self.swift_name = json_name
        self.where = where
        self.fields = [Field(f, json_name) for f in fields_spec]
        self.ctx = None  # hull of the versions it is used in


class Message:
    def __init__(self, spec, accepted, api):
        self.spec = spec
        self.name = spec["name"]
        self.api = api
        self.kind = spec["type"]
        self.api_key = spec["apiKey"]
        self.valid = parse_versions(spec["validVersions"], self.name)
        self.flexible = parse_versions(spec["flexibleVersions"], self.name)
        if self.flexible is not None and self.flexible[1] != MAXV:
            raise GenError(f"{self.name}: flexibleVersions must be open-ended")
        self.accepted = accepted if accepted is not None else self.valid
        self.deprecated = spec.get("deprecatedVersions")
        self.unstable = spec.get("latestVersionUnstable", False)
        self.structs = {}  # json name -> StructDef
        self.root = StructDef(self.name, spec["fields"], self.name)
        self.root.swift_name = self.name
        self.root.ctx = self.accepted
        for c in spec.get("commonStructs", []):
            self.define(c["name"], c["fields"], f"{self.name} commonStructs")
        self.collect(self.root)
        self.resolve(self.root)
        self.compute_contexts()
        self.name_structs()

    def define(self, name, fields_spec, where):
        if name in self.structs:
            raise GenError(f"{self.name}: struct {name} defined twice")
        s = StructDef(name, fields_spec, where)
        self.structs[name] = s
        self.collect(s)
        return s

    def collect(self, struct):
        for f in struct.fields:
            if "fields" in f.spec:
                if not f.is_struct:
                    raise GenError(f"{f.where}: fields on a non-struct type")
                self.define(f.elem, f.spec["fields"], f.where)

    def resolve(self, struct):
        for s in [struct] + list(self.structs.values()):
            for f in s.fields:
                if f.is_struct:
                    if f.elem not in self.structs:
                        raise GenError(f"{f.where}: unknown struct type {f.elem}")
                    f.struct = self.structs[f.elem]

    def compute_contexts(self):
        changed = True
        while changed:
            changed = False
            for s in [self.root] + list(self.structs.values()):
                if s.ctx is None:
                    continue
                for f in s.fields:
                    if f.struct is None:
                        continue
                    use = intersect(f.versions, s.ctx)
                    new = hull(f.struct.ctx, use)
                    if new != f.struct.ctx:
                        f.struct.ctx = new
                        changed = True

    def name_structs(self):
        used = [s for s in self.structs.values() if s.ctx is not None]
        wanted = {}
        for s in used:
            n = s.json_name
            short = n[len(self.name):] if n.startswith(self.name) else n
            if not short or not short[0].isupper() or short in RESERVED_TYPE_NAMES:
                short = n
            wanted[s.json_name] = short
        counts = {}
        for short in wanted.values():
            counts[short] = counts.get(short, 0) + 1
        for s in used:
            short = wanted[s.json_name]
            s.swift_name = short if counts[short] == 1 and short != self.name else s.json_name

    def is_flexible_cond(self, ctx):
        return condition(self.flexible, ctx) if self.flexible is not None else None


# ---------------------------------------------------------------------------------------------
# Swift emission helpers

class Out:
    def __init__(self):
        self.lines = []
        self.indent = 0

    def line(self, s=""):
        self.lines.append(("    " * self.indent + s) if s else "")

    def block(self, head, body_lines):
        """`head { body }` on one line when short, else as a block."""
        pad = "    " * self.indent
        if len(body_lines) == 1:
            one = f"{pad}{head} {{ {body_lines[0]} }}"
            if len(one) <= LINE:
                self.lines.append(one)
                return
        self.line(f"{head} {{")
        self.indent += 1
        for b in body_lines:
            self.line(b)
        self.indent -= 1
        self.line("}")

    def guarded(self, cond, body_lines):
        if cond is None:
            return
        if cond == "":
            for b in body_lines:
                self.line(b)
        else:
            self.block(f"if {cond}", body_lines)

    def text(self):
        return "\n".join(self.lines) + "\n"


def swift_string_literal(s):
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def doc_lines(text, width=LINE - 12):
    words = text.split()
    lines, cur = [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return lines


class StructGen:
    def __init__(self, msg, struct, top):
        self.msg = msg
        self.s = struct
        self.top = top
        self.ctx = struct.ctx
        self.fields = [f for f in struct.fields if intersect(f.versions, self.ctx) is not None]
        self.omitted = [f for f in struct.fields if intersect(f.versions, self.ctx) is None]

    # -- types ------------------------------------------------------------------------------

    def present(self, f):
        return intersect(f.versions, self.ctx)

    def optional(self, f):
        return intersect(f.nullable, self.present(f)) is not None

    def elem_type(self, f):
        return f.struct.swift_name if f.is_struct else PRIMITIVES[f.elem][0]

    def base_type(self, f):
        t = self.elem_type(f)
        return f"[{t}]" if f.is_array else t

    def swift_type(self, f):
        t = self.base_type(f)
        return t + "?" if self.optional(f) else t

    def default_expr(self, f):
        d = f.default
        opt = self.optional(f)
        if isinstance(d, bool):
            d = "true" if d else "false"
        if d is not None and not isinstance(d, str):
            d = str(d)
        if d == "null":
            if not opt:
                raise GenError(f"{f.where}: default null on a field that is never nullable")
            return "nil"
        if d is not None and d != "" and not f.is_array and not f.is_struct:
            e = f.elem
            if e == "bool":
                if d.lower() not in ("true", "false"):
                    raise GenError(f"{f.where}: bad bool default {d}")
                return d.lower()
            if e in ("int8", "int16", "uint16", "int32", "int64"):
                neg = d.startswith("-")
                digits = d[1:] if neg else d
                value = int(digits, 16) if digits.startswith("0x") else int(digits)
                lo, hi = {"int8": (-128, 127), "int16": (-(1 << 15), (1 << 15) - 1), "uint16": (0, 65535),
                          "int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1)}[e]
                if neg:
                    value = -value
                if not lo <= value <= hi:
                    raise GenError(f"{f.where}: default {d} out of range")
                return d if digits.startswith("0x") else str(value)
            if e == "float64":
                return str(float(d))
            if e == "string":
                return swift_string_literal(d)
            raise GenError(f"{f.where}: unsupported default {d!r} for {e}")
        if d not in (None, ""):
            raise GenError(f"{f.where}: unsupported default {d!r}")
        if f.elem == "string" and d == "" and not f.is_array:
            return '""'
        if opt:
            return "nil"
        if f.is_array:
            return "[]"
        if f.is_struct:
            return f"{f.struct.swift_name}()"
        return PRIMITIVES[f.elem][1]

    # -- decoding ---------------------------------------------------------------------------

    def elem_closure_read(self, f):
        t = PRIMITIVES[f.elem]
        return f"{{ r throws(WireError) in try r.{t[2]}() }}"

    def read_stmts(self, f, rng):
        """Statements that read f, for versions in rng (all of them present, same tagging)."""
        target = f"self.{f.param_name}"
        ncond = condition(f.nullable, rng) if f.nullable is not None else None

        def one(nullable):
            if f.is_array:
                fn = "nullableArray" if nullable else "requiredArray"
                if f.is_struct:
                    return f"{target} = try r.{fn}(of: {f.struct.swift_name}.self, version: version)"
                return f"{target} = try r.{fn} {self.elem_closure_read(f)}"
            if f.is_struct:
                init = f"{f.struct.swift_name}(from: &r, version: version)"
                if nullable:
                    return f"{target} = try r.int8() < 0 ? nil : {init}"
                return f"{target} = try {init}"
            t = PRIMITIVES[f.elem]
            return f"{target} = try r.{t[3] if nullable else t[2]}()"

        if ncond is None:
            return [one(False)]
        if ncond == "":
            return [one(True)]
        return [f"if {ncond} {{", "    " + one(True), "} else {", "    " + one(False), "}"]

    # -- encoding ---------------------------------------------------------------------------

    def elem_closure_write(self, f):
        t = PRIMITIVES[f.elem]
        return f"{{ w, e in w.{t[4]}(e) }}"

    def write_stmts(self, f, rng):
        value = f"self.{f.param_name}"
        opt = self.optional(f)
        ncond = condition(f.nullable, rng) if f.nullable is not None else None

        def one(nullable):
            if f.is_array:
                if f.is_struct:
                    if nullable:
                        return f"w.nullableArray({value}, version: version)"
                    v = f"{value} ?? []" if opt else value
                    return f"w.array({v}, version: version)"
                if nullable:
                    return f"w.nullableArray({value}) {self.elem_closure_write(f)}"
                v = f"{value} ?? []" if opt else value
                return f"w.array({v}) {self.elem_closure_write(f)}"
            if f.is_struct:
                if nullable:
                    return (f"if let v = {value} {{ w.int8(1); v.encode(to: &w, version: version) }} "
                            f"else {{ w.int8(-1) }}")
                v = f"({value} ?? {f.struct.swift_name}())" if opt else value
                return f"{v}.encode(to: &w, version: version)"
            t = PRIMITIVES[f.elem]
            if nullable:
                if f.elem == "string":
                    return f"w.string({value})"
                return f"w.nullable{t[4][0].upper()}{t[4][1:]}({value})"
            v = f"{value} ?? {PRIMITIVES[f.elem][1]}" if opt else value
            return f"w.{t[4]}({v})"

        if ncond is None:
            return [one(False)]
        if ncond == "":
            return [one(True)]
        return [f"if {ncond} {{", "    " + one(True), "} else {", "    " + one(False), "}"]

    # -- tagged fields ------------------------------------------------------------------------

    def tagged_fields(self):
        flex = intersect(self.msg.flexible, self.ctx) if self.msg.flexible else None
        out = []
        for f in self.fields:
            if f.tagged is None:
                continue
            rng = intersect(intersect(f.tagged, f.versions), flex)
            if rng is None:
                continue
            if f.is_struct and not f.is_array and intersect(f.nullable, rng) is not None:
                raise GenError(f"{f.where}: nullable tagged structs are not supported")
            out.append((f, rng))
        tags = [f.tag for f, _ in out]
        if len(set(tags)) != len(tags):
            raise GenError(f"{self.s.json_name}: duplicate tags")
        return flex, sorted(out, key=lambda x: x[0].tag)

    # -- emission ---------------------------------------------------------------------------

    def field_doc(self, f):
        notes = [f"versions {vstr(f.versions)}"]
        if f.nullable is not None:
            notes.append(f"nullable {vstr(f.nullable)}")
        if f.tagged is not None:
            notes.append(f"tagged {vstr(f.tagged)}, tag {f.tag}")
        about = f.about.strip()
        if about and not about.endswith("."):
            about += "."
        return doc_lines(f"{about} ({'; '.join(notes)})".strip())

    def emit(self, o, nested):
        s, msg = self.s, self.msg
        if self.top:
            proto = "KafkaRequestMessage" if msg.kind == "request" else "KafkaMessage"
            o.line(f"public struct {s.swift_name}: {proto} {{")
        else:
            o.line(f"public struct {s.swift_name}: KafkaStruct {{")
        o.indent += 1
        if self.top:
            if msg.kind == "request":
                o.line(f"public typealias Response = {msg.api}Response")
            o.line(f"public static let apiKey: Int16 = {msg.api_key}")
            o.line(f"public static let versions: ClosedRange<Int16> = {msg.accepted[0]}...{msg.accepted[1]}")
            ff = msg.flexible[0] if msg.flexible else "Int16.max"
            o.line(f"public static let firstFlexibleVersion: Int16 = {ff}")
            o.line()
        for f in self.fields:
            for d in self.field_doc(f):
                o.line(f"/// {d}")
            o.line(f"public var {f.swift_name}: {self.swift_type(f)} = {self.default_expr(f)}")
        if self.omitted:
            names = ", ".join(f"{f.name} ({vstr(f.versions)})" for f in self.omitted)
            for d in doc_lines(f"Not in any generated version, so left out: {names}."):
                o.line(f"// {d}")
        if self.fields or self.omitted:
            o.line()
        o.line("public init() {}")
        if self.fields:
            params = [f"{f.swift_name}: {self.swift_type(f)} = {self.default_expr(f)}" for f in self.fields]
            one = f"public init({', '.join(params)}) {{"
            if len("    " * o.indent + one) <= LINE:
                o.line(one)
            else:
                o.line("public init(")
                o.indent += 1
                for i, p in enumerate(params):
                    o.line(p + ("," if i < len(params) - 1 else ""))
                o.indent -= 1
                o.line(") {")
            o.indent += 1
            for f in self.fields:
                o.line(f"self.{f.param_name} = {f.swift_name}")
            o.indent -= 1
            o.line("}")
        o.line()
        self.emit_decode(o)
        o.line()
        self.emit_encode(o)
        for n in nested:
            o.line()
            n.emit(o, [])
        o.indent -= 1
        o.line("}")

    def emit_decode(self, o):
        o.line("public init(from r: inout KafkaReader, version: Int16) throws(WireError) {")
        o.indent += 1
        if self.top:
            o.line(self.flexible_assignment("r"))
        for f in self.fields:
            rng = intersect(f.untagged, self.ctx)
            if rng is None:
                continue
            o.guarded(condition(rng, self.ctx), self.read_stmts(f, rng))
        flex, tagged = self.tagged_fields()
        if flex is not None:
            if not tagged:
                o.guarded(condition(flex, self.ctx), ["try r.taggedFields()"])
            else:
                body = ["let taggedCount = try r.uvarint()",
                        "for _ in 0..<taggedCount {",
                        "    let (tag, end) = try r.taggedField()",
                        "    switch tag {"]
                for f, rng in tagged:
                    c = condition(rng, flex)
                    where = f" where {c}" if c else ""
                    stmts = self.read_stmts(f, rng)
                    if len(stmts) == 1 and len(f"            case {f.tag}{where}: {stmts[0]}") <= LINE:
                        body.append(f"    case {f.tag}{where}: {stmts[0]}")
                    else:
                        body.append(f"    case {f.tag}{where}:")
                        body += ["        " + x for x in stmts]
                body += ["    default: r.skipTaggedField(to: end)",
                         "    }",
                         "    try r.endTaggedField(end, tag: tag)",
                         "}"]
                o.guarded(condition(flex, self.ctx), body)
        o.indent -= 1
        o.line("}")

    def emit_encode(self, o):
        o.line("public func encode(to w: inout KafkaWriter, version: Int16) {")
        o.indent += 1
        if self.top:
            o.line(self.flexible_assignment("w"))
        for f in self.fields:
            rng = intersect(f.untagged, self.ctx)
            if rng is None:
                continue
            o.guarded(condition(rng, self.ctx), self.write_stmts(f, rng))
        flex, tagged = self.tagged_fields()
        if flex is not None:
            if not tagged:
                o.guarded(condition(flex, self.ctx), ["w.taggedFields()"])
            else:
                body = []
                flags = []
                for f, rng in tagged:
                    c = condition(rng, flex)
                    value = f"self.{f.param_name}"
                    d = self.default_expr(f)
                    if d == "[]":
                        differs = f"!{value}.isEmpty"
                    else:
                        differs = f"{value} != {d}"
                    flag = f"write{f.name}"
                    flags.append(flag)
                    body.append(f"let {flag} = {c + ' && ' if c else ''}{differs}")
                terms = [f"({x} ? 1 : 0)" for x in flags] if len(flags) > 1 else [f"{flags[0]} ? 1 : 0"]
                if len("    " * (o.indent + 1) + "w.uvarint(" + " + ".join(terms) + ")") <= LINE:
                    body.append("w.uvarint(" + " + ".join(terms) + ")")
                else:
                    body.append("w.uvarint(")
                    body += [f"    {t}" + (" +" if i < len(terms) - 1 else "") for i, t in enumerate(terms)]
                    body.append(")")
                for (f, rng), flag in zip(tagged, flags):
                    stmts = self.write_stmts(f, rng)
                    one = f"if {flag} {{ w.taggedField({f.tag}) {{ w in {stmts[0]} }} }}"
                    if len(stmts) == 1 and len("    " * (o.indent + 1) + one) <= LINE:
                        body.append(one)
                    else:
                        body.append(f"if {flag} {{")
                        body.append(f"    w.taggedField({f.tag}) {{ w in")
                        body += ["        " + x for x in stmts]
                        body += ["    }", "}"]
                o.guarded(condition(flex, self.ctx), body)
        o.indent -= 1
        o.line("}")

    def flexible_assignment(self, rw):
        if self.msg.flexible is None:
            return f"{rw}.flexible = false"
        c = condition(self.msg.flexible, self.ctx)
        if c is None:
            return f"{rw}.flexible = false"
        if c == "":
            return f"{rw}.flexible = true"
        return f"{rw}.flexible = version >= Self.firstFlexibleVersion"


def generate_message(msg):
    o = Out()
    o.indent = 0
    ordered = []
    seen = set()

    def visit(struct):
        for f in struct.fields:
            if f.struct is not None and f.struct.ctx is not None and f.struct.json_name not in seen:
                if intersect(f.versions, struct.ctx) is None:
                    continue
                seen.add(f.struct.json_name)
                ordered.append(f.struct)
                visit(f.struct)

    visit(msg.root)
    top = StructGen(msg, msg.root, True)
    nested = [StructGen(msg, s, False) for s in ordered]
    notes = [f"{msg.name} (api key {msg.api_key}): versions {vstr(msg.accepted)} generated; "
             f"JSON validVersions {vstr(msg.valid)}, flexibleVersions {vstr(msg.flexible)}"
             + (f", deprecatedVersions {msg.deprecated}" if msg.deprecated and msg.deprecated != "none" else "")
             + (", latest version unstable" if msg.unstable else "") + "."]
    if msg.accepted[0] < msg.valid[0] or msg.accepted[1] > msg.valid[1]:
        notes.append(f"Versions outside {vstr(msg.valid)} are generated from the fields' version ranges, "
                     "which Kafka no longer maintains for them.")
    if msg.name in NOTES:
        notes.append(NOTES[msg.name])
    for n in notes:
        for d in doc_lines(n):
            o.line(f"/// {d}")
    top.emit(o, nested)
    return o.text()


def low_version_report(msg):
    """Warnings for accepted versions the JSON no longer lists."""
    out = []
    if msg.accepted[0] < msg.valid[0]:
        out.append(f"{msg.name}: accepted {vstr(msg.accepted)} but JSON validVersions is {vstr(msg.valid)}")
    if msg.accepted[1] > msg.valid[1]:
        out.append(f"{msg.name}: accepted {vstr(msg.accepted)} beyond JSON validVersions {vstr(msg.valid)}")
    return out


def main(argv):
    if len(argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    apache_src, dst, k42_src = argv[1], argv[2], argv[3]
    os.makedirs(dst, exist_ok=True)
    written = set()
    warnings = []
    for entry in APIS:
        api, accepted = entry[0], entry[1]
        k42 = len(entry) > 2 and entry[2] == "k42"
        src = k42_src if k42 else apache_src
        repo, commit = (K42_REPO, K42_COMMIT) if k42 else (KAFKA_REPO, KAFKA_COMMIT)
        parts = []
        for kind in ("Request", "Response"):
            spec = load_json(os.path.join(src, f"{api}{kind}.json"))
            if spec["name"] != f"{api}{kind}":
                raise GenError(f"{api}{kind}.json names {spec['name']}")
            msg = Message(spec, accepted, api)
            warnings += low_version_report(msg)
            parts.append(generate_message(msg))
        header = (f"// {api}Request and {api}Response: {GENERATED_MARK}\n"
                  f"// from Kafka's message definitions ({repo} {KAFKA_PATH},\n"
                  f"// commit {commit}); do not edit.\n\n")
        text = header + "\n".join(parts)
        name = f"{api}.swift"
        path = os.path.join(dst, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        written.add(name)
    for name in sorted(os.listdir(dst)):
        if name.endswith(".swift") and name not in written:
            path = os.path.join(dst, name)
            with open(path, encoding="utf-8") as f:
                first = f.readline()
            if GENERATED_MARK in first:
                os.remove(path)
                print(f"removed stale {path}", file=sys.stderr)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {len(written)} files to {dst}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except GenError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
