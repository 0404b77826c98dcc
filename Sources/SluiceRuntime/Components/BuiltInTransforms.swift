// Built-in transforms: json, filter, map, key, route. They work on the batch's views: `json`
// indexes each value's top-level fields in place, `filter` keeps slots, `map` writes each
// new value into one arena per batch by splicing the original bytes with the changed fields,
// and `key` and `route` move slots. Nothing here allocates per record on the usual path.
import SluiceLog

/// The message of an expression failure (the only error `withContext` bodies throw here).
func expressionMessage(_ error: any Error) -> String {
    (error as? ExpressionRuntimeError)?.message ?? "\(error)"
}

struct JSONTransform: Transform {
    let id: String
    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws {
        output.out.slots.reserveCapacity(batch.count)
        // The fields table is taken out of the output so it is uniquely held while it grows.
        var fields: [JSONField] = []
        swap(&fields, &output.out.fields)
        fields.reserveCapacity(fields.count + batch.count * 8)
        for i in 0..<batch.count {
            var slot = batch.slots[i]
            if slot.parse != .none {
                output.pass(slot)
                continue
            }
            guard !slot.value.isNull else {
                output.fail(slot, component: id, "the record has no value to parse")
                continue
            }
            let before = fields.count
            let outcome: Result<JSONScan, JSONError> = batch.withBytes(slot.value) { bytes in
                Result { () throws(JSONError) -> JSONScan in try JSONIndex.scan(bytes!, into: &fields) }
            }
            switch outcome {
            case .success(let scan) where scan.rootKind == .object && !scan.hasDuplicateKeys:
                slot.parse = .fields
                slot.fieldStart = Int32(before)
                slot.fieldCount = Int32(fields.count - before)
                output.pass(slot)
            case .success:
                // Not an object, or an object repeating a key: a tree, as JSON.parse reads it.
                fields.removeSubrange(before...)
                let tree = batch.withBytes(slot.value) { (try? JSONIndex.materialize($0!)) ?? .null }
                slot.parse = .tree
                slot.fieldStart = Int32(output.out.trees.count)
                slot.fieldCount = 0
                output.out.trees.append(tree)
                output.pass(slot)
            case .failure(let error):
                fields.removeSubrange(before...)
                output.fail(slot, component: id, "invalid JSON: \(error)")
            }
        }
        swap(&fields, &output.out.fields)
    }
}

struct FilterTransform: Transform {
    let id: String
    let condition: CompiledExpression
    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws {
        condition.select(batch, into: &output, component: id, what: "where")
    }
}

extension CompiledExpression {
    /// Evaluates this predicate over every record of `batch`: the records for which it is
    /// true are passed on, those it fails on go to errors. One loop over the batch, no
    /// allocation per record.
    func select(_ batch: RecordBatch, into output: inout TransformOutput, component: String, what: String) {
        output.out.slots.reserveCapacity(batch.count)
        batch.forEachContext { i, ctx in
            do {
                if try test(ctx) { output.pass(batch.slots[i]) }
            } catch {
                output.fail(batch.slots[i], component: component, "\(what): \(expressionMessage(error))")
            }
        }
    }
}

struct MapTransform: Transform {
    let id: String
    let set: [(name: String, expression: CompiledExpression)]
    let remove: [String]
    let rename: [(name: String, value: String)]
    /// `"name"` of each set field and rename target, as JSON text.
    let setKeys: [[UInt8]]
    let renameKeys: [[UInt8]]
    let setNames: [[UInt8]]
    let removeNames: [[UInt8]]
    let renameFrom: [[UInt8]]
    let renameTo: [[UInt8]]

    init(id: String, set: [(name: String, expression: CompiledExpression)], remove: [String], rename: [(name: String, value: String)]) {
        self.id = id
        self.set = set
        self.remove = remove
        self.rename = rename
        setKeys = set.map { JSON.serialize(.string($0.name)) }
        renameKeys = rename.map { JSON.serialize(.string($0.value)) }
        setNames = set.map { Array($0.name.utf8) }
        removeNames = remove.map { Array($0.utf8) }
        renameFrom = rename.map { Array($0.name.utf8) }
        renameTo = rename.map { Array($0.value.utf8) }
    }

    /// Where an output field's key and value come from.
    struct OutField {
        enum Key {
            /// The key text of input field n, kept as it is.
            case input(Int)
            /// The name of set field n (`setKeys`).
            case set(Int)
            /// The target of rename n (`renameKeys`).
            case renamed(Int)
        }
        enum Source {
            /// The value bytes of input field n, kept as they are.
            case input(Int)
            /// Computed value n of the set fields.
            case computed(Int)
        }
        var key: Key
        var value: Source

