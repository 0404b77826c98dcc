// Helpers for the JSON and expression tests: parse fixtures, and catch typed errors through
// `Result` (Swift 6.3 can crash on some `catch` patterns over typed throws of non-trivial
// error types, swiftlang/swift#89577, so tests never pattern-match them in `catch`).
import PropertyBased
import SluiceRuntime

func json(_ text: String) -> Value {
    do {
        return try JSON.parse(text)
    } catch {
        fatalError("bad fixture \(text): \(error)")
    }
}

func jsonResult(_ bytes: [UInt8]) -> Result<Value, JSONError> {
    Result { () throws(JSONError) -> Value in try JSON.parse(bytes) }
}

func jsonError(_ text: String) -> JSONError? {
    if case .failure(let e) = jsonResult(Array(text.utf8)) { return e }
    return nil
}

func compiled(_ source: String, template: Bool = false, at start: SourcePosition = SourcePosition(line: 1, column: 1)) -> Result<CompiledExpression, ExpressionError> {
    Result { () throws(ExpressionError) -> CompiledExpression in
        template ? try Expression.compileTemplate(source, at: start) : try Expression.compile(source, at: start)
    }
}

func compileError(_ source: String, template: Bool = false, at start: SourcePosition = SourcePosition(line: 1, column: 1)) -> ExpressionError? {
    if case .failure(let e) = compiled(source, template: template, at: start) { return e }
    return nil
}

/// The metadata every expression test record carries.
func testContext(_ value: Value) -> EvalContext {
    EvalContext(
        value: value,
        key: Array("k1".utf8),
        topic: "orders",
        partition: 3,
        offset: 42,
        timestamp: 1_700_000_000_000,
        headers: [("x-trace", Array("abc".utf8)), ("source", Array("web".utf8)), ("empty", nil), ("source", Array("app".utf8))]
    )
}

func evaluate(_ expression: CompiledExpression, _ value: Value) -> Result<Value, ExpressionRuntimeError> {
    let ctx = testContext(value)
    return Result { () throws(ExpressionRuntimeError) -> Value in try expression.evaluate(ctx) }
}

func test(_ expression: CompiledExpression, _ value: Value) -> Result<Bool, ExpressionRuntimeError> {
    let ctx = testContext(value)
    return Result { () throws(ExpressionRuntimeError) -> Bool in try expression.test(ctx) }
}

// MARK: Random values

/// Random JSON values (ints over the whole Int64 range, finite doubles of every magnitude,
/// strings with quotes, escapes, control characters and astral characters).
let valueGenerator = Generator<Value, Shrink.None<Value>>(run: { rng in
    randomValue(&rng, depth: 3)
})

func randomValue(_ rng: inout any SeededRandomNumberGenerator, depth: Int) -> Value {
    let pick = Int.random(in: 0..<(depth > 0 ? 9 : 6), using: &rng)
    switch pick {
    case 0: return .null
    case 1: return .bool(Bool.random(using: &rng))
    case 2:
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: return .int(Int64.random(in: -1000...1000, using: &rng))
        case 1: return .int([Int64.min, Int64.max, 0, -1][Int.random(in: 0..<4, using: &rng)])
        default: return .int(Int64.random(in: .min ... .max, using: &rng))
        }
    case 3:
        var d: Double
        repeat {
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: d = Double(bitPattern: UInt64.random(in: .min ... .max, using: &rng))
            case 1: d = Double(Int.random(in: -10000...10000, using: &rng)) / 100
            default: d = [0.0, -0.0, 0.1, 1e21, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 1e-7, 123456789.0][Int.random(in: 0..<8, using: &rng)]
            }
        } while !d.isFinite
        return .double(d)
    case 4, 5: return .string(randomString(&rng))
    case 6, 7:
        let n = Int.random(in: 0...4, using: &rng)
        return .array((0..<n).map { _ in randomValue(&rng, depth: depth - 1) })
    default:
        let n = Int.random(in: 0...12, using: &rng)
        var o = ValueObject()
        for _ in 0..<n { o[randomString(&rng)] = randomValue(&rng, depth: depth - 1) }
        return .object(o)
    }
}

func randomString(_ rng: inout any SeededRandomNumberGenerator) -> String {
    let alphabet: [Unicode.Scalar] = ["a", "b", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{0}", "\u{1F}", "\u{7F}", "é", "ß", "€", "\u{2028}", "😀", "𝄞", "{", "}", "[", ":", ","]
    let n = Int.random(in: 0...10, using: &rng)
    var s = String.UnicodeScalarView()
    for _ in 0..<n { s.append(alphabet[Int.random(in: 0..<alphabet.count, using: &rng)]) }
    return String(s)
}
