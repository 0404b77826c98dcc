// Hostile pipeline files: expressions long enough to overflow a recursive compiler, YAML
// whose aliases expand without bound ("billion laughs"), documents too deep or too large, and
// `${VAR}` values that look like YAML or like a template. Each is a clear error with its
// position (or, for the values, plain text), never a crash or gigabytes of memory.
import Foundation
import SluiceRuntime
import Testing

private let expressionTooDeep = "expression is nested more than \(SluiceRuntime.Expression.maxDepth) levels deep "
    + "(each operator counts one level, also in a chain like 'a + b + c'); split it into several fields or use a function"
private let expressionTooLong = "expression is longer than \(SluiceRuntime.Expression.maxLength) bytes; "
    + "split it into several fields or use a function"
private let tooManyNodes = "the document expands to more than \(PipelineLoader.maxYAMLNodes) YAML nodes "
    + "(YAML aliases repeated inside each other?); Sluice refuses documents this large"
private let tooMuchText = "the document expands to more than \(PipelineLoader.maxYAMLTextBytes) bytes of text "
    + "(YAML aliases repeated inside each other?); Sluice refuses documents this large"
private let yamlTooDeep = "the document nests more than \(PipelineLoader.maxYAMLDepth) levels deep; "
    + "Sluice refuses documents this deep"
private let fileTooLarge = "the file is larger than \(PipelineLoader.maxFileBytes) bytes (8 MiB); "
    + "Sluice refuses files this large"

/// What loading `text` reports, each as `line:column: message`; [] when it loads.
private func problems(_ text: String, environment: [String: String] = [:]) -> [String] {
    do {
        _ = try PipelineLoader(environment: environment).load(text: text, file: "hostile.yaml")
        return []
    } catch let e as PipelineLoadError {
        return e.diagnostics.map { "\($0.line):\($0.column): \($0.message)" }
    } catch {
        return ["unexpected \(error)"]
    }
}

/// Line and column (from 1) of the first `needle` in `text` (ASCII text).
private func position(of needle: String, in text: String) -> String {
    for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        if let r = line.range(of: needle) { return "\(n + 1):\(line.distance(from: line.startIndex, to: r.lowerBound) + 1)" }
    }
    return "not found"
}

/// Nine levels of aliases of ten each (10^9 scalars once expanded), one list item a line.
private func laughs(indent: String) -> String {
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
    var rows = [indent + "- &a [" + Array(repeating: "lol", count: 10).joined(separator: ", ") + "]"]
    for k in 1..<names.count {
        let aliases = Array(repeating: "*\(names[k - 1])", count: 10).joined(separator: ", ")
        rows.append(indent + "- &\(names[k]) [" + aliases + "]")
    }
    return rows.joined(separator: "\n")
}

private func scratchDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-hostile-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// An expression far past a limit, and the column (the expression starting at 1:1) of the
/// first token past it.
struct LongExpression: Sendable, CustomTestStringConvertible {
    var name: String
    var source: String
    var column: Int
    var message: String

    init(_ name: String, _ source: String, column: Int, message: String? = nil) {
        self.name = name
        self.source = source
        self.column = column
        self.message = message ?? expressionTooDeep
    }

    var testDescription: String { name }

    /// `n` copies of `term` joined by `separator`.
    static func chain(_ term: String, _ separator: String, _ n: Int) -> String {
        Array(repeating: term, count: n).joined(separator: separator)
    }
}

@Suite struct HostileInputTests {
    @Test func theLimitsAreNamed() {
        #expect(SluiceRuntime.Expression.maxDepth == 256)
        #expect(SluiceRuntime.Expression.maxLength == 16 * 1024)
        #expect(PipelineLoader.maxYAMLNodes == 100_000)
        #expect(PipelineLoader.maxYAMLDepth == 64)
        #expect(PipelineLoader.maxYAMLTextBytes == 16 * 1024 * 1024)
        #expect(PipelineLoader.maxFileBytes == 8 * 1024 * 1024)
    }