        /// Key and value of one input field, both untouched.
        var untouched: Int? {
            if case .input(let k) = key, case .input(let v) = value, k == v { return k }
            return nil
        }
    }

    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws {
        output.out.slots.reserveCapacity(batch.count)
        let a = output.out.arenaStore()
        var text: [UInt8] = []
        swap(&text, &output.out.stores[a])
        var fields: [JSONField] = []
        swap(&fields, &output.out.fields)
        text.reserveCapacity(text.count + batch.count * 128)
        fields.reserveCapacity(fields.count + batch.count * (8 + set.count))
        var computed: [Value] = []
        computed.reserveCapacity(set.count)
        var plan: [OutField] = []
        plan.reserveCapacity(16)
        // The functions alone: walking `set` per record would copy each (name, expression)
        // pair, four retains and releases.
        let functions = set.map(\.expression.valueFunction)
        batch.forEachContext { i, ctx in
            var slot = batch.slots[i]
            let isObject = switch slot.parse {
            case .fields: true
            case .tree: if case .object = ctx.value { true } else { false }
            case .none: false
            }
            guard isObject else {
                output.fail(slot, component: id, "map needs a JSON object (add a json transform before it)")
                return
            }
            computed.removeAll(keepingCapacity: true)
            do {
                for f in functions { computed.append(try f(ctx)) }
            } catch {
                output.fail(slot, component: id, "set: \(expressionMessage(error))")
                return
            }
            if let doc = ctx.document {
                let inFields = batch.fields[Int(slot.fieldStart)..<Int(slot.fieldStart + slot.fieldCount)]
                if !inFields.contains(where: \.keyEscaped) {
                    let start = text.count, fieldStart = fields.count
                    splice(doc.bytes, inFields, computed, &plan, into: &text, fields: &fields)
                    slot.value = ByteSpan(store: Int32(a), start: Int32(start), count: Int32(text.count - start))
                    slot.fieldStart = Int32(fieldStart)
                    slot.fieldCount = Int32(fields.count - fieldStart)
                    output.pass(slot)
                    return
                }
            }
            // The tree path: a value parsed as a tree, or keys with escapes.
            guard case .object(var object) = ctx.document?.tree ?? ctx.value else {
                output.fail(slot, component: id, "map needs a JSON object (add a json transform before it)")
                return
            }
            for (j, (name, _)) in set.enumerated() { object[name] = computed[j] }
            for name in remove { object[name] = nil }
            for (from, to) in rename {
                if let v = object[from] {
                    object[from] = nil
                    object[to] = v
                }
            }
            let start = text.count
            JSON.serialize(.object(object), into: &text)
            slot.value = ByteSpan(store: Int32(a), start: Int32(start), count: Int32(text.count - start))
            slot.parse = .tree
            slot.fieldStart = Int32(output.out.trees.count)
            slot.fieldCount = 0
            output.out.trees.append(.object(object))
            output.pass(slot)
        }
        swap(&text, &output.out.stores[a])
        swap(&fields, &output.out.fields)
    }

