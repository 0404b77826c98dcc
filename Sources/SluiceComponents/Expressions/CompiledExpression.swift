// CompiledExpression: an expression parsed, type-checked and turned into closures once, then
// evaluated per record. Immutable and Sendable: one instance serves every lane.

/// A compiled expression, ready to evaluate against records.
///
/// ```swift
/// let big = try Expression.compile("amount > 50 and status == 'paid'")
/// if try big.test(EvalContext(value: record)) { … }
/// let cents = try Expression.compile("round(amount * 100)")
/// try cents.evaluate(EvalContext(value: record))   // .int(1999)
/// ```
public struct CompiledExpression: Sendable {
    /// The text it was compiled from (for a template, the whole template).
    public let source: String
    /// Its static type; `any` when it depends on the record's fields.
    public let type: ExprType
    /// The value when it does not depend on the record at all (`"100 * 60"`), else nil.
    public let constantValue: Value?

    package let valueFunction: ValueFunction
    package let testFunction: TestFunction

    init(source: String, node: CompiledNode) {
        self.source = source
        self.type = node.type
        self.constantValue = node.constant
        self.valueFunction = node.value
        self.testFunction = node.testFunction
    }

    /// The value for one record. A missing field reads as null; arithmetic on null or on
    /// mismatched kinds, division by zero and integer overflow throw.
    public func evaluate(_ ctx: EvalContext) throws(ExpressionRuntimeError) -> Value {
        try valueFunction(ctx)
    }

    /// The truthiness of the value for one record (`false`, `null`, `0`, `""` are false),
    /// computed without building the value for boolean expressions.
    public func test(_ ctx: EvalContext) throws(ExpressionRuntimeError) -> Bool {
        try testFunction(ctx)
    }
}
