// ExpressionBenchmark: predicate throughput for `sluice bench`. Compiles once, evaluates over
// a small set of pre-parsed records in a loop, reports predicates per second. Not a test:
// timings belong in benchmarks, never in assertions.
//
// It measures evaluation alone: the records' EvalContexts exist before the clock starts.
// Building a context per record (as a lane does: copying the parsed value, topic and headers
// into it) costs more than evaluating a simple predicate, about 50 ns on a 2-core VM, nearly
// all reference counting; build it once per record and reuse it for every expression.

public enum ExpressionBenchmark {
    /// The predicates `run(predicates:)` measures, half the evaluations each.
    public static let sources = [#"amount > 50 and status == "paid""#, "amount > 50"]

    /// Evaluates `predicates` predicates (half `amount > 50 and status == "paid"`, half
    /// `amount > 50`) over 16 pre-parsed five-field records. `checksum` counts the true
    /// results, so the work cannot be optimised away and runs can be compared.
    public static func run(predicates: Int) -> (perSecond: Double, checksum: Int) {
        let half = max(predicates / 2, 1)
        let a = try! run(source: sources[0], predicates: half)
        let b = try! run(source: sources[1], predicates: half)
        let seconds = Double(half) / a.perSecond + Double(half) / b.perSecond
        return (Double(2 * half) / seconds, a.checksum + b.checksum)
    }

    /// Throughput of one expression over the benchmark records.
    public static func run(source: String, predicates: Int) throws(ExpressionError) -> (perSecond: Double, checksum: Int) {
        let expression = try Expression.compile(source)
        var contexts = records().map { EvalContext(value: $0, topic: "orders", partition: 0, offset: 0, timestamp: 0) }
        let n = max(predicates, 1)
        var checksum = 0
        let clock = ContinuousClock()
        let started = clock.now
        contexts.withUnsafeMutableBufferPointer { records in
            var i = 0
            var k = 0
            while i < n {
                if holds(expression, &records[k]) { checksum &+= 1 }
                k = k == records.count - 1 ? 0 : k + 1
                i += 1
            }
        }
        let elapsed = clock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return (Double(n) / max(seconds, 1e-9), checksum)
    }

    /// Evaluates in place: a context read out of an array would be copied (retaining its
    /// value, key, topic and headers) for every call, which would measure the copy. The
    /// runtime builds one context per record and hands it over the same way.
    @inline(__always)
    static func holds(_ expression: CompiledExpression, _ context: inout EvalContext) -> Bool {
        (try? expression.test(context)) == true
    }

    /// Sixteen order records like `{"id":3,"user":"u3","amount":61.5,"status":"paid","country":"NL"}`.
    static func records() -> [Value] {
        let statuses = ["paid", "open", "paid", "refunded"]
        let countries = ["NL", "DE", "FR", "US"]
        return (0..<16).map { i in
            let amount = i % 3 == 0 ? "\(i * 7 + 5).5" : "\(i * 9 % 100)"
            let text = #"{"id":\#(i),"user":"u\#(i)","amount":\#(amount),"status":"\#(statuses[i % 4])","country":"\#(countries[i % 4])"}"#
            return try! JSON.parse(text)
        }
    }
}
