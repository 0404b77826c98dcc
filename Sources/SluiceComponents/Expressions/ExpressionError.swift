// Errors of the expression language: `ExpressionError` when text does not compile (syntax or
// type error, with the place in the pipeline file), `ExpressionRuntimeError` when a compiled
// expression cannot evaluate one record (the runtime routes that record to `.errors`).

/// A place in a source file; both numbers start at 1.
public struct SourcePosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public static func < (a: SourcePosition, b: SourcePosition) -> Bool {
        (a.line, a.column) < (b.line, b.column)
    }

    /// "12:20"
    public var description: String { "\(line):\(column)" }
}

/// An expression that does not compile: a syntax error, an unknown function or meta field,
/// or a type error, at the position of the offending token.
///
/// `message` is one sentence, with a hint where there is one:
/// `unknown function 'lowr' (did you mean 'lower'?)`.
public struct ExpressionError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var position: SourcePosition

    public init(_ message: String, at position: SourcePosition) {
        self.message = message
        self.position = position
    }

    /// "12:20: unknown function 'lowr' (did you mean 'lower'?)"
    public var description: String { "\(position): \(message)" }
}

/// A compiled expression that cannot evaluate for one record: arithmetic on null or on
/// mismatched kinds, division by zero, integer overflow, a function given the wrong kind.
///
/// Deliberately a trivial value (no strings or references inside; the message is composed
/// when asked for): throwing one per bad record costs no allocation, and Swift 6.3 has an
/// open SILGen bug (swiftlang/swift#89577) that crashes the compiler on some `catch`
/// patterns over typed throws of non-trivial error types.
public struct ExpressionRuntimeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: UInt8
        public static let typeMismatch = Code(raw: 0)
        public static let divisionByZero = Code(raw: 1)
        public static let integerOverflow = Code(raw: 2)
        public static let invalidArgument = Code(raw: 3)

        public var description: String {
            ["type-mismatch", "division-by-zero", "integer-overflow", "invalid-argument"][Int(raw)]
        }
    }

    enum Detail: Hashable, Sendable {
        /// "cannot add string and number"
        case mismatch(Verb, ExprType, ExprType)
        /// "cannot negate string"
        case negate(ExprType)
        /// "integer overflow in '+'"
        case overflow(Symbol)
        case divisionByZero
        /// "lower() needs a string, got number"
        case argument(BuiltinFunction, Needs, ExprType)
    }

    enum Verb: Hashable, Sendable {
        case add, subtract, multiply, divide, remainder, compare

        var text: String {
            switch self {
            case .add: return "add"
            case .subtract: return "subtract"
            case .multiply: return "multiply"
            case .divide: return "divide"
            case .remainder: return "take the remainder of"
            case .compare: return "compare"
            }
        }
    }

    enum Symbol: Hashable, Sendable {
        case plus, minus, times, negate, abs

        var text: String {
            switch self {
            case .plus: return "'+'"
            case .minus: return "'-'"
            case .times: return "'*'"
            case .negate: return "unary '-'"
            case .abs: return "abs()"
            }
        }
    }

    enum Needs: Hashable, Sendable {
        case string, stringOrList, stringListOrObject, number, numbers, stringToFind

        var text: String {
            switch self {
            case .string: return "a string"
            case .stringOrList: return "a string or list"
            case .stringListOrObject: return "a string, list or object"
            case .number: return "a number"
            case .numbers: return "numbers"
            case .stringToFind: return "a string to look for in a string"
            }
        }
    }

    let detail: Detail

    init(_ detail: Detail) {
        self.detail = detail
    }

    public var code: Code {
        switch detail {
        case .mismatch, .negate: return .typeMismatch
        case .overflow: return .integerOverflow
        case .divisionByZero: return .divisionByZero
        case .argument: return .invalidArgument
        }
    }

    /// One sentence: "cannot add string and number", "division by zero".
    public var message: String {
        switch detail {
        case .mismatch(let verb, let a, let b): return "cannot \(verb.text) \(a) and \(b)"
        case .negate(let a): return "cannot negate \(a)"
        case .overflow(let symbol): return "integer overflow in \(symbol.text)"
        case .divisionByZero: return "division by zero"
        case .argument(let f, let needs, let got): return "\(f.rawValue)() needs \(needs.text), got \(got)"
        }
    }

    public var description: String { message }
}

/// Inside the compiler: a message and the byte offset of the offending token in the text,
/// turned into an `ExpressionError` with a line and column at the end.
struct ExpressionFailure: Error {
    var message: String
    var offset: Int

    init(_ message: String, at offset: Int) {
        self.message = message
        self.offset = offset
    }
}