    /// Writes the new object: the input's fields in order (key and value bytes copied as they
    /// are unless set, removed or renamed), then the fields it adds, with the same order rules
    /// as setting, removing and renaming keys of a `ValueObject`. Appends the output's field
    /// index to `fields`.
    func splice(_ bytes: UnsafeRawBufferPointer, _ inFields: ArraySlice<JSONField>, _ computed: [Value], _ plan: inout [OutField], into text: inout [UInt8], fields: inout [JSONField]) {
        let base = inFields.startIndex
        func keyEquals(_ f: OutField, _ name: [UInt8]) -> Bool {
            switch f.key {
            case .set(let j): return setNames[j] == name
            case .renamed(let r): return renameTo[r] == name
            case .input(let k):
                let field = inFields[base + k]
                let n = Int(field.keyEnd - field.keyStart)
                guard n == name.count else { return false }
                var at = Int(field.keyStart)
                for b in name {
                    if bytes[at] != b { return false }
                    at += 1
                }
                return true
            }
        }
        plan.removeAll(keepingCapacity: true)
        for j in 0..<inFields.count { plan.append(OutField(key: .input(j), value: .input(j))) }
        let appendOnly = remove.isEmpty && rename.isEmpty
        var added = 0
        for j in 0..<set.count {
            if let k = plan.firstIndex(where: { keyEquals($0, setNames[j]) }) {
                plan[k].value = .computed(j)
            } else {
                plan.append(OutField(key: .set(j), value: .computed(j)))
                added += 1
            }
        }
        for name in removeNames {
            if let k = plan.firstIndex(where: { keyEquals($0, name) }) { plan.remove(at: k) }
        }
        for r in 0..<rename.count {
            if let k = plan.firstIndex(where: { keyEquals($0, renameFrom[r]) }) {
                let v = plan.remove(at: k).value
                if let t = plan.firstIndex(where: { keyEquals($0, renameTo[r]) }) {
                    plan[t].value = v
                } else {
                    plan.append(OutField(key: .renamed(r), value: v))
                }
            }
        }
        let start = text.count
        // Only new fields: the input's text up to its closing brace is kept as it is.
        if appendOnly && added == set.count, let close = lastNonSpace(bytes), bytes[close] == UInt8(ascii: "}") {
            text.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[..<close]))
            for f in inFields { fields.append(f) }
            var first = inFields.isEmpty
            for p in plan[inFields.count...] {
                if !first { text.append(UInt8(ascii: ",")) }
                first = false
                writeNew(p, computed, start: start, into: &text, fields: &fields)
            }
            text.append(UInt8(ascii: "}"))
            return
        }
        text.append(UInt8(ascii: "{"))
        for (n, p) in plan.enumerated() {
            if n > 0 { text.append(UInt8(ascii: ",")) }
            if let untouched = p.untouched {
                // Untouched: the key and the value's bytes as they were.
                let f = inFields[base + untouched]
                let keyAt = text.count + 1
                text.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[Int(f.keyStart - 1)...Int(f.keyEnd)]))
                text.append(UInt8(ascii: ":"))
                let valueAt = text.count
                text.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[Int(f.valueStart)..<Int(f.valueEnd)]))
                var g = f
                g.keyStart = Int32(keyAt - start)
                g.keyEnd = g.keyStart + (f.keyEnd - f.keyStart)
                g.valueStart = Int32(valueAt - start)
                g.valueEnd = Int32(text.count - start)
                fields.append(g)
            } else {
                writeNew(p, computed, start: start, into: &text, fields: &fields, inFields: inFields, bytes: bytes)
            }
        }
        text.append(UInt8(ascii: "}"))
    }

    /// Writes one field whose key or value is new.
    func writeNew(_ p: OutField, _ computed: [Value], start: Int, into text: inout [UInt8], fields: inout [JSONField], inFields: ArraySlice<JSONField>? = nil, bytes: UnsafeRawBufferPointer? = nil) {
        let keyAt = text.count + 1
        var keyEscaped = false
        switch p.key {
        case .input(let n):
            // An input key is only written here beside a new value, from the splice path.
            let f = inFields![inFields!.startIndex + n]
            text.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes![Int(f.keyStart - 1)...Int(f.keyEnd)]))
            keyEscaped = f.keyEscaped
        case .set(let j), .renamed(let j):
            let k: [UInt8]
            if case .set = p.key { k = setKeys[j] } else { k = renameKeys[j] }
            text.append(contentsOf: k)
            keyEscaped = k.contains(UInt8(ascii: "\\"))
        }
        let keyEnd = text.count - 1
        text.append(UInt8(ascii: ":"))
        let valueAt = text.count
        let kind: JSONKind
        var valueEscaped = false
        switch p.value {
        case .input(let n):
            // An input value is only written here under a new key, from the splice path.
            let f = inFields![inFields!.startIndex + n]
            text.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes![Int(f.valueStart)..<Int(f.valueEnd)]))
            kind = f.kind
            valueEscaped = f.valueEscaped
        case .computed(let j):
            let v = computed[j]
            JSON.serialize(v, into: &text)
            kind = Self.kind(v)
            if kind == .string { valueEscaped = text[valueAt..<text.count].contains(UInt8(ascii: "\\")) }
        }
        fields.append(JSONField(keyStart: Int32(keyAt - start), keyEnd: Int32(keyEnd - start), valueStart: Int32(valueAt - start), valueEnd: Int32(text.count - start), kind: kind, keyEscaped: keyEscaped, valueEscaped: valueEscaped))
    }

    static func kind(_ v: Value) -> JSONKind {
        switch v {
        case .null: .null
        case .bool: .bool
        case .int, .double: .number
        case .string: .string
        case .array: .array
        case .object: .object
        }
    }

    func lastNonSpace(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var i = bytes.count
        while i > 0 {
            i -= 1
            let b = bytes[i]
            if b != 32 && b != 10 && b != 13 && b != 9 { return i }
        }
        return nil
    }
}

struct KeyTransform: Transform {
    let id: String
    let key: CompiledExpression
    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws {
        output.out.slots.reserveCapacity(batch.count)
        batch.forEachContext { i, ctx in
            var slot = batch.slots[i]
            do {
                slot.key = Self.store(try key.evaluate(ctx), in: &output.out)
                output.pass(slot)
            } catch {
                output.fail(slot, component: id, "key: \(expressionMessage(error))")
            }
        }
    }

    /// A key's bytes: a string as it is, null as no key, other values as JSON.
    static func bytes(_ v: Value) -> [UInt8]? {
        switch v {
        case .null: return nil
        case .string(let s): return Array(s.utf8)
        default: return JSON.serialize(v)
        }
    }

    /// A key's bytes written into `batch`'s arena.
    static func store(_ v: Value, in batch: inout RecordBatch) -> ByteSpan {
        switch v {
        case .null: return .null
        case .string(var s): return s.withUTF8 { batch.store(UnsafeRawBufferPointer($0)) }
        default: return batch.store(JSON.serialize(v))
        }
    }
}

struct RouteTransform: Transform {
    let id: String
    let routes: [(name: String, expression: CompiledExpression)]
    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws {
        batch.forEachContext { i, ctx in
            do {
                output.route(try routes.first { try $0.expression.test(ctx) }?.name ?? "default", batch.slots[i])
            } catch {
                output.fail(batch.slots[i], component: id, "route: \(expressionMessage(error))")
            }
        }
    }
}
