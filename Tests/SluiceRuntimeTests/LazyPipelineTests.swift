// The lazy JSON path end to end: records read from a file, indexed by `json`, filtered and
// changed by `map` splicing bytes, written to a file; each output line is checked against the
// same job computed with the tree API (JSON.parse and ValueObject), key order included.
import Foundation
import SluiceBroker
import SluiceRuntime
import Testing

@Suite(.serialized) struct LazyPipelineTests {
    /// Inputs that exercise the splice: escapes, unicode, repeated keys, numbers at the
    /// limits, nesting, whitespace, fields to replace, remove and rename, and lines that are
    /// not JSON or not objects.
    static let inputs: [String] = [
        #"{"id":1,"amount":60,"user":"ada","note":"x","status":"paid"}"#,
        #"{"id":2,"amount":40,"user":"bob","status":"paid"}"#,
        #"  { "id" : 3 , "amount" : 99.5 , "user" : "c\"q\\d" , "status":"p\u00e4id" }  "#,
        #"{"id":4,"amount":9223372036854775807,"user":"é€𝄞","status":"paid","cents":1}"#,
        #"{"id":5,"amount":-1.7976931348623157e308,"user":"max","status":"x"}"#,
        #"{"id":17,"amount":1.5e300,"user":"big","status":"x"}"#,
        #"{"id":6,"amount":70,"amount":30,"user":"dup"}"#,
        #"{"id":7,"amount":80,"user":"dup","amount":90}"#,
        #"{"id":8,"amount":55,"nested":{"a":[1,2,{"b":null}],"amount":1},"user":"n"}"#,
        #"{"i\u0064":9,"amount":65,"us\u0065r":"escaped-key"}"#,
        #"{"id":10,"amount":51,"customer":"already","user":"moved"}"#,
        #"{"id":11,"amount":52}"#,
        #"{"amount":53}"#,
        #"{"id":12,"amount":"60","user":"string-amount"}"#,
        #"[1,2,3]"#,
        #"not json"#,
        #"{"id":13,"amount":61,"user":"trunc""#,
        #"{"id":14,"amount":-0,"user":"zero"}"#,
        #"{"id":15,"amount":1e2,"user":"exp","note":{"deep":[[[[]]]]}}"#,
        #"{"id":16,"amount":75,"user":null,"note":"n","status":true}"#,
    ]

    static let job = """
    name: lazy
    sources:
      in: { type: file, path: "@IN@", format: jsonl, batch_records: 4 }
    transforms:
      parse: { type: json, inputs: [in] }
      big: { type: filter, inputs: [parse], where: "amount > 50" }
      tag: { type: map, inputs: [big], set: { cents: "amount * 2", status: "upper(to_string(status))" }, remove: [note], rename: { user: customer } }
    sinks:
      out: { type: file, inputs: [tag], path: "@OUT@", format: lines }
      bad: { type: file, inputs: [parse.errors, big.errors, tag.errors], path: "@BAD@", format: lines }
    """

    /// The job computed on trees: nil when the record is filtered out, an error when a
    /// component fails on it.
    static func reference(_ line: String) -> Result<String?, ReferenceError> {
        guard let v = try? JSON.parse(line) else { return .failure(.init()) }
        guard case .object(var o) = v else {
            // filter on a non-object: `amount` is null, `null > 50` fails
            return .failure(.init())
        }
        let amount = o["amount"] ?? .null
        let keep: Bool
        switch amount {
        case .int(let n): keep = n > 50
        case .double(let d): keep = d > 50
        case .null: return .failure(.init())
        default: return .failure(.init())
        }
        guard keep else { return .success(nil) }
        let cents: Value
        switch amount {
        case .int(let n):
            let (r, overflow) = n.multipliedReportingOverflow(by: 2)
            if overflow { return .failure(.init()) }
            cents = .int(r)
        case .double(let d):
            if (d * 2).isInfinite { return .failure(.init()) }
            cents = .double(d * 2)
        default: return .failure(.init())
        }
        let statusValue = o["status"] ?? .null
        let status = (statusValue.asString ?? statusValue.description).uppercased()
        o["cents"] = cents
        o["status"] = .string(status)
        o["note"] = nil
        if let u = o["user"] {
            o["user"] = nil
            o["customer"] = u
        }
        return .success(Value.object(o).description)
    }

    struct ReferenceError: Error {}

    @Test func lazyPathMatchesTheTreeAPI() async throws {
        try await withBroker { broker, dir in
            let inFile = dir + "/in.jsonl", outFile = dir + "/out.jsonl", badFile = dir + "/bad.jsonl"
            try (Self.inputs.joined(separator: "\n") + "\n").write(toFile: inFile, atomically: false, encoding: .utf8)
            // Placeholders no path can contain (the scratch directory's UUID may hold "BAD").
            let text = Self.job.replacingOccurrences(of: "@IN@", with: inFile).replacingOccurrences(of: "@OUT@", with: outFile).replacingOccurrences(of: "@BAD@", with: badFile)
            let pipeline = try PipelineLoader(environment: [:]).load(text: text, file: "lazy.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker).run()

            var expected: [String] = []
            var failures = 0
            for line in Self.inputs {
                switch Self.reference(line) {
                case .success(let out?): expected.append(out)
                case .success(nil): break
                case .failure: failures += 1
                }
            }
            let out = try String(contentsOfFile: outFile, encoding: .utf8).split(separator: "\n").map(String.init)
            // Output lines are valid JSON whose compact form (key order kept) is the tree API's.
            let canonical = try out.map { try JSON.parse($0).description }
            #expect(canonical == expected)
            let bad = try String(contentsOfFile: badFile, encoding: .utf8).split(separator: "\n")
            #expect(bad.count == failures)
            #expect(bad.contains("not json"))
            #expect(bad.contains(#"[1,2,3]"#))
        }
    }

    /// A record's fields as `map` left them are read again in place by a later filter.
    @Test func aFilterAfterMapReadsTheSplicedFields() async throws {
        try await withBroker { broker, dir in
            let outFile = dir + "/out.jsonl"
            let text = """
            name: twice
            sources:
              g: { type: generator, count: 200, template: '{"id": {{i}}, "amount": {{i % 100}}, "s": "a\\"b"}' }
            transforms:
              p: { type: json, inputs: [g] }
              m: { type: map, inputs: [p], set: { cents: "amount * 100", s: "concat(s, '!')" }, rename: { id: ref } }
              f: { type: filter, inputs: [m], where: "cents >= 9000 and ref % 2 == 0 and s == 'a\\"b!'" }
            sinks:
              out: { type: file, inputs: [f], path: "\(outFile)", format: lines }
            """
            let pipeline = try PipelineLoader(environment: [:]).load(text: text, file: "twice.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker).run()
            let out = try String(contentsOfFile: outFile, encoding: .utf8).split(separator: "\n").map { try JSON.parse(String($0)) }
            let expectedRefs = (0..<200).filter { $0 % 100 >= 90 && $0 % 2 == 0 }
            #expect(out.map { $0["ref"]?.asInt } == expectedRefs.map { Int64($0) })
            #expect(out.allSatisfy { $0["s"]?.asString == "a\"b!" && $0["id"] == nil })
        }
    }
}
