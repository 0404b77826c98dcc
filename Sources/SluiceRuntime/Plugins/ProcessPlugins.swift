// Process plugins: sources, transforms and sinks run as child processes speaking
// newline-delimited JSON (docs/plugins.md gives the protocol message by message). A request
// line is written straight from the batch's views; a reply is parsed once and its records
// copied into the output batch's arena.
import Foundation
import Logging
import SluiceLog

/// A reply that breaks the protocol. Not retried (the plugin would say the same again): the
/// batch's records go to `<id>.errors`, or the pipeline stops when that is not wired.
struct PluginProtocolError: Error, CustomStringConvertible {
    var description: String
}

enum PluginWire {
    /// `{"type":"configure","plugin":…,"component":…,"config":{…}}` and a newline.
    static func configureLine(_ manifest: PluginManifest, _ config: ComponentConfig) -> [UInt8] {
        var fields = ValueObject()
        for f in manifest.fields {
            guard let v = config.values[f.name] else { continue }
            fields[f.name] = json(v)
        }
        var o = ValueObject()
        o["type"] = .string("configure")
        o["plugin"] = .string(manifest.name)
        o["component"] = .string(config.id)
        o["pipeline"] = .string(config.pipelineName)
        o["config"] = .object(fields)
        var out = JSON.serialize(.object(o))
        out.append(10)
        return out
    }

    static func json(_ v: FieldValue) -> Value {
        switch v {
        case .string(let s): .string(s)
        case .int(let n), .milliseconds(let n), .bytes(let n): .int(n)
        case .bool(let b): .bool(b)
        case .stringList(let l): .array(l.map { .string($0) })
        case .stringMap(let m): .object(ValueObject(m.map { ($0.name, Value.string($0.value)) }))
        case .expression, .expressionMap: .null
        }
    }

    /// Appends `{"type":<type>,"id":<id>,"topic":…,"partition":…,"records":[…]}\n` for
    /// every record of `batch`. The batch carries the topic and partition of its first record
    /// (a batch is one lane's, almost always); a record names its own only when they differ.
    static func batchLine(_ type: StaticString, id: Int64, _ batch: RecordBatch, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        append("{\"type\":\"", &out); append(type, &out); append("\",\"id\":", &out)
        JSON.appendInt(id, to: &out)
        let first = batch.isEmpty ? SourceLane(topic: nil, partition: -1) : batch.lane(0)
        appendLane(first, &out)
        append(",\"records\":[", &out)
        for i in 0..<batch.count {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendRecord(batch, i, batchLane: first, into: &out)
        }
        append("]}\n", &out)
    }

    private static func appendLane(_ lane: SourceLane, _ out: inout [UInt8]) {
        if let topic = lane.topic {
            append(",\"topic\":", &out)
            JSON.appendString(topic, to: &out)
        }
        if lane.partition >= 0 {
            append(",\"partition\":", &out)
            JSON.appendInt(Int64(lane.partition), to: &out)
        }
    }

