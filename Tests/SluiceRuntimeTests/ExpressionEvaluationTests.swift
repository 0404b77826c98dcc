// The expression language at run time: a table of (expression, input, expected value) over
// every operator, function, precedence rule, field path and meta field; runtime errors;
// truthiness; templates.
import SluiceRuntime
import Testing

/// The record most cases read.
let orderText = #"""
{"amount": 120, "price": 2.5, "status": "paid", "user": {"name": "Ada", "address": {"city": "Oslo"}},
 "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 1}], "tags": ["x", "y"], "weird key": 7,
 "flag": true, "none": null, "n": -3, "zero": 0, "s": "  Hi There  ", "ts": "2024-05-01T12:30:45.123Z",
 "num": "42", "float": "2.75", "big": 9223372036854775807, "i": 1, "key": "status"}
"""#
let order = json(orderText)

struct EvalCase: Sendable, CustomTestStringConvertible {
    var source: String
    var input: Value
    var expected: Value

    init(_ source: String, _ expected: Value, input: Value = order) {
        self.source = source
        self.input = input
        self.expected = expected
    }

    var testDescription: String { source }
}

@Suite struct ExpressionEvaluationTests {
    static let cases: [EvalCase] = [
        // Literals
        EvalCase("42", 42),
        EvalCase("2.5", 2.5),
        EvalCase("1e3", 1000.0),
        EvalCase("-7", -7),
        EvalCase(#""a\"b""#, "a\"b"),
        EvalCase(#"'it\'s'"#, "it's"),
        EvalCase(#"'say "hi"'"#, "say \"hi\""),
        EvalCase(#""\u00e9\n\t""#, "é\n\t"),
        EvalCase(#""\ud83d\ude00""#, "😀"),
        EvalCase("true", true),
        EvalCase("false", false),
        EvalCase("null", .null),
        EvalCase(#"[1, "a", null, [true]]"#, [1, "a", .null, [true]]),
        EvalCase("[]", []),
        EvalCase("[amount, price * 2]", [120, 5.0]),
        // Field paths
        EvalCase("amount", 120),
        EvalCase("user.address.city", "Oslo"),
        EvalCase("items[0].sku", "A1"),
        EvalCase("items[1]['qty']", 1),
        EvalCase("items[-1].sku", "B2"),
        EvalCase("items[5]", .null),
        EvalCase("items[i].sku", "B2"),
        EvalCase("this[key]", "paid"),
        EvalCase(#"this["weird key"]"#, 7),
        EvalCase(#"user["name"]"#, "Ada"),
        EvalCase("this.amount", 120),
        EvalCase("tags[0]", "x"),
        EvalCase("missing", .null),
        EvalCase("missing.deep.field[3]", .null),
        EvalCase("amount.nested", .null),
        EvalCase("this", ["a": 1], input: ["a": 1]),
        EvalCase("this[1]", "b", input: ["a", "b"]),
        // Meta
        EvalCase("meta.key", "k1"),
        EvalCase("meta.partition", 3),
        EvalCase("meta.offset", 42),
        EvalCase("meta.timestamp", 1_700_000_000_000),
        EvalCase("meta.topic", "orders"),
        EvalCase("meta.headers.source", "app"),
        EvalCase(#"meta.headers["x-trace"]"#, "abc"),
        EvalCase("meta.headers.empty", .null),
        EvalCase("meta.headers.nope", .null),
        EvalCase("len(meta.headers)", 3),
        EvalCase("meta.partition + 1", 4),
        // Arithmetic
        EvalCase("amount + 1", 121),
        EvalCase("amount - 20.5", 99.5),
        EvalCase("amount * 2", 240),
        EvalCase("amount / 4", 30),
        EvalCase("amount / 7", .double(120.0 / 7.0)),
        EvalCase("7 / 2", 3.5),
        EvalCase("price * 2", 5.0),
        EvalCase("7 % 3", 1),
        EvalCase("-7 % 3", -1),
        EvalCase("7.5 % 2", 1.5),
        EvalCase("-amount", -120),
        EvalCase("-n", 3),
        EvalCase("- -n", -3),
        EvalCase("2 + 3 * 4", 14),
        EvalCase("(2 + 3) * 4", 20),
        EvalCase("10 - 2 - 3", 5),
        EvalCase("2 * 3 % 4", 2),
        EvalCase("100 / 10 / 5", 2),
        EvalCase(#""a" + "b""#, "ab"),
        EvalCase(#"status + "!""#, "paid!"),
        EvalCase("user.name + status", "Adapaid"),
        // Comparison
        EvalCase("amount > 50", true),
        EvalCase("amount >= 120", true),
        EvalCase("amount < 120", false),
        EvalCase("amount <= 119.5", false),
        EvalCase("50 < amount", true),
        EvalCase("price == 2.5", true),
        EvalCase("amount == 120.0", true),
        EvalCase("amount != 120", false),
        EvalCase("big == 9223372036854775807", true),
        EvalCase("big > 9223372036854775806", true),
        EvalCase(#"status == "paid""#, true),
        EvalCase(#"status != "open""#, true),
        EvalCase(#"status == 'paid' and amount > 100"#, true),
        EvalCase(#""abc" < "abd""#, true),
        EvalCase(#"status >= "paid""#, true),
        EvalCase("none == null", true),
        EvalCase("missing == null", true),
        EvalCase("missing != null", false),
        EvalCase(#"amount == "120""#, false),
        EvalCase("[1, 2] == [1.0, 2]", true),
        EvalCase(#"tags == ["x", "y"]"#, true),
        EvalCase("user == user", true),
        EvalCase("flag == true", true),
        // Logic
        EvalCase("true and false", false),
        EvalCase("flag && amount > 100", true),
        EvalCase("false or none", false),
        EvalCase("none || flag", true),
        EvalCase("not flag", false),
        EvalCase("!flag", false),
        EvalCase("!none", true),
        EvalCase("not amount > 200", true),
        EvalCase("flag and not false", true),
        EvalCase("true or false and false", true),
        EvalCase("(true or false) and false", false),
        EvalCase("!flag == false", true),
        EvalCase("false and missing > 1", false),
        EvalCase("true or missing > 1", true),
        // ?? and if
        EvalCase(#"none ?? "default""#, "default"),
        EvalCase("missing ?? 0", 0),
        EvalCase(#"status ?? "x""#, "paid"),
        EvalCase("missing ?? none ?? 5", 5),
        EvalCase("missing ?? 1 + 1", 2),
        EvalCase("missing ?? 0 > -1", true),
        EvalCase("(missing ?? 10) * 2", 20),
        EvalCase(#"if amount > 100 then "big" else "small""#, "big"),
        EvalCase("if none then 1 else 2", 2),
        EvalCase(#"if flag then if amount > 1000 then "a" else "b" else "c""#, "b"),
        EvalCase("1 + if flag then 1 else 2", 2),
        EvalCase("if false then 1 else 2 + 3", 5),
        // Functions
        EvalCase("lower(user.name)", "ada"),
        EvalCase("upper(status)", "PAID"),
        EvalCase("upper('straße')", "STRASSE"),
        EvalCase(#"contains(status, "ai")"#, true),
        EvalCase(#"contains(status, "")"#, true),
        EvalCase(#"contains(tags, "y")"#, true),
        EvalCase(#"contains(tags, "z")"#, false),
        EvalCase("contains([1, 2, 3], 2.0)", true),
        EvalCase(#"starts_with(status, "pa")"#, true),
        EvalCase(#"ends_with(status, "id")"#, true),
        EvalCase(#"ends_with(status, "x")"#, false),
        EvalCase("len(status)", 4),
        EvalCase("len(items)", 2),
        EvalCase("len(user)", 2),
        EvalCase(#"len("héllo😀")"#, 6),
        EvalCase("to_string(amount)", "120"),
        EvalCase("to_string(price)", "2.5"),
        EvalCase("to_string(status)", "paid"),
        EvalCase("to_string(null)", "null"),
        EvalCase("to_string(tags)", #"["x","y"]"#),
        EvalCase("to_number(num)", 42),
        EvalCase("to_number(float)", 2.75),
        EvalCase(#"to_number(" 7 ")"#, 7),
        EvalCase(#"to_number("1e3")"#, 1000.0),
        EvalCase(#"to_number("abc")"#, .null),
        EvalCase(#"to_number("")"#, .null),
        EvalCase("to_number(true)", 1),
        EvalCase("to_number(tags)", .null),
        EvalCase("to_number(num) + 1", 43),
        EvalCase("parse_time(ts)", 1_714_566_645_123),
        EvalCase(#"parse_time("2024-05-01")"#, 1_714_521_600_000),
        EvalCase(#"parse_time("2024-05-01T14:30:45+02:00")"#, 1_714_566_645_000),
        EvalCase(#"parse_time("2000-02-29 05:30-0530")"#, 951_822_000_000),
        EvalCase(#"parse_time("1969-12-31T23:59:59Z")"#, -1000),
        EvalCase(#"parse_time("2024-02-30")"#, .null),
        EvalCase(#"parse_time("yesterday")"#, .null),
        EvalCase("parse_time(amount)", .null),
        EvalCase("trim(s)", "Hi There"),
        EvalCase(#"concat("a", 1, null, true, 2.5)"#, "a1true2.5"),
        EvalCase("concat(user.name, '-', items[0].qty)", "Ada-2"),
        EvalCase("round(2.5)", 3),
        EvalCase("round(-2.5)", -3),
        EvalCase("round(amount / 7)", 17),
        EvalCase("round(7)", 7),
        EvalCase("floor(price)", 2),
        EvalCase("floor(-price)", -3),
        EvalCase("ceil(price)", 3),
        EvalCase("round(1e300)", 1e300),
        EvalCase("abs(n)", 3),
        EvalCase("abs(-2.5)", 2.5),
        EvalCase("min(amount, 50)", 50),
        EvalCase("max(price, 2)", 2.5),
        EvalCase("max(1, 1.0)", 1),
        EvalCase("now() > 1700000000000", true),
        EvalCase("len(uuid())", 36),
        EvalCase("uuid() != uuid()", true),
    ]

    @Test(arguments: cases)
    func evaluates(_ c: EvalCase) {
        switch compiled(c.source) {
        case .failure(let e):
            Issue.record("does not compile: \(e)")
        case .success(let expression):
            #expect(evaluate(expression, c.input) == .success(c.expected))
            #expect(test(expression, c.input) == .success(c.expected.isTruthy))
        }
    }

    @Test func uuidIsVersion4() throws {
        let expression = try compiled("uuid()").get()
        guard case .success(.string(let u)) = evaluate(expression, order) else {
            Issue.record("no string")
            return
        }
        let parts = u.split(separator: "-").map(\.count)
        #expect(parts == [8, 4, 4, 4, 12])
        #expect(Array(u)[14] == "4")
        #expect("89ab".contains(Array(u)[19]))
    }

    // MARK: Runtime errors

    @Test(arguments: [
        ("amount + status", "cannot add number and string"),
        ("missing + 1", "cannot add null and number"),
        ("amount - status", "cannot subtract number and string"),
        ("tags * 2", "cannot multiply list and number"),
        ("flag / 2", "cannot divide bool and number"),
        ("user % 2", "cannot take the remainder of object and number"),
        ("amount / zero", "division by zero"),
        ("amount / 0", "division by zero"),
        ("price / 0.0", "division by zero"),
        ("amount % zero", "division by zero"),
        ("-status", "cannot negate string"),
        ("-none", "cannot negate null"),
        ("status > 5", "cannot compare string and number"),
        ("missing > 5", "cannot compare null and number"),
        ("amount < status", "cannot compare number and string"),
        ("big + 1", "integer overflow in '+'"),
        ("big * big", "integer overflow in '*'"),
        ("-big - 2", "integer overflow in '-'"),
        ("abs(-big - 1)", "integer overflow in abs()"),
        ("lower(amount)", "lower() needs a string, got number"),
        ("upper(missing)", "upper() needs a string, got null"),
        ("len(amount)", "len() needs a string, list or object, got number"),
        ("contains(amount, 1)", "contains() needs a string or list, got number"),
        ("contains(status, amount)", "contains() needs a string to look for in a string, got number"),
        ("round(status)", "round() needs a number, got string"),
        ("min(amount, status)", "min() needs numbers, got string"),
        ("starts_with(status, n)", "starts_with() needs a string, got number"),
    ])
    func failsAtRunTime(source: String, message: String) throws {
        let expression = try compiled(source).get()
        guard case .failure(let e) = evaluate(expression, order) else {
            Issue.record("evaluated")
            return
        }
        #expect(e.message == message)
        #expect(test(expression, order) == .failure(e))
    }

    @Test func runtimeErrorsHaveCodes() throws {
        let cases: [(String, ExpressionRuntimeError.Code)] = [
            ("amount / zero", .divisionByZero), ("big + 1", .integerOverflow),
            ("amount + status", .typeMismatch), ("lower(amount)", .invalidArgument),
        ]
        for (source, code) in cases {
            let expression = try compiled(source).get()
            if case .failure(let e) = evaluate(expression, order) { #expect(e.code == code) } else { Issue.record("\(source) evaluated") }
        }
    }

    // MARK: Truthiness, types, constants

    @Test(arguments: [
        ("flag", true), ("none", false), ("missing", false), ("zero", false), ("amount", true),
        ("''", false), ("'x'", true), ("[]", true), ("0.0", false), ("user", true), ("tags", true),
    ])
    func truthiness(source: String, expected: Bool) throws {
        let expression = try compiled(source).get()
        #expect(test(expression, order) == .success(expected))
    }

    @Test(arguments: [
        ("amount > 5", ExprType.bool), ("amount", .any), ("amount * 2", .number), (#""a" + status"#, .string),
        ("status + 'a'", .string), ("amount + 1", .number), ("x + y", .any), ("to_number(x)", .any),
        ("meta.partition", .number), ("meta.key", .any), ("meta.headers", .object), ("[1]", .list),
        ("lower(x)", .string), ("len(x)", .number), ("if a then 1 else 2", .number), ("if a then 1 else 'x'", .any),
        ("null ?? 3", .number), ("x ?? 3", .any), ("not x", .bool), ("null", .null),
    ])
    func staticTypes(source: String, type: ExprType) throws {
        #expect(try compiled(source).get().type == type)
    }

    @Test func constantsAreFoldedAtCompileTime() throws {
        #expect(try compiled("60 * 60 * 1000").get().constantValue == 3_600_000)
        #expect(try compiled("upper('a') + 'b'").get().constantValue == "Ab")
        #expect(try compiled("amount * 2").get().constantValue == nil)
        #expect(try compiled("now()").get().constantValue == nil)
    }

    @Test func aRecordThatIsNotAnObjectHasNoFields() throws {
        let expression = try compiled("amount ?? 'none'").get()
        #expect(evaluate(expression, "text") == .success("none"))
        #expect(evaluate(expression, .null) == .success("none"))
        #expect(evaluate(try compiled("this").get(), "text") == .success("text"))
    }

    @Test func objectsWithManyFieldsUseTheIndex() throws {
        var o = ValueObject()
        for i in 0..<40 { o["f\(i)"] = .int(Int64(i)) }
        let expression = try compiled("f37 > 36 and f3 == 3 and f0 == 0").get()
        #expect(test(expression, .object(o)) == .success(true))
    }

    // MARK: Templates

    @Test(arguments: [
        ("order {{id}} of {{upper(user)}}", "order 7 of ADA"),
        ("{{ missing }}-{{price}}", "-2.5"),
        ("no expressions", "no expressions"),
        (#"{{ "}}" }}"#, "}}"),
        ("{{ concat('a', \"b\") }}!", "ab!"),
        ("{{id}}{{id}}", "77"),
        ("{{tags}} {{flag}} {{none}}", #"["x"] true "#),
        ("{ {{id}} }", "{ 7 }"),
        ("{{ if id > 5 then 'many' else 'few' }}", "many"),
        ("", ""),
    ])
    func templates(template: String, expected: String) throws {
        let expression = try compiled(template, template: true).get()
        #expect(expression.type == .string)
        let input = json(#"{"id": 7, "user": "ada", "price": 2.5, "tags": ["x"], "flag": true, "none": null}"#)
        #expect(evaluate(expression, input) == .success(.string(expected)))
    }

    @Test func templateWithoutExpressionsIsConstant() throws {
        #expect(try compiled("plain {text}", template: true).get().constantValue == "plain {text}")
        #expect(try compiled("n={{ 1 + 1 }}", template: true).get().constantValue == "n=2")
    }

    @Test func templateRuntimeErrorsPropagate() throws {
        let expression = try compiled("total {{ amount + status }}", template: true).get()
        #expect(evaluate(expression, order) == .failure(evaluate(try compiled("amount + status").get(), order).failure!))
    }

    // MARK: API

    @Test func functionNamesAreSortedAndComplete() {
        let names = Expression.functionNames
        #expect(names == names.sorted())
        #expect(Set(names) == [
            "lower", "upper", "contains", "starts_with", "ends_with", "len", "now", "uuid", "to_string",
            "to_number", "parse_time", "trim", "concat", "round", "floor", "ceil", "abs", "min", "max",
        ])
    }

    @Test func benchmarkIsDeterministic() {
        let a = ExpressionBenchmark.run(predicates: 3200)
        let b = ExpressionBenchmark.run(predicates: 3200)
        #expect(a.checksum == b.checksum)
        #expect(a.checksum > 0 && a.checksum < 3200)
        #expect(a.perSecond > 0)
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
