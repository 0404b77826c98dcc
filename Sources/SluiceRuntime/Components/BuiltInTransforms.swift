// Built-in transforms: json, filter, map, key, route.
import SluiceLog

struct JSONTransform: Transform {
    let id: String
    func process(_ records: [PipelineRecord], into output: inout TransformOutput) async throws {
        output.out.reserveCapacity(records.count)
        for var r in records {
            guard let v = r.value else { output.fail(r, component: id, "the record has no value to parse"); continue }
            do {
                r.parsed = try JSON.parse(v)
                output.out.append(r)
            } catch {
                output.fail(r, component: id, "invalid JSON: \(error)")
            }
        }
    }
}

struct FilterTransform: Transform {
    let id: String
    let condition: CompiledExpression
    func process(_ records: [PipelineRecord], into output: inout TransformOutput) async throws {
        for r in records {
            do {
                if try condition.test(r.context) { output.out.append(r) }
            } catch {
                output.fail(r, component: id, "where: \(error.message)")
            }
        }
    }
}

struct MapTransform: Transform {
    let id: String
    let set: [(name: String, expression: CompiledExpression)]
    let remove: [String]
    let rename: [(name: String, value: String)]
    func process(_ records: [PipelineRecord], into output: inout TransformOutput) async throws {
        output.out.reserveCapacity(records.count)
        for var r in records {
            guard case .object? = r.parsed else {
                output.fail(r, component: id, "map needs a JSON object (add a json transform before it)")
                continue
            }
            do {
                var computed: [(String, Value)] = []
                computed.reserveCapacity(set.count)
                do {
                    let ctx = r.context
                    for (name, e) in set { computed.append((name, try e.evaluate(ctx))) }
                }
                // Take the object and the text out of the record so both are uniquely
                // referenced and change in place.
                guard case .object(var object)? = r.parsed.take() else { continue }
                // Only new fields added: append them to the JSON text instead of re-encoding
                // the whole object (the common enrich case).
                let appendOnly = remove.isEmpty && rename.isEmpty && computed.allSatisfy { object[$0.0] == nil }
                for (name, v) in computed { object[name] = v }
                for name in remove { object[name] = nil }
                for (from, to) in rename {
                    if let v = object[from] {
                        object[from] = nil
                        object[to] = v
                    }
                }
                if appendOnly, var text = r.value.take(), let close = text.lastIndex(where: { $0 != 32 && $0 != 10 && $0 != 13 && $0 != 9 }), text[close] == UInt8(ascii: "}") {
                    text.removeSubrange(close...)
                    var first = object.count == computed.count
                    for (name, v) in computed {
                        if !first { text.append(UInt8(ascii: ",")) }
                        first = false
                        JSON.serialize(.string(name), into: &text)
                        text.append(UInt8(ascii: ":"))
                        JSON.serialize(v, into: &text)
                    }
                    text.append(UInt8(ascii: "}"))
                    r.value = text
                    r.parsed = .object(object)
                } else {
                    r.parsed = .object(object)
                    r.syncValueFromParsed()
                }
                output.out.append(r)
            } catch let e {
                output.fail(r, component: id, "set: \(e.message)")
            }
        }
    }
}

struct KeyTransform: Transform {
    let id: String
    let key: CompiledExpression
    func process(_ records: [PipelineRecord], into output: inout TransformOutput) async throws {
        for var r in records {
            do {
                r.key = try Self.bytes(key.evaluate(r.context))
                output.out.append(r)
            } catch let e {
                output.fail(r, component: id, "key: \(e.message)")
            }
        }
    }

    static func bytes(_ v: Value) -> [UInt8]? {
        switch v {
        case .null: return nil
        case .string(let s): return Array(s.utf8)
        default: return JSON.serialize(v)
        }
    }
}

struct RouteTransform: Transform {
    let id: String
    let routes: [(name: String, expression: CompiledExpression)]
    func process(_ records: [PipelineRecord], into output: inout TransformOutput) async throws {
        for r in records {
            do {
                let ctx = r.context
                var matched = false
                for (name, e) in routes where try e.test(ctx) {
                    output.named[name, default: []].append(r)
                    matched = true
                    break
                }
                if !matched { output.named["default", default: []].append(r) }
            } catch let e {
                output.fail(r, component: id, "route: \(e.message)")
            }
        }
    }
}
