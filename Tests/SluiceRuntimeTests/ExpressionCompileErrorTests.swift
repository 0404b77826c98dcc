// The expression language at load time: syntax and type errors with their exact message
// and position (line and column in the pipeline file), did-you-mean hints, templates.
import SluiceRuntime
import Testing

struct BrokenCase: Sendable, CustomTestStringConvertible {
    var source: String
    var start: SourcePosition
    var message: String
    var position: SourcePosition
    var template: Bool

    /// `line`/`column` are where the error is; the expression starts at `from` (1:1 unless said).
    init(_ source: String, _ message: String, _ line: Int, _ column: Int, from start: SourcePosition = SourcePosition(line: 1, column: 1), template: Bool = false) {
        self.source = source
        self.start = start
        self.message = message
        self.position = SourcePosition(line: line, column: column)
        self.template = template
    }

    var testDescription: String { source }
}

@Suite struct ExpressionCompileErrorTests {
    static let cases: [BrokenCase] = [
        // Unknown names, with hints
        BrokenCase("lowr(name)", "unknown function 'lowr' (did you mean 'lower'?)", 1, 1),
        BrokenCase("x and lowr(name)", "unknown function 'lowr' (did you mean 'lower'?)", 12, 20, from: SourcePosition(line: 12, column: 14)),
        BrokenCase("uper(name)", "unknown function 'uper' (did you mean 'upper'?)", 1, 1),
        BrokenCase("startswith(a, 'b')", "unknown function 'startswith' (did you mean 'starts_with'?)", 1, 1),
        BrokenCase("to_strng(a)", "unknown function 'to_strng' (did you mean 'to_string'?)", 1, 1),
        BrokenCase("frobnicate(x)", "unknown function 'frobnicate'", 1, 1),
        BrokenCase("meta.parttion", "unknown meta field 'parttion' (did you mean 'partition'?)", 1, 6),
        BrokenCase("meta.offest > 5", "unknown meta field 'offest' (did you mean 'offset'?)", 1, 6),
        BrokenCase("meta.header.x", "unknown meta field 'header' (did you mean 'headers'?)", 1, 6),
        BrokenCase("meta.color", "unknown meta field 'color'", 1, 6),
        BrokenCase("meta", "'meta' must be followed by a field: meta.key, meta.partition, meta.offset, meta.timestamp, meta.topic, meta.headers", 1, 1),
        // Arity and argument types
        BrokenCase("lower(a, b)", "'lower' takes 1 argument, got 2", 1, 1),
        BrokenCase("now(1)", "'now' takes no arguments, got 1", 1, 1),
        BrokenCase("min(1)", "'min' takes 2 arguments, got 1", 1, 1),
        BrokenCase("concat()", "'concat' takes at least 1 argument, got 0", 1, 1),
        BrokenCase("len(5)", "argument 1 of 'len' must be a string, list or object, not a number", 1, 5),
        BrokenCase("lower(3)", "argument 1 of 'lower' must be a string, not a number", 1, 7),
        BrokenCase("trim(null)", "argument 1 of 'trim' must be a string, not null", 1, 6),
        BrokenCase("starts_with(name, 1)", "argument 2 of 'starts_with' must be a string, not a number", 1, 19),
        BrokenCase("round('2.5')", "argument 1 of 'round' must be a number, not a string", 1, 7),
        BrokenCase("contains(5, 1)", "argument 1 of 'contains' must be a string or list, not a number", 1, 10),
        BrokenCase(#"contains("abc", 1)"#, "argument 2 of 'contains' must be a string when argument 1 is one, not a number", 1, 17),
        BrokenCase("max(amount, [1])", "argument 2 of 'max' must be a number, not a list", 1, 13),
        // Operators
        BrokenCase(#""a" - 1"#, "cannot subtract a string", 1, 1),
        BrokenCase("amount * true", "cannot multiply a bool", 1, 10),
        BrokenCase("amount + null", "cannot add null", 1, 10),
        BrokenCase("[1] + [2]", "cannot add a list", 1, 1),
        BrokenCase(#""total: " + 5"#, "cannot add string and number", 1, 11),
        BrokenCase("-'x'", "cannot negate a string", 1, 2),
        BrokenCase(#"not "yes""#, "'not' needs a bool, not a string", 1, 5),
        BrokenCase("!5", "'!' needs a bool, not a number", 1, 2),
        BrokenCase(#"amount > 5 and "x""#, "'and' needs bools, not a string", 1, 16),
        BrokenCase("1 || flag", "'||' needs bools, not a number", 1, 1),
        BrokenCase("if 1 then 2 else 3", "'if' needs a bool condition, not a number", 1, 4),
        BrokenCase("if lower(a) then 2 else 3", "'if' needs a bool condition, not a string", 1, 4),
        BrokenCase(#""a" < 5"#, "cannot compare string and number", 1, 5),
        BrokenCase("[1] < [2]", "'<' needs numbers or strings, not a list", 1, 1),
        BrokenCase("amount >= true", "'>=' needs numbers or strings, not a bool", 1, 11),
        BrokenCase("1 / 0", "division by zero", 1, 3),
        BrokenCase("9223372036854775807 + 1", "integer overflow in '+'", 1, 21),
        BrokenCase("5.x", "cannot read field 'x' of a number", 1, 3),
        BrokenCase("'abc'[0]", "cannot index a string", 1, 6),
        BrokenCase("a[true]", "an index must be a number or a string, not a bool", 1, 3),
        // Syntax
        BrokenCase("amount +", "unexpected end of expression", 1, 9),
        BrokenCase("(amount > 5", "expected ')', found end of expression", 1, 12),
        BrokenCase("amount = 5", "unexpected '=' (did you mean '=='?)", 1, 8),
        BrokenCase("a & b", "unexpected '&' (did you mean '&&' or 'and'?)", 1, 3),
        BrokenCase(#""abc"#, "unterminated string", 1, 1),
        BrokenCase("amount > 5 status", "unexpected 'status'", 1, 12),
        BrokenCase("a.", "expected a field name after '.', found end of expression", 1, 3),
        BrokenCase(#""\q""#, #"invalid escape '\q'"#, 1, 2),
        BrokenCase("a # b", "unexpected character '#'", 1, 3),
        BrokenCase("", "empty expression", 1, 1),
        BrokenCase("   ", "empty expression", 1, 4),
        BrokenCase("if a then b", "expected 'else', found end of expression", 1, 12),
        BrokenCase("if a b else c", "expected 'then', found 'b'", 1, 6),
        BrokenCase("lower(a", "expected ',' or ')', found end of expression", 1, 8),
        BrokenCase("[1, 2", "expected ',' or ']', found end of expression", 1, 6),
        BrokenCase("a.b(1)", "only functions can be called", 1, 4),
        BrokenCase("12abc", "unexpected 'a' after a number", 1, 3),
        BrokenCase("and", "unexpected 'and'", 1, 1),
        // Positions: characters (not bytes) are counted, lines follow newlines in the text
        BrokenCase(#""é😀" + lowr(x)"#, "unknown function 'lowr' (did you mean 'lower'?)", 1, 8),
        BrokenCase("amount > 5 and\n  lowr(status) == 'x'", "unknown function 'lowr' (did you mean 'lower'?)", 8, 3, from: SourcePosition(line: 7, column: 10)),
        BrokenCase("a and\nb and\n\n    c +", "unexpected end of expression", 4, 8),
        BrokenCase("if a\nthen 'x'\nelse 1 - 'y'", "cannot subtract a string", 3, 10),
        // Templates: positions point into the template
        BrokenCase("hello {{ lowr(x) }}", "unknown function 'lowr' (did you mean 'lower'?)", 3, 14, from: SourcePosition(line: 3, column: 5), template: true),
        BrokenCase("a {{ x", "unclosed '{{' in template", 1, 3, template: true),
        BrokenCase("a {{ }} b", "empty '{{ }}' in template", 1, 3, template: true),
        BrokenCase("line one\n  {{ 1 + }}", "unexpected end of expression", 2, 10, template: true),
        BrokenCase("{{ a }} and {{ 'x' - 1 }}", "cannot subtract a string", 1, 16, template: true),
    ]

    @Test(arguments: cases)
    func reportsError(_ c: BrokenCase) {
        guard let e = compileError(c.source, template: c.template, at: c.start) else {
            Issue.record("compiled")
            return
        }
        #expect(e.message == c.message)
        #expect(e.position == c.position)
        #expect(e.description == "\(c.position.line):\(c.position.column): \(c.message)")
    }

    @Test func keywordsAfterADotAreFieldNames() throws {
        let expression = try compiled("a.if + a.and + this.meta").get()
        #expect(evaluate(expression, ["a": ["if": 1, "and": 2], "meta": 3]) == .success(6))
    }

    @Test func noHintWhenNothingIsClose() {
        #expect(compileError("xyz(1)")?.message == "unknown function 'xyz'")
        #expect(compileError("ab(1)")?.message == "unknown function 'ab' (did you mean 'abs'?)")
    }
}