    static func appendRecord(_ batch: RecordBatch, _ i: Int, batchLane: SourceLane, into out: inout [UInt8]) {
        let s = batch.slots[i]
        out.append(UInt8(ascii: "{"))
        appendBytesField("key", s.key, batch, &out)
        out.append(UInt8(ascii: ","))
        appendBytesField("value", s.value, batch, &out)
        if s.headerCount > 0 {
            append(",\"headers\":{", &out)
            for h in Int(s.headerStart)..<Int(s.headerStart + s.headerCount) {
                if h > Int(s.headerStart) { out.append(UInt8(ascii: ",")) }
                let header = batch.headers[h]
                batch.withBytes(header.name) { name in
                    if let name, appendString(name, &out) {} else { append("\"\"", &out) }
                }
                out.append(UInt8(ascii: ":"))
                batch.withBytes(header.value) { value in
                    if let value { if !appendString(value, &out) { append("null", &out) } } else { append("null", &out) }
                }
            }
            out.append(UInt8(ascii: "}"))
        }
        append(",\"timestamp\":", &out)
        JSON.appendInt(s.timestamp, to: &out)
        let lane = batch.lane(i)
        if lane != batchLane { appendLane(lane, &out) }
        if s.offset >= 0 {
            append(",\"offset\":", &out)
            JSON.appendInt(s.offset, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// `"name":"text"`, `"name":null`, or `"name_base64":"…"` for bytes that are not UTF-8.
    private static func appendBytesField(_ name: StaticString, _ span: ByteSpan, _ batch: RecordBatch, _ out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        append(name, &out)
        batch.withBytes(span) { bytes in
            guard let bytes else { append("\":null", &out); return }
            append("\":", &out)
            if appendString(bytes, &out) { return }
            // Not UTF-8: undo `"name":` and write the base64 form.
            out.removeLast(2 + name.utf8CodeUnitCount + 1)
            out.append(UInt8(ascii: "\""))
            append(name, &out)
            append("_base64\":\"", &out)
            out.append(contentsOf: Array(Data(bytes).base64EncodedString().utf8))
            out.append(UInt8(ascii: "\""))
        }
    }

    /// Appends `bytes` as a JSON string; false (and nothing appended) when they are not UTF-8.
    @discardableResult
    static func appendString(_ bytes: UnsafeRawBufferPointer, _ out: inout [UInt8]) -> Bool {
        if !JSONIndex.isASCII(bytes), let p = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), !JSONIndex.isValidUTF8(p, count: bytes.count) { return false }
        JSON.appendString(bytes, to: &out)
        return true
    }

    @inline(__always)
    static func append(_ s: StaticString, _ out: inout [UInt8]) {
        s.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    // MARK: Replies

    /// Parses a reply line and checks its type and id.
    static func reply(_ line: [UInt8], expecting type: String, id: Int64) throws -> ValueObject {
        let v: Value
        do { v = try JSON.parse(line) } catch {
            throw PluginProtocolError(description: "answered with a line that is not JSON (\(error)): \(preview(line))")
        }
        guard case .object(let o) = v else { throw PluginProtocolError(description: "answered with \(preview(line)), not a JSON object") }
        let got = o["type"]?.asString
        if got == "error" {
            throw PluginProtocolError(description: "failed the batch: \(o["message"]?.asString ?? preview(line))")
        }
        guard got == type else { throw PluginProtocolError(description: "answered with type '\(got ?? "none")' where '\(type)' was expected: \(preview(line))") }
        guard o["id"]?.asInt == id else { throw PluginProtocolError(description: "answered batch \(id) with id \(o["id"].map { "\($0)" } ?? "none")") }
        return o
    }

    static func preview(_ line: [UInt8]) -> String {
        let text = String(decoding: line.prefix(160), as: UTF8.self)
        return line.count > 160 ? text + "…" : text
    }

}

// MARK: Transform

final class ProcessTransform: Transform, @unchecked Sendable {
    let id: String
    let instances: [PluginSupervisor]
    private let nextID = Mutex<Int64>(0)

    init(id: String, instances: [PluginSupervisor]) {
        self.id = id
        self.instances = instances
    }

    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws {
        guard !batch.isEmpty else { return }
        let partition = Int(context.lane?.partition ?? batch.lane(0).partition)
        let plugin = instances[(partition < 0 ? 0 : partition) % instances.count]
        let batchID = nextID.withLock { $0 += 1; return $0 }
        var line: [UInt8] = []
        line.reserveCapacity(batch.count * 160)
        PluginWire.batchLine("batch", id: batchID, batch, into: &line)
        let replyLine = try await plugin.exchange(line)
        let mark = output.out.slots.count
        do {
            let errors = try replyLine.withUnsafeBufferPointer { buf in
                var reader = ResultReader(buf.baseAddress!, count: buf.count)
                return try reader.apply(id: batchID, batch, into: &output.out)
            }
            for (index, message) in errors { output.fail(batch.slots[index], component: id, message) }
        } catch let e as PluginProtocolError {
            output.out.slots.removeSubrange(mark...)
            var message = "\(plugin.label) \(e.description)"
            if e.description.hasPrefix("answered with a line that is not JSON") { message += ": " + PluginWire.preview(replyLine) }
            for s in batch.slots { output.fail(s, component: id, message) }
        }
    }

    func close() async {
        for p in instances { await p.close() }
    }
}

// MARK: Sink

final class ProcessSink: Sink, @unchecked Sendable {
    let id: String
    let plugin: PluginSupervisor
    private let nextID = Mutex<Int64>(0)

    init(id: String, plugin: PluginSupervisor) {
        self.id = id
        self.plugin = plugin
    }

    func write(_ batch: RecordBatch, context: LaneContext) async throws {
        guard !batch.isEmpty else { return }
        let batchID = nextID.withLock { $0 += 1; return $0 }
        var line: [UInt8] = []
        PluginWire.batchLine("write", id: batchID, batch, into: &line)
        let reply = try await plugin.exchange(line)
        do { _ = try PluginWire.reply(reply, expecting: "ack", id: batchID) } catch let e as PluginProtocolError {
            throw ComponentError(component: self.id, "\(plugin.label) \(e.description)")
        }
    }

    func close() async throws { await plugin.close() }
}

// MARK: Source

final class ProcessSource: Source, @unchecked Sendable {
    let id: String
    let plugin: PluginSupervisor

    init(id: String, plugin: PluginSupervisor) {
        self.id = id
        self.plugin = plugin
    }

    var acknowledgesDurably: Bool { true }

    func run(_ emit: @escaping @Sendable (RecordBatch) async throws -> Void) async throws {
        defer { let p = plugin; Task { await p.close() } }
        var ack: [UInt8] = []
        while !Task.isCancelled {
            let line = try await plugin.readMessage(sending: ack)
            var batch = RecordBatch()
            _ = batch.laneIndex(SourceLane(topic: nil, partition: -1))
            let base = RecordSlot(key: .null, value: .null, offset: -1, timestamp: currentTimeMillis(), lane: 0, headerStart: 0, headerCount: 0, fieldStart: 0, fieldCount: 0, parse: .none)
            let message: (type: String?, id: Int64?, message: String?)
            do {
                message = try line.withUnsafeBufferPointer { buf in
                    var reader = ResultReader(buf.baseAddress!, count: buf.count)
                    return try reader.sourceMessage(base: base, into: &batch)
                }
            } catch let e as PluginProtocolError {
                throw ComponentError(component: id, "\(plugin.label) \(e.description): \(PluginWire.preview(line))")
            }
            switch message.type {
            case "end":
                return
            case "batch":
                guard let bid = message.id else {
                    throw ComponentError(component: id, "\(plugin.label) wrote a batch without an integer 'id': \(PluginWire.preview(line))")
                }
                try await emit(batch)
                ack = Array("{\"type\":\"ack\",\"id\":\(bid)}\n".utf8)
            case "error":
                throw ComponentError(component: id, "\(plugin.label) failed: \(message.message ?? PluginWire.preview(line))")
            default:
                throw ComponentError(component: id, "\(plugin.label) wrote a message of type '\(message.type ?? "none")'; a source writes batch, end or error")
            }
        }
    }
}

// MARK: Specs

enum PluginComponents {
    static func spec(for m: PluginManifest) -> ComponentSpec {
        ComponentSpec(kind: m.kind, type: m.name, summary: "\(m.summary) (plugin \(m.name) \(m.version), \(m.runtime.rawValue), \(m.directory))",
                      fields: m.fields + PluginHostFields.fields(for: m)) { config, context in
            switch m.runtime {
            case .wasm:
                return .transform(try WasmTransform(manifest: m, config: config))
            case .process:
                let logger = Logger(label: "sluice.plugin")
                func supervisor(_ n: Int) -> PluginSupervisor {
                    PluginSupervisor(manifest: m, component: config.id, instance: n, configureLine: PluginWire.configureLine(m, config),
                                     timeoutMs: config.milliseconds("timeout") ?? 30_000, backoffMs: config.milliseconds("restart_backoff") ?? 100,
                                     maxRestarts: Int(config.int("max_restarts") ?? 10), logger: logger)
                }
                switch m.kind {
                case .transform:
                    let n = Int(config.int("instances") ?? 1)
                    guard n >= 1, n <= 64 else { throw ComponentError(component: config.id, "instances must be between 1 and 64, got \(n)") }
                    return .transform(ProcessTransform(id: config.id, instances: (0..<n).map(supervisor)))
                case .sink: return .sink(ProcessSink(id: config.id, plugin: supervisor(0)))
                case .source: return .source(ProcessSource(id: config.id, plugin: supervisor(0)))
                }
            }
        }
    }
}

import Synchronization

// MARK: Reading a transform's reply without building trees

/// Reads `{"type":"result","id":N,"results":[…]}` straight from the reply's bytes into the
/// output batch: strings without escapes are copied once into the arena, escaped ones
/// unescaped once; nothing else is built. A reply found malformed part-way is taken back.
struct ResultReader {
    var s: JSONScanner
    let base: UnsafePointer<UInt8>
    var scratch: [UInt8] = []

    init(_ p: UnsafePointer<UInt8>, count: Int) {
        s = JSONScanner(p, count: count)
        base = p
    }

    static func notJSON(_ e: JSONError) -> PluginProtocolError {
        PluginProtocolError(description: "answered with a line that is not JSON (\(e))")
    }

    mutating func byte() throws -> UInt8 {
        s.skipWhitespace()
        guard s.pos < s.count else { throw Self.notJSON(s.endOfInput) }
        return base[s.pos]
    }

    mutating func expect(_ b: UInt8) throws {
        guard try byte() == b else { throw Self.notJSON(JSONError(.expectedValue, offset: s.pos)) }
        s.pos += 1
    }

    /// After a member or element: true at the closing bracket (consumed), false after a comma.
    mutating func endOr(_ close: UInt8) throws -> Bool {
        let b = try byte()
        s.pos += 1
        if b == close { return true }
        guard b == UInt8(ascii: ",") else { throw Self.notJSON(JSONError(close == UInt8(ascii: "}") ? .expectedCommaOrBrace : .expectedCommaOrBracket, offset: s.pos - 1)) }
        return false
    }

    /// An object key (raw bytes between the quotes) and its colon.
    mutating func key() throws -> UnsafeRawBufferPointer {
        guard try byte() == UInt8(ascii: "\"") else { throw Self.notJSON(JSONError(.expectedKey, offset: s.pos)) }
        let start = s.pos + 1
        do { _ = try s.skipString() } catch { throw Self.notJSON(error) }
        let k = UnsafeRawBufferPointer(start: base + start, count: s.pos - 1 - start)
        try expect(UInt8(ascii: ":"))
        return k
    }

    mutating func skip() throws {
        _ = try byte()
        do { _ = try s.skipValue(depth: 0) } catch { throw Self.notJSON(error) }
    }

    /// A string's bytes (unescaped), or nil for `null`; any other JSON value as its text.
    mutating func bytes(_ body: (UnsafeRawBufferPointer?) -> Void) throws {
        let b = try byte()
        let start = s.pos
        let flags: UInt8
        let kind: JSONKind
        do { (kind, flags) = try s.skipValue(depth: 0) } catch { throw Self.notJSON(error) }
        switch kind {
        case .null: body(nil)
        case .string where flags & JSONScanner.stringEscaped == 0:
            body(UnsafeRawBufferPointer(start: base + start + 1, count: s.pos - start - 2))
        case .string:
            unescape(from: start + 1, to: s.pos - 1)
            scratch.withUnsafeBytes { body($0) }
        default:
            _ = b
            body(UnsafeRawBufferPointer(start: base + start, count: s.pos - start))
        }
    }

    mutating func string() throws -> String? {
        var out: String?
        try bytes { out = $0.map { String(decoding: $0, as: UTF8.self) } }
        return out
    }

    mutating func integer() throws -> Int64? {
        let b = try byte()
        guard b == UInt8(ascii: "-") || (b >= 48 && b <= 57) else { try skip(); return nil }
        let start = s.pos
        try skip()
        return Int64(String(decoding: UnsafeRawBufferPointer(start: base + start, count: s.pos - start), as: UTF8.self))
    }

    /// Unescapes a string already checked by `skipString` into `scratch`.
    mutating func unescape(from start: Int, to end: Int) {
        scratch.removeAll(keepingCapacity: true)
        var i = start
        func hex4(_ at: Int) -> UInt32 {
            var v: UInt32 = 0
            for k in 0..<4 {
                let c = base[at + k]
                v = v << 4 | UInt32(c >= 97 ? c - 87 : c >= 65 ? c - 55 : c - 48)
            }
            return v
        }
        while i < end {
            let c = base[i]
            if c != UInt8(ascii: "\\") { scratch.append(c); i += 1; continue }
            let e = base[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): scratch.append(0x08)
            case UInt8(ascii: "f"): scratch.append(0x0C)
            case UInt8(ascii: "n"): scratch.append(0x0A)
            case UInt8(ascii: "r"): scratch.append(0x0D)
            case UInt8(ascii: "t"): scratch.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex4(i)
                i += 4
                if scalar >= 0xD800 && scalar < 0xDC00, i + 6 <= end, base[i] == UInt8(ascii: "\\"), base[i + 1] == UInt8(ascii: "u") {
                    let low = hex4(i + 2)
                    if low >= 0xDC00 && low < 0xE000 {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                if scalar >= 0xD800 && scalar < 0xE000 { scalar = 0xFFFD }
                scratch.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
            default: scratch.append(e)  // \" \\ \/
            }
        }
    }

    static func equals(_ k: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        word.withUTF8Buffer { w in k.count == w.count && memcmp(k.baseAddress!, w.baseAddress!, w.count) == 0 }
    }

    /// Reads the whole reply, appending outputs to `output.out` and returning per-record
    /// errors; throws (with `output.out` as it was) on anything malformed.
    mutating func apply(id: Int64, _ batch: RecordBatch, into out: inout RecordBatch) throws -> [(index: Int, message: String)] {
        var type: String?, gotID: Int64?, message: String?, sawResults = false
        var errors: [(index: Int, message: String)] = []
        try expect(UInt8(ascii: "{"))
        if try byte() == UInt8(ascii: "}") { s.pos += 1 } else {
            repeat {
                let k = try key()
                if Self.equals(k, "type") { type = try string() }
                else if Self.equals(k, "id") { gotID = try integer() }
                else if Self.equals(k, "message") { message = try string() }
                else if Self.equals(k, "results") {
                    sawResults = true
                    errors = try results(batch, into: &out)
                } else { try skip() }
            } while try !endOr(UInt8(ascii: "}"))
        }
        if type == "error" { throw PluginProtocolError(description: "failed the batch: \(message ?? "no message")") }
        guard type == "result" else { throw PluginProtocolError(description: "answered with type '\(type ?? "none")' where 'result' was expected") }
        guard gotID == id else { throw PluginProtocolError(description: "answered batch \(id) with id \(gotID.map { "\($0)" } ?? "none")") }
        guard sawResults else { throw PluginProtocolError(description: "answered batch \(id) without a 'results' list") }
        return errors
    }

    /// Reads a message a source wrote on its own: its type, id and message; the records of a
    /// batch are appended to `out` as records made from `base` (no key or value, now).
    mutating func sourceMessage(base: RecordSlot, into out: inout RecordBatch) throws -> (type: String?, id: Int64?, message: String?) {
        var type: String?, id: Int64?, message: String?
        try expect(UInt8(ascii: "{"))
        if try byte() == UInt8(ascii: "}") { s.pos += 1; return (nil, nil, nil) }
        repeat {
            let k = try key()
            if Self.equals(k, "type") { type = try string() }
            else if Self.equals(k, "id") { id = try integer() }
            else if Self.equals(k, "message") { message = try string() }
            else if Self.equals(k, "records") {
                try expect(UInt8(ascii: "["))
                if try byte() == UInt8(ascii: "]") { s.pos += 1 } else {
                    repeat { try record(basedOn: base, into: &out) } while try !endOr(UInt8(ascii: "]"))
                }
            } else { try skip() }
        } while try !endOr(UInt8(ascii: "}"))
        return (type, id, message)
    }

    private mutating func results(_ batch: RecordBatch, into out: inout RecordBatch) throws -> [(index: Int, message: String)] {
        var errors: [(index: Int, message: String)] = []
        let n = batch.count
        var i = 0
        try expect(UInt8(ascii: "["))
        if try byte() == UInt8(ascii: "]") { s.pos += 1 } else {
            repeat {
                guard i < n else { throw PluginProtocolError(description: "answered a batch of \(n) records with more results") }
                switch try byte() {
                case UInt8(ascii: "["):
                    s.pos += 1
                    if try byte() == UInt8(ascii: "]") { s.pos += 1 } else {
                        repeat { try record(basedOn: batch.slots[i], into: &out) } while try !endOr(UInt8(ascii: "]"))
                    }
                case UInt8(ascii: "{"):
                    s.pos += 1
                    var text: String?
                    if try byte() == UInt8(ascii: "}") { s.pos += 1 } else {
                        repeat {
                            let k = try key()
                            guard Self.equals(k, "error") else { throw PluginProtocolError(description: "answered with a result object holding '\(String(decoding: k, as: UTF8.self))'; a result is a list of records or {\"error\": …}") }
                            text = try string() ?? "null"
                        } while try !endOr(UInt8(ascii: "}"))
                    }
                    guard let text else { throw PluginProtocolError(description: "answered with an empty result object; a result is a list of records or {\"error\": …}") }
                    errors.append((i, text))
                default:
                    throw PluginProtocolError(description: "answered with a result that is neither a list of records nor {\"error\": …}")
                }
                i += 1
            } while try !endOr(UInt8(ascii: "]"))
        }
        guard i == n else { throw PluginProtocolError(description: "answered a batch of \(n) records with \(i) results") }
        return errors
    }

    private mutating func record(basedOn base: RecordSlot, into out: inout RecordBatch) throws {
        var slot = base
        try expect(UInt8(ascii: "{"))
        if try byte() == UInt8(ascii: "}") { s.pos += 1; out.slots.append(slot); return }
        repeat {
            let k = try key()
            if Self.equals(k, "value") {
                try bytes { slot.value = out.store($0) }
                slot.parse = .none
                slot.fieldCount = 0
            } else if Self.equals(k, "key") {
                try bytes { slot.key = out.store($0) }
            } else if Self.equals(k, "timestamp") {
                guard let t = try integer() else { throw PluginProtocolError(description: "wrote a timestamp that is not an integer") }
                slot.timestamp = t
            } else if Self.equals(k, "headers") {
                try expect(UInt8(ascii: "{"))
                slot.headerStart = Int32(out.headers.count)
                slot.headerCount = 0
                if try byte() == UInt8(ascii: "}") { s.pos += 1 } else {
                    repeat {
                        let name = out.store(try key())
                        guard try byte() == UInt8(ascii: "\"") || byte() == UInt8(ascii: "n") else { throw PluginProtocolError(description: "wrote headers that are not an object of strings") }
                        var value = ByteSpan.null
                        try bytes { value = out.store($0) }
                        out.headers.append(HeaderSlot(name: name, value: value))
                        slot.headerCount += 1
                    } while try !endOr(UInt8(ascii: "}"))
                }
            } else if Self.equals(k, "value_base64") || Self.equals(k, "key_base64") {
                let isValue = Self.equals(k, "value_base64")
                guard let text = try string() else {
                    if isValue { slot.value = .null } else { slot.key = .null }
                    continue
                }
                guard let data = Data(base64Encoded: text) else { throw PluginProtocolError(description: "wrote \(isValue ? "value" : "key")_base64 that is not base64") }
                let span = out.store(Array(data))
                if isValue { slot.value = span; slot.parse = .none; slot.fieldCount = 0 } else { slot.key = span }
            } else if Self.equals(k, "topic") || Self.equals(k, "partition") || Self.equals(k, "offset") {
                try skip()
            } else {
                throw PluginProtocolError(description: "wrote a record with unknown field '\(String(decoding: k, as: UTF8.self))' (known: key, value, key_base64, value_base64, headers, timestamp)")
            }
        } while try !endOr(UInt8(ascii: "}"))
        out.slots.append(slot)
    }
}