    // MARK: Long expressions

    // Columns: the 257th operator of a chain, or the token opening the 257th level.
    static let longExpressions: [LongExpression] = [
        LongExpression("a+a+… (5000 terms)", LongExpression.chain("a", "+", 5000), column: 2 * 256 + 2),
        LongExpression("a&&a&&… (5000 terms)", LongExpression.chain("a", "&&", 5000), column: 3 * 256 + 2),
        LongExpression("a and a and … (2000 terms)", LongExpression.chain("a", " and ", 2000), column: 6 * 256 + 3),
        LongExpression("a==a==… (5000 terms)", LongExpression.chain("a", "==", 5000), column: 3 * 256 + 2),
        LongExpression("a??a??… (5000 terms)", LongExpression.chain("a", "??", 5000), column: 3 * 256 + 2),
        LongExpression("a.b.b… (5000 deep)", "a" + String(repeating: ".b", count: 5000), column: 2 * 256 + 2),
        LongExpression("a[0][0]… (5000 deep)", "a" + String(repeating: "[0]", count: 5000), column: 3 * 256 + 2),
        LongExpression("- - - … x (5000)", String(repeating: "- ", count: 5000) + "x", column: 2 * 256 + 1),
        LongExpression("!!!…x (5000)", String(repeating: "!", count: 5000) + "x", column: 256 + 1),
        LongExpression("not not … x (3000)", String(repeating: "not ", count: 3000) + "x", column: 4 * 256 + 1),
        LongExpression(
            "((((x)))) (5000)", String(repeating: "(", count: 5000) + "x" + String(repeating: ")", count: 5000),
            column: 256 + 1),
        LongExpression(
            "abs(abs(…(x))) (3000)", String(repeating: "abs(", count: 3000) + "x" + String(repeating: ")", count: 3000),
            column: 4 * 256 + 4),
        LongExpression(
            "[[[…]]] (5000)", String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000),
            column: 256 + 1),
        LongExpression(
            "if a then 1 else if … (900)", String(repeating: "if a then 1 else ", count: 900) + "0",
            column: 17 * 256 + 1),
        // The sum inside is 256 levels, exactly the limit; the '-' around it is one more.
        LongExpression("-(a+…+a) (257 terms)", "-(" + LongExpression.chain("a", "+", 257) + ")", column: 1),
        LongExpression(
            "16385 bytes", String(repeating: "a", count: SluiceRuntime.Expression.maxLength + 1),
            column: SluiceRuntime.Expression.maxLength + 1, message: expressionTooLong),
    ]

    @Test(arguments: longExpressions)
    func aLongExpressionIsACompileErrorNotACrash(_ c: LongExpression) {
        guard let e = compileError(c.source) else {
            Issue.record("compiled")
            return
        }
        #expect(e.message == c.message)
        #expect(e.position == SourcePosition(line: 1, column: c.column))
    }

    @Test func expressionsWithinTheLimitsCompileAndEvaluate() throws {
        let sum = try compiled(LongExpression.chain("a", "+", 200)).get()
        #expect(evaluate(sum, ["a": 1]) == .success(200))
        // 256 '+': exactly the limit.
        let edge = try compiled(LongExpression.chain("a", "+", 257)).get()
        #expect(evaluate(edge, ["a": 2]) == .success(514))
        #expect(compileError(LongExpression.chain("a", "+", 258))?.position == SourcePosition(line: 1, column: 514))

        let all = try compiled(LongExpression.chain("a", " and ", 200)).get()
        #expect(test(all, ["a": true]) == .success(true))
        #expect(test(all, ["a": false]) == .success(false))

        var nested: Value = 7
        for _ in 0..<199 { nested = ["b": nested] }
        let path = try compiled("a" + String(repeating: ".b", count: 199)).get()
        #expect(evaluate(path, ["a": nested]) == .success(7))

        let indexes = try compiled("a" + String(repeating: "[0]", count: 200)).get()
        var list: Value = 3
        for _ in 0..<200 { list = [list] }
        #expect(evaluate(indexes, ["a": list]) == .success(3))

        let negations = try compiled(String(repeating: "- ", count: 200) + "x").get()
        #expect(evaluate(negations, ["x": 5]) == .success(5))
        let parens = try compiled(String(repeating: "(", count: 256) + "x" + String(repeating: ")", count: 256)).get()
        #expect(evaluate(parens, ["x": 4]) == .success(4))
        let longest = try compiled(String(repeating: "a", count: SluiceRuntime.Expression.maxLength)).get()
        #expect(evaluate(longest, [:]) == .success(.null))
    }

    @Test func aLongWhereIsADiagnosticAtItsPosition() {
        let text = """
        name: deep
        sources:
          gen: { type: generator, count: 1, template: "{}" }
        transforms:
          p: { type: json, inputs: [gen] }
          f:
            type: filter
            inputs: [p]
            where: \(LongExpression.chain("a", "+", 5000))
        sinks:
          out: { type: drop, inputs: [f] }
        """
        // The expression starts at column 12; its 257th '+' is 513 bytes in.
        #expect(problems(text) == ["9:525: \(expressionTooDeep)"])
    }

    // MARK: YAML

    @Test func aBillionLaughsUnderTestInputsIsRefusedByTheLoader() {
        let text = """
        name: laughs
        sources:
          gen: { type: generator, count: 1, template: "{}" }
        sinks:
          out: { type: drop, inputs: [gen] }
        tests:
          - name: boom
            inputs:
              gen:
        \(laughs(indent: "        "))
            expect:
              out: { count: 0 }
        """
        // Reported where the aliases multiply past the budget: &e (10 × d's 11111 nodes).
        #expect(position(of: "&e", in: text) == "14:11")
        #expect(problems(text) == ["14:11: \(tooManyNodes)"])
    }

    @Test func aBillionLaughsAsAFieldValueIsRefusedByTheLoader() {
        let text = """
        name: laughs
        sources:
          gen: { type: generator, count: 1, template: "{}" }
        transforms:
          m:
            type: map
            inputs: [gen]
            set:
              x:
        \(laughs(indent: "        "))
        sinks:
          out: { type: drop, inputs: [m] }
        """
        #expect(problems(text) == ["\(position(of: "&e", in: text)): \(tooManyNodes)"])
    }

    @Test func sluiceTestRefusesABillionLaughsInTheCompanionTestFile() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/laughs.yaml"
        let companion = dir + "/laughs.test.yaml"
        try """
        name: laughs
        sources:
          gen: { type: generator, count: 1, template: "{}" }
        sinks:
          out: { type: drop, inputs: [gen] }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let bomb = """
        tests:
          - name: boom
            inputs:
              gen:
        \(laughs(indent: "        "))
            expect:
              out: { count: 0 }
        """
        try bomb.write(toFile: companion, atomically: true, encoding: .utf8)
        let loader = PipelineLoader(environment: [:])
        let pipeline = try loader.load(file: file)
        do {
            _ = try loader.tests(for: pipeline)
            Issue.record("the test cases loaded")
        } catch let e as PipelineLoadError {
            #expect(e.diagnostics.map { "\($0.file):\($0.line):\($0.column): \($0.message)" }
                == ["\(companion):\(position(of: "&e", in: bomb)): \(tooManyNodes)"])
        }

        // An ordinary companion file still gives its cases.
        try """
        tests:
          - name: one record
            inputs:
              gen: ['{"a": 1}']
            expect:
              out: { count: 1 }
        """.write(toFile: companion, atomically: true, encoding: .utf8)
        let cases = try loader.tests(for: pipeline)
        #expect(cases.map(\.name) == ["one record"])
        #expect(cases.first?.inputs["gen"]?.map(\.value) == [#"{"a": 1}"#])
    }

    @Test func aLargeScalarRepeatedByAliasesIsRefused() {
        let items = ["&big " + String(repeating: "x", count: 1 << 20)] + Array(repeating: "*big", count: 16)
        let text = """
        name: big
        sources:
          gen: { type: generator, count: 1, template: "{}" }
        sinks:
          out: { type: drop, inputs: [gen] }
        tests:
          - name: big
            inputs:
              gen: [\(items.joined(separator: ", "))]
            expect:
              out: { count: 17 }
        """
        // 17 MiB of text in a 1 MiB file, and only 20-odd nodes.
        #expect(problems(text) == ["\(position(of: "&big", in: text)): \(tooMuchText)"])
        #expect(position(of: "&big", in: text) == "9:13")
    }

    @Test func aDocumentNestedTooDeeplyIsRefused() {
        let text = """
        name: deep
        sources:
          gen: { type: generator, count: 1, template: "{}" }
        sinks:
          out: { type: drop, inputs: [gen] }
        tests:
          - name: deep
            inputs:
              gen: \(String(repeating: "[", count: 70) + String(repeating: "]", count: 70))
            expect:
              out: { count: 0 }
        """
        // Levels: the top mapping, tests, the case, inputs, then the first '[' is level 5,
        // so the 61st '[' (column 12 + 60) is level 65.
        #expect(problems(text) == ["9:72: \(yamlTooDeep)"])
    }

    @Test func aFileLargerThanTheLimitIsRefusedBeforeParsing() throws {
        let big = String(repeating: "#", count: PipelineLoader.maxFileBytes + 1)
        #expect(problems(big) == ["1:1: \(fileTooLarge)"])

        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/big.yaml"
        try Data(repeating: UInt8(ascii: "#"), count: PipelineLoader.maxFileBytes + 1).write(to: URL(fileURLWithPath: file))
        do {
            _ = try PipelineLoader(environment: [:]).load(file: file)
            Issue.record("loaded")
        } catch let e as PipelineLoadError {
            let found = e.diagnostics.map { "\($0.file):\($0.line):\($0.column): \($0.message)" }
            #expect(found == ["\(file):1:1: \(fileTooLarge)"])
        }

        // Exactly at the limit is fine.
        var text = """
        name: big
        sources:
          gen: { type: generator, count: 1, template: "{}" }
        sinks:
          out: { type: drop, inputs: [gen] }

        """
        text += "#" + String(repeating: " ", count: PipelineLoader.maxFileBytes - text.utf8.count - 2) + "\n"
        #expect(text.utf8.count == PipelineLoader.maxFileBytes)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try PipelineLoader(environment: [:]).load(file: file).name == "big")
    }

    // MARK: ${VAR}

    @Test func aValueThatLooksLikeYAMLStaysOneString() throws {
        let injected = "g\nsinks:\n  x: {type: drop}"
        for group in ["${GROUP}", "\"${GROUP}\"", "'${GROUP}'"] {
            let text = """
            name: env
            topics:
              t: {}
            sources:
              in: { type: topic, topic: t, group: \(group) }
            sinks:
              out: { type: drop, inputs: [in] }
            """
            let p = try PipelineLoader(environment: ["GROUP": injected]).load(text: text, file: "env.yaml")
            #expect(p.node("in")?.config.string("group") == injected, "\(group)")
            #expect(p.nodes.map(\.id).sorted() == ["in", "out"], "\(group)")
        }
        // Block style, and YAML's other indicators: all text.
        let tricky = "*alias &anchor # not a comment: {a: [1]}"
        let text = """
        name: env
        topics:
          t: {}
        sources:
          in:
            type: topic
            topic: t
            group: ${GROUP}
        sinks:
          out: { type: drop, inputs: [in] }
        """
        let p = try PipelineLoader(environment: ["GROUP": tricky]).load(text: text, file: "env.yaml")
        #expect(p.node("in")?.config.string("group") == tricky)
        // A value is never substituted again.
        let q = try PipelineLoader(environment: ["GROUP": "${OTHER}", "OTHER": "x"]).load(text: text, file: "env.yaml")
        #expect(q.node("in")?.config.string("group") == "${OTHER}")
    }

    @Test func aValueInAKeyStaysOneKey() throws {
        let text = """
        name: env
        topics:
          ${TOPIC}: {}
          t: {}
        sources:
          in: { type: topic, topic: t }
        sinks:
          out: { type: drop, inputs: [in] }
        """
        let ok = try PipelineLoader(environment: ["TOPIC": "orders"]).load(text: text, file: "env.yaml")
        #expect(ok.topics.map(\.name) == ["orders", "t"])
        // Not a second topic: one key, whose name is invalid.
        let found = problems(text, environment: ["TOPIC": "u: {}\n  v"])
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("3:3: invalid topic name 'u: {}\n  v'") == true, "\(found)")
    }

    @Test func aValueInATemplateIsText() throws {
        let text = """
        name: tpl
        sources:
          whole: { type: generator, count: 1, template: "${T}" }
          part: { type: generator, count: 1, template: "n{{ i }} ${T}" }
          brace: { type: generator, count: 1, template: "${OPEN}{{ i }}" }
          quoted: { type: generator, count: 1, template: "{{ '${CLOSE}' }}" }
          code: { type: generator, count: 1, template: "{{ ${CODE} }}" }
        sinks:
          out: { type: drop, inputs: [whole, part, brace, quoted, code] }
        """
        let env = ["T": "{{ 1 }}", "OPEN": "a{", "CLOSE": "}} {{ i", "CODE": "1 + 2"]
        let p = try PipelineLoader(environment: env).load(text: text, file: "tpl.yaml")
        func template(_ id: String) throws -> CompiledExpression {
            try #require(p.node(id)?.config.expression("template"))
        }
        let whole = try template("whole"), part = try template("part"), brace = try template("brace")
        let quoted = try template("quoted"), code = try template("code")
        #expect(whole.constantValue == Value.string("{{ 1 }}"))
        #expect(evaluate(part, ["i": 7]) == .success(.string("n7 {{ 1 }}")))
        // The value's '{' does not pair with the file's "{{".
        #expect(evaluate(brace, ["i": 7]) == .success(.string("a{7")))
        #expect(quoted.constantValue == Value.string("}} {{ i"))
        // Inside a part a value is expression text (as in `where`), but cannot close the part.
        #expect(code.constantValue == Value.string("3"))
        let found = problems(text, environment: env.merging(["CODE": "1 }}{{ 2"]) { $1 })
        #expect(found.count == 1 && found[0].hasSuffix("unexpected character '}'"), "\(found)")
    }

    @Test func unsetVariablesAreReportedAtTheirPositionAndCommentsAreIgnored() throws {
        let text = """
        name: env
        topics:
          t: {}
        sources:
          # ${NOPE_IN_A_COMMENT} is neither substituted nor reported
          in: { type: topic, topic: ${T}, group: "${NOPE}" }
        sinks:
          out: { type: drop, inputs: [in] }
        """
        do {
            _ = try PipelineLoader(environment: ["T": "t"]).load(text: text, file: "env.yaml")
            Issue.record("loaded")
        } catch let e as PipelineLoadError {
            #expect(e.diagnostics.map(\.description) == [
                "env.yaml:\(position(of: "${NOPE}", in: text)): error: environment variable 'NOPE' is not set "
                    + "(set it, or give a default: ${NOPE:-value})",
            ])
        }
        let p = try PipelineLoader(environment: ["T": "t", "NOPE": "g"]).load(text: text, file: "env.yaml")
        #expect(p.node("in")?.config.string("topic") == "t")
        #expect(p.node("in")?.config.string("group") == "g")
    }

    @Test func dollarDollarBraceIsALiteral() throws {
        let text = """
        name: env
        topics:
          t: {}
        sources:
          in:
            type: topic
            topic: t
            group: pre-$${X}-post
        sinks:
          out: { type: drop, inputs: [in] }
        """
        let p = try PipelineLoader(environment: ["X": "no"]).load(text: text, file: "env.yaml")
        #expect(p.node("in")?.config.string("group") == "pre-${X}-post")
    }
}
