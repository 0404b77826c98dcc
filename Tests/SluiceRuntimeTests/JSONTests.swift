// JSON parsing and serialization: round trips, escapes, numbers, malformed input offsets.
import PropertyBased
import SluiceRuntime
import Testing

@Suite struct JSONTests {
    // MARK: Round trips

    @Test func roundTripsGeneratedValues() async {
        await propertyCheck(count: 300, input: valueGenerator) { value in
            let text = JSON.serialize(value)
            let back = jsonResult(text)
            #expect(back == .success(value), "\(String(decoding: text, as: UTF8.self))")
            // The text is canonical: serializing what was read gives the same bytes, so
            // doubles keep their exact bits (-0.0 stays -0.0) and ints stay ints.
            if case .success(let parsed) = back { #expect(JSON.serialize(parsed) == text) }
        }
    }

    @Test func everyStrictPrefixOfADocumentIsRejected() async {
        await propertyCheck(count: 100, input: valueGenerator) { value in
            let text = JSON.serialize(["v": value])
            for n in 0..<text.count {
                guard case .failure = jsonResult(Array(text[0..<n])) else {
                    Issue.record("prefix \(n) of \(String(decoding: text, as: UTF8.self)) parsed")
                    return
                }
            }
        }
    }

    @Test func randomBytesNeverCrash() async {
        let bytes = Gen<UInt8>.value(in: 0...255).array(of: 0...40)
        await propertyCheck(count: 500, input: bytes) { input in
            if case .failure(let e) = jsonResult(input) {
                #expect(e.offset >= 0 && e.offset <= input.count)
            }
        }
    }

    @Test func keepsKeyOrderAndIsCompact() {
        let text = #"{ "b" : 1 , "a" : [ true , false , null ] , "c" : { } , "d" : [ ] }"#
        #expect(String(decoding: JSON.serialize(json(text)), as: UTF8.self) == #"{"b":1,"a":[true,false,null],"c":{},"d":[]}"#)
        #expect(json(text).description == #"{"b":1,"a":[true,false,null],"c":{},"d":[]}"#)
    }

    @Test func repeatedKeyKeepsFirstPositionAndLastValue() {
        #expect(json(#"{"a":1,"b":2,"a":3}"#).description == #"{"a":3,"b":2}"#)
    }

    @Test func parsesFromRawBuffersAndStrings() throws {
        let bytes = Array(#"[1,"x"]"#.utf8)
        let fromBuffer = try bytes.withUnsafeBytes { try JSON.parse($0) }
        #expect(fromBuffer == [1, "x"])
        #expect(try JSON.parse(#"  {"k": 2.5}  "#) == ["k": 2.5])
    }

    // MARK: Strings

    @Test(arguments: [
        (#""\"\\\/\b\f\n\r\t""#, "\"\\/\u{8}\u{C}\n\r\t"),
        (#""\u00e9\u00C9""#, "éÉ"),
        (#""\ud83d\ude00!""#, "😀!"),
        (#""\uD834\uDD1E""#, "𝄞"),
        (#""\ud83d""#, "\u{FFFD}"),
        (#""\ud83dx""#, "\u{FFFD}x"),
        (#""\udc00\u0041""#, "\u{FFFD}A"),
        (#""\ud83d\u0041""#, "\u{FFFD}A"),
        (#""\u0000""#, "\u{0}"),
        (#""héllo 😀 €""#, "héllo 😀 €"),
        (#""""#, ""),
        (#""abc\"""#, "abc\""),
    ])
    func decodesStringEscapes(text: String, expected: String) {
        #expect(json(text) == .string(expected))
    }

    @Test(arguments: [
        ("a\"b\\c", #""a\"b\\c""#),
        ("\n\r\t\u{8}\u{C}", #""\n\r\t\b\f""#),
        ("\u{0}\u{1}\u{1F}", #""\u0000\u0001\u001f""#),
        ("é/😀\u{7F}", "\"é/😀\u{7F}\""),
    ])
    func escapesStrings(value: String, expected: String) {
        #expect(String(decoding: JSON.serialize(.string(value)), as: UTF8.self) == expected)
    }

    // MARK: Numbers

    @Test(arguments: [
        ("0", Value.int(0)),
        ("-0", .int(0)),
        ("42", .int(42)),
        ("-17", .int(-17)),
        ("9223372036854775807", .int(.max)),
        ("-9223372036854775808", .int(.min)),
        ("9223372036854775808", .double(9_223_372_036_854_775_808.0)),
        ("-9223372036854775809", .double(-9_223_372_036_854_775_809.0)),
        ("123456789012345678901234567890", .double(1.2345678901234568e29)),
        ("1.0", .double(1)),
        ("2.5", .double(2.5)),
        ("-0.5", .double(-0.5)),
        ("1e2", .double(100)),
        ("1E+2", .double(100)),
        ("1e-2", .double(0.01)),
        ("2.5e-3", .double(0.0025)),
        ("0.1", .double(0.1)),
        ("0.30000000000000004", .double(0.1 + 0.2)),
        ("3.141592653589793238462643383279", .double(.pi)),
        ("1.7976931348623157e308", .double(.greatestFiniteMagnitude)),
        ("5e-324", .double(.leastNonzeroMagnitude)),
        ("1e-400", .double(0)),
        ("0.000001e6", .double(1)),
    ])
    func parsesNumbers(text: String, expected: Value) {
        #expect(json(text) == expected)
    }

    @Test func negativeZeroDoubleKeepsItsSign() {
        guard case .double(let d) = json("-0.0") else {
            Issue.record("not a double")
            return
        }
        #expect(d == 0 && d.sign == .minus)
        #expect(String(decoding: JSON.serialize(.double(-0.0)), as: UTF8.self) == "-0.0")
    }

    @Test(arguments: [
        (Value.double(1), "1.0"),
        (.double(0.1), "0.1"),
        (.double(1e21), "1e+21"),
        (.double(.leastNonzeroMagnitude), "5e-324"),
        (.double(1.5e-7), "1.5e-07"),
        (.double(.nan), "null"),
        (.double(.infinity), "null"),
        (.double(-.infinity), "null"),
        (.int(.min), "-9223372036854775808"),
        (.int(7), "7"),
        (.array([1, 2.5, "x", .null, true]), #"[1,2.5,"x",null,true]"#),
    ] as [(Value, String)])
    func serializesNumbersAndLists(value: Value, expected: String) {
        let text = JSON.serialize(value)
        #expect(String(decoding: text, as: UTF8.self) == expected)
        // Whatever is written is valid JSON.
        #expect(jsonError(expected) == nil)
    }

    // MARK: Malformed input

    struct Malformed: Sendable, CustomTestStringConvertible {
        var input: [UInt8]
        var message: String
        var offset: Int
        init(_ text: String, _ message: String, _ offset: Int) {
            self.init(bytes: Array(text.utf8), message, offset)
        }
        init(bytes: [UInt8], _ message: String, _ offset: Int) {
            self.input = bytes
            self.message = message
            self.offset = offset
        }
        var testDescription: String { String(decoding: input, as: UTF8.self) }
    }

    @Test(arguments: [
        Malformed("", "unexpected end of input", 0),
        Malformed("   ", "unexpected end of input", 3),
        Malformed(#"{"a": [1, 2"#, "unexpected end of input", 11),
        Malformed(#"{"a": "abc"#, "unterminated string", 6),
        Malformed(#"{"a":"#, "unexpected end of input", 5),
        Malformed("tru", "unexpected end of input", 3),
        Malformed("trux", "invalid literal", 0),
        Malformed("nul", "unexpected end of input", 3),
        Malformed(#"{"a":1,}"#, "expected a string key", 7),
        Malformed("[1,2,]", "expected a value", 5),
        Malformed(#"{"a" 1}"#, "expected ':'", 5),
        Malformed(#"{"a":1 "b":2}"#, "expected ',' or '}'", 7),
        Malformed(#"{"a": 1, "b": 2  ]"#, "expected ',' or '}'", 17),
        Malformed("[1 2]", "expected ',' or ']'", 3),
        Malformed(#"{"a":1} x"#, "expected end of input", 8),
        Malformed("1 2", "expected end of input", 2),
        Malformed(#"[1]]"#, "expected end of input", 3),
        Malformed(#""ab\qc""#, #"invalid escape '\q'"#, 3),
        Malformed(#""\u12G4""#, #"invalid \u escape"#, 1),
        Malformed(#""\u12"#, "unterminated string", 0),
        Malformed("\"a\nb\"", "unescaped control character in string", 2),
        Malformed(bytes: [0x22, 0x61, 0xFF, 0x22], "invalid UTF-8 in string", 1),
        Malformed(bytes: [0x22, 0xC3, 0x22], "invalid UTF-8 in string", 1),
        Malformed("01", "leading zeros are not allowed", 0),
        Malformed("-", "unexpected end of input", 1),
        Malformed("-a", "expected a digit", 1),
        Malformed("1.", "unexpected end of input", 2),
        Malformed("1.e5", "expected a digit after '.'", 2),
        Malformed("1e", "unexpected end of input", 2),
        Malformed("1e+x", "expected a digit in the exponent", 3),
        Malformed("1e400", "number out of range", 0),
        Malformed("-1e400", "number out of range", 0),
        Malformed("+1", "expected a value", 0),
        Malformed(".5", "expected a value", 0),
        Malformed("{'a': 1}", "expected a string key", 1),
        Malformed("NaN", "expected a value", 0),
    ])
    func rejectsMalformedInput(_ c: Malformed) {
        guard case .failure(let e) = jsonResult(c.input) else {
            Issue.record("parsed")
            return
        }
        #expect(e.message == c.message)
        #expect(e.offset == c.offset)
        #expect(e.description == "\(c.message) at byte \(c.offset)")
    }

    @Test func nestingIsLimitedTo512Levels() {
        let ok = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        #expect(jsonError(ok) == nil)
        let objects = String(repeating: #"{"a":"#, count: 512) + "1" + String(repeating: "}", count: 512)
        #expect(jsonError(objects) == nil)

        let deep = String(repeating: "[", count: 513) + String(repeating: "]", count: 513)
        let e = jsonError(deep)
        #expect(e?.code == .tooDeep)
        #expect(e?.description == "nesting deeper than 512 levels at byte 512")
        // Far too deep must not exhaust the stack either.
        #expect(jsonError(String(repeating: "[", count: 100_000))?.code == .tooDeep)
    }

    @Test func errorsAreTrivialValues() {
        // Rejecting a bad record must not allocate; see JSONError's documentation.
        #expect(_isPOD(JSONError.self))
        #expect(_isPOD(ExpressionRuntimeError.self))
    }
}
