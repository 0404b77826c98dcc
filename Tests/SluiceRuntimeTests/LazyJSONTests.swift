// Lazy JSON (JSONIndex): the scanner accepts and rejects exactly what JSON.parse does, with the
// same error (code and offset), and the fields it notes decode to the values the parser builds,
// bit for bit. Every check compares with JSON.parse of the same bytes or with fixed positions.
import SluiceRuntime
import Testing

@Suite struct LazyJSONTests {
    static let record = #"{"id":123,"user":"user-123","amount":37,"status":"paid","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#

    // MARK: Positions

    @Test func notesTheFieldsOfARecord() throws {
        let bytes = Array(Self.record.utf8)
        let s = try #require(try? scanned(bytes).get())
        #expect(s.scan.rootKind == .object)
        #expect(!s.scan.hasDuplicateKeys)
        #expect(s.scan.closingBrace == Int32(bytes.count - 1))
        #expect(s.fields.map(\.kind) == [.number, .string, .number, .string, .string])
        // {"id":123,"user":"user-123",...
        //  ^2 ^4 ^6 ^9 ^11 ^15 ^17      ^27
        let id = s.fields[0]
        #expect((id.keyStart, id.keyEnd, id.valueStart, id.valueEnd) == (2, 4, 6, 9))
        let user = s.fields[1]
        #expect((user.keyStart, user.keyEnd, user.valueStart, user.valueEnd) == (11, 15, 17, 27))
        #expect(s.fields.allSatisfy { !$0.keyEscaped && !$0.valueEscaped })
        expectAgreement(bytes)
    }

    @Test func positionsSkipWhitespaceAndCoverTheValue() throws {
        let bytes = Array(" \t{ \"a\" :\n [ 1 , 2 ] , \"b\\n\":\"x\\ty\" }\r\n".utf8)
        let s = try #require(try? scanned(bytes).get())
        #expect(s.fields.count == 2)
        let a = s.fields[0], b = s.fields[1]
        #expect(String(decoding: bytes[Int(a.valueStart)..<Int(a.valueEnd)], as: UTF8.self) == "[ 1 , 2 ]")
        #expect(a.kind == .array && !a.keyEscaped)
        #expect(String(decoding: bytes[Int(b.keyStart)..<Int(b.keyEnd)], as: UTF8.self) == #"b\n"#)
        #expect(b.keyEscaped && b.valueEscaped && b.kind == .string)
        #expect(String(decoding: bytes[Int(b.valueStart)..<Int(b.valueEnd)], as: UTF8.self) == #""x\ty""#)
        #expect(bytes[Int(s.scan.closingBrace)] == UInt8(ascii: "}"))
        expectAgreement(bytes)
    }

    @Test func appendsAfterWhatIsThereAndLeavesItAloneOnError() throws {
        let bytes = Array(#"{"a":1,"b":"x"}"#.utf8)
        var fields: [JSONField] = []
        try bytes.withUnsafeBytes { doc in
            _ = try JSONIndex.scan(doc, into: &fields)
            _ = try JSONIndex.scan(doc, into: &fields)
        }
        #expect(fields.count == 4)
        #expect(fields[0] == fields[2] && fields[1] == fields[3])

        let bad = Array(#"{"c":2,"d":[1,}"#.utf8)
        let result = bad.withUnsafeBytes { doc in
            Result { () throws(JSONError) -> JSONScan in try JSONIndex.scan(doc, into: &fields) }
        }
        guard case .failure(let e) = result else {
            Issue.record("scanned a bad document")
            return
        }
        #expect(e == parsed(bad).error)
        #expect(fields.count == 4)
    }

    @Test(arguments: [
        ("[1,2,{\"a\":3}]", JSONKind.array), ("\"text\"", .string), ("-12.5e3", .number), ("7", .number),
        ("true", .bool), ("false", .bool), ("null", .null), (" [ ] ", .array), ("\"\"", .string),
    ])
    func nonObjectRootsHaveAKindAndNoFields(text: String, kind: JSONKind) throws {
        let s = try #require(try? scanned(Array(text.utf8)).get())
        #expect(s.scan.rootKind == kind)
        #expect(s.fields.isEmpty)
        #expect(!s.scan.hasDuplicateKeys)
        expectAgreement(Array(text.utf8))
    }

    @Test(arguments: ["{}", "{ }", " {\n\t} "])
    func emptyObjects(text: String) throws {
        let bytes = Array(text.utf8)
        let s = try #require(try? scanned(bytes).get())
        #expect(s.scan.rootKind == .object && s.fields.isEmpty && !s.scan.hasDuplicateKeys)
        #expect(bytes[Int(s.scan.closingBrace)] == UInt8(ascii: "}"))
        expectAgreement(bytes)
    }

    // MARK: Strings

    @Test(arguments: [
        #"{"s":"\"\\\/\b\f\n\r\t"}"#,
        #"{"s":"a\"b","t":"\\","u":"\/"}"#,
        #"{"s":"\u00e9\u00C9","t":"\u0000\u001f\u007f"}"#,
        #"{"s":"\ud83d\ude00!","t":"\uD834\uDD1E"}"#,
        #"{"s":"\ud83d","t":"\ud83dx","u":"\udc00\u0041","v":"\ud83d\u0041","w":"\ud83d\ud83d\ude00"}"#,
        #"{"s":"\udfff\ud800","t":"\ud800\\u0041"}"#,
        #"{"s":"héllo 😀 €","t":"日本語","u":"\u00e9é"}"#,
        #"{"s":"","t":"a","u":"0123456789abcdef0123456789abcdef"}"#,
        "{\"s\":\"x\u{7F}y\"}",
        #"{"s":"quote at the end of a long string: \""}"#,
        #"{"s":"12345678\"","t":"1234567\\","u":"123456789012345\"x"}"#,
    ])
    func decodesStringsAsTheParserDoes(text: String) {
        expectAgreement(Array(text.utf8))
    }

    @Test(arguments: [
        #"{"s":"ab\qc"}"#, #"{"s":"\u12G4"}"#, #"{"s":"\u00g0"}"#, #"{"s":"\u-123"}"#, #"{"s":"\u12"#,
        #"{"s":"\u12""#, #"{"s":"\"#, #"{"s":"abc"#,
        #"{"s":"\ud83d\u12x4"}"#, #"{"s":"\ud83d\u12"#, #"{"s":"\x"}"#, #"{"s":"\U0041"}"#, #"{"s":"\ "}"#,
        "{\"s\":\"a\nb\"}", "{\"s\":\"a\tb\"}", "{\"s\":\"0123456789\u{1}\"}", "{\"s\":\"\\\u{0}\"}",
        #"{"a\q":1}"#, "{\"a\u{1F}\":1}", #"{"a:1}"#,
    ])
    func rejectsBadStringsAsTheParserDoes(text: String) {
        expectAgreement(Array(text.utf8), expectError: true)
    }

    @Test(arguments: [
        [0x22, 0x61, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0xC0, 0x80, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22],
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], [0x22, 0xE2, 0x82, 0x22], [0x22, 0x80, 0x22],
        [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D], [0x7B, 0x22, 0x6B, 0x22, 0x3A, 0x22, 0xC3, 0x5C, 0x6E, 0xA9, 0x22, 0x7D],
        // Invalid UTF-8 followed by a control character or no closing quote: those win.
        [0x22, 0xFF, 0x0A, 0x22], [0x22, 0xFF, 0x61], [0x22, 0xFF, 0x5C, 0x71, 0x22],
        Array("{\"k\":\"é\"}".utf8), Array("\"\u{10FFFF}\u{E000}\u{FFFF}\"".utf8),
    ] as [[UInt8]])
    func validatesUTF8AsTheParserDoes(bytes: [UInt8]) {
        expectAgreement(bytes)
    }

    /// Every two-byte sequence, and three- and four-byte ones over every second byte, inside a
    /// string: the scanner's own validator must draw the line where `String(validating:)` does.
    @Test func utf8ValidationMatchesTheParserOnEverySequenceShape() {
        var failures = 0
        func check(_ middle: [UInt8]) {
            guard failures < 5 else { return }
            if !expectAgreement([0x22] + middle + [0x22]) { failures += 1 }
        }
        for b0 in 0x80...0xFF {
            for b1 in 0...0xFF { check([UInt8(b0), UInt8(b1)]) }
        }
        for b0 in 0xE0...0xEF {
            for b1 in 0...0xFF {
                for b2 in [0x41, 0x80, 0xBF, 0xC0] { check([UInt8(b0), UInt8(b1), UInt8(b2)]) }
            }
        }
        for b0 in 0xF0...0xF7 {
            for b1 in 0...0xFF {
                for b2 in [0x41, 0x80, 0xBF] {
                    for b3 in [0x80, 0xBF, 0x22] { check([UInt8(b0), UInt8(b1), UInt8(b2), UInt8(b3)]) }
                }
            }
        }
        #expect(failures == 0)
    }

    // MARK: Keys

    @Test func findsEscapedKeysByTheirUnescapedText() throws {
        let bytes = Array(#"{"x":0,"a\u0062":1,"c\"d":2,"\u00e9":3}"#.utf8)
        let s = try #require(try? scanned(bytes).get())
        #expect(s.fields.map(\.keyEscaped) == [false, true, true, true])
        #expect(!s.scan.hasDuplicateKeys)
        #expect(find("ab", s, bytes) == 1)
        #expect(find(#"c"d"#, s, bytes) == 2)
        #expect(find("é", s, bytes) == 3)
        #expect(find(#"a\u0062"#, s, bytes) == nil)
        expectAgreement(bytes)
    }

    @Test(arguments: [
        (#"{"a":1,"b":2,"a":3}"#, "a", 2),
        (#"{"a":1,"a":2,"a":{"x":[3]}}"#, "a", 2),
        (#"{"ab":1,"a\u0062":2}"#, "ab", 1),
        (#"{"a\u0062":1,"ab":2,"c":3}"#, "ab", 1),
        (#"{"\ud800":1,"\udfff":2}"#, "\u{FFFD}", 1),
        // Keys compare as Strings, as in ValueObject: canonically equivalent keys (here the
        // same marks in another order, so the same length) are one key.
        ("{\"e\u{301}\u{327}\":1,\"e\u{327}\u{301}\":2}", "e\u{301}\u{327}", 1),
        (#"{"e\u0327\u0301":1,"e\u0301\u0327":2}"#, "e\u{301}\u{327}", 1),
    ])
    func repeatedKeysAreFlaggedAndTheLastOneWins(text: String, key: String, last: Int) throws {
        let bytes = Array(text.utf8)
        let s = try #require(try? scanned(bytes).get())
        #expect(s.scan.hasDuplicateKeys)
        #expect(find(key, s, bytes, hint: 0) == last)
        #expect(find(key, s, bytes, hint: last) == last)
        let value = bytes.withUnsafeBytes { JSONIndex.value(s.fields[last], in: $0) }
        #expect(parsed(bytes).ok?[key].map { identical($0, value) } == true)
        expectAgreement(bytes)
    }

    /// ValueObject compares keys of small objects only when their UTF-8 lengths agree and uses
    /// a dictionary (String equality alone) above `indexThreshold` keys; the scan and `find`
    /// follow it, whatever it decides.
    @Test func canonicallyEquivalentKeysFollowValueObject() throws {
        let small = "{\"é\":1,\"e\u{301}\":2,\"K\":3,\"\u{212A}\":4}"
        let large = "{" + (0..<9).map { "\"k\($0)\":0," }.joined() + "\"é\":1,\"e\u{301}\":2,\"K\":3,\"\u{212A}\":4}"
        for text in [small, large, #"{"\u00e9":1,"e\u0301":2}"#] {
            let bytes = Array(text.utf8)
            let s = try #require(try? scanned(bytes).get())
            guard case .object(let object) = try #require(parsed(bytes).ok) else {
                Issue.record("not an object")
                continue
            }
            #expect(s.scan.hasDuplicateKeys == (object.count < s.fields.count))
            for key in ["é", "e\u{301}", "K", "\u{212A}"] {
                let found = find(key, s, bytes).map { i in bytes.withUnsafeBytes { JSONIndex.value(s.fields[i], in: $0) } }
                #expect(found == object[key], "\(key) in \(text)")
            }
            expectAgreement(bytes)
        }
    }

    @Test func manyKeysUseTheHashedCheck() throws {
        let keys = (0..<40).map { "key\($0)" }
        let unique = "{" + keys.map { "\"\($0)\":1" }.joined(separator: ",") + "}"
        #expect(try #require(try? scanned(Array(unique.utf8)).get()).scan.hasDuplicateKeys == false)
        let repeated = "{" + (keys + ["key7"]).map { "\"\($0)\":1" }.joined(separator: ",") + "}"
        let s = try #require(try? scanned(Array(repeated.utf8)).get())
        #expect(s.scan.hasDuplicateKeys)
        #expect(find("key7", s, Array(repeated.utf8), hint: 7) == 40)
        // Same length, different bytes: not repeats.
        let sameLength = "{" + (0..<100).map { "\"k\(1000 + $0)\":\($0)" }.joined(separator: ",") + "}"
        #expect(try #require(try? scanned(Array(sameLength.utf8)).get()).scan.hasDuplicateKeys == false)
        for text in [unique, repeated, sameLength] { expectAgreement(Array(text.utf8)) }
    }

    @Test func findTriesTheHintButDoesNotTrustIt() throws {
        let bytes = Array(Self.record.utf8)
        let s = try #require(try? scanned(bytes).get())
        for hint in [-5, -1, 0, 1, 2, 3, 4, 5, 99, Int.max] {
            #expect(find("status", s, bytes, hint: hint) == 3, "hint \(hint)")
            #expect(find("id", s, bytes, hint: hint) == 0, "hint \(hint)")
            #expect(find("note", s, bytes, hint: hint) == 4, "hint \(hint)")
            #expect(find("missing", s, bytes, hint: hint) == nil, "hint \(hint)")
            #expect(find("statu", s, bytes, hint: hint) == nil, "hint \(hint)")
            #expect(find("", s, bytes, hint: hint) == nil, "hint \(hint)")
        }
        let empty: [JSONField] = []
        let none = empty.withUnsafeBufferPointer { fields in
            bytes.withUnsafeBytes { doc in Array("id".utf8).withUnsafeBytes { JSONIndex.find($0, in: fields, bytes: doc, hint: 0) } }
        }
        #expect(none == nil)
    }

    // MARK: Scalars

    @Test func stringEqualsUnescapesAndComparesAsStrings() throws {
        let text = "{\"s\":\"paid\",\"e\":\"pa\\u0069d\",\"q\":\"a\\\"b\",\"n\":5,\"u\":\"é\",\"x\":\"\\u00e9\",\"z\":\"\","
            + "\"l\":\"0123456789abcdefghij\",\"k\":\"\u{212A}\"}"
        let bytes = Array(text.utf8)
        let s = try #require(try? scanned(bytes).get())
        func equals(_ field: Int, _ literal: String) -> Bool {
            bytes.withUnsafeBytes { doc in Array(literal.utf8).withUnsafeBytes { JSONIndex.stringEquals(s.fields[field], $0, in: doc) } }
        }
        #expect(equals(0, "paid"))
        #expect(!equals(0, "pai") && !equals(0, "paidx") && !equals(0, "Paid") && !equals(0, ""))
        #expect(equals(1, "paid") && !equals(1, #"pa\u0069d"#))
        #expect(equals(2, #"a"b"#) && !equals(2, #"a\"b"#))
        #expect(!equals(3, "5"))
        #expect(equals(4, "é") && equals(5, "é") && !equals(4, "e"))
        // As Value and the expression language compare strings: canonically equivalent is equal.
        #expect(equals(4, "e\u{301}") == (Value.string("é") == .string("e\u{301}")))
        #expect(equals(6, "") && !equals(6, " "))
        #expect(equals(7, "0123456789abcdefghij") && !equals(7, "0123456789abcdefghiJ"))
        // The Kelvin sign is "K" as a String, though its bytes are not ASCII.
        #expect(equals(8, "K") == (Value.string("\u{212A}") == .string("K")))
        #expect(equals(8, "\u{212A}") && !equals(8, "k"))
    }

    @Test func doubleReadsIntsAndDoubles() throws {
        let text = #"{"i":123,"d":37.5,"z":-0.0,"e":1e2,"m":9223372036854775807,"s":"1","b":true,"n":null,"o":{"a":1}}"#
        let bytes = Array(text.utf8)
        let s = try #require(try? scanned(bytes).get())
        let doubles = s.fields.map { f in bytes.withUnsafeBytes { JSONIndex.double(f, in: $0) } }
        #expect(doubles[0] == 123)
        #expect(doubles[1] == 37.5)
        #expect(doubles[2]?.bitPattern == (-0.0 as Double).bitPattern)
        #expect(doubles[3] == 100)
        #expect(doubles[4] == Double(Int64.max))
        #expect(doubles[5...].allSatisfy { $0 == nil })
        expectAgreement(bytes)
    }

    @Test(arguments: [
        "0", "-0", "-0.0", "0.0", "42", "-17", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "-9223372036854775809", "18446744073709551615", "18446744073709551616", "123456789012345678901234567890",
        "1.0", "0.1", "0.30000000000000004", "3.141592653589793238462643383279", "1e308", "-1e308",
        "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308", "17976931348623157e292",
        "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791.9",
        "1e309", "-1e309", "1e400", "10e307", "0.01e310", "5e-324", "2.4703282292062328e-324", "2.4703282292062327e-324",
        "1e-400", "-1e-400", "2.2250738585072014e-308", "4.9406564584124654e-324", "1e22", "1e23", "9007199254740993",
        "9007199254740993.0", "123456789012345678e-5", "0.000001e6", "1E+2", "1e-2", "2.5E-3", "1e0000000000000000000001",
        "1e99999999999999999999", "1e-99999999999999999999", "0e99999999", "0.0e-99999999999", "-0e5",
        "00", "01", "-01", "-", "-a", "1.", "1.e5", "1e", "1e+", "1e+x", "+1", ".5", "1.5.5", "0x10", "1_000", "--1", "Infinity", "NaN",
    ])
    func decodesNumbersBitForBit(text: String) {
        expectAgreement(Array("{\"n\":\(text)}".utf8))
        expectAgreement(Array("[\(text)]".utf8))
        expectAgreement(Array(text.utf8))
    }

    /// JSONParser stops reading an exponent's digits once it reaches 10^6, so a number with an
    /// eight-digit exponent and a million fraction digits lands on its exact fast path (here
    /// 1.0) where the text itself, 10^9000000, is out of range. The scan leaves such numbers to
    /// the parser and agrees.
    @Test func hugeExponentsAreDecidedByTheParser() {
        let zeros = String(repeating: "0", count: 999_999)
        #expect(parsed(Array("0.\(zeros)1e10000000".utf8)).ok == .double(1))
        for text in ["0.\(zeros)1e10000000", "1e10000000", "1e-10000000", "-1e99999999", "0.1e-99999999999"] {
            expectAgreement(Array("{\"n\":\(text)}".utf8), "\(text.prefix(12))…\(text.suffix(12))")
        }
    }

    @Test func decodesRandomNumbersBitForBit() {
        var random = SplitMix64(seed: 0x5EED_0001)
        var failures = 0
        for i in 0..<3000 {
            let text: String
            if i % 2 == 0 {
                // Shortest round-trip texts of doubles of every magnitude (often 17 digits).
                var d = Double(bitPattern: random.next())
                if !d.isFinite { d = Double(random.next() % 1_000_000) / 7 }
                text = "\(d)"
            } else {
                let digits = (0..<Int(random.next() % 25 + 1)).map { _ in String(random.next() % 10) }.joined()
                let fraction = random.next() % 2 == 0 ? "" : "." + String(random.next() % 100_000)
                let exponent = random.next() % 3 == 0 ? "" : "e\(Int(random.next() % 701) - 350)"
                text = (random.next() % 4 == 0 ? "-" : "") + (digits.hasPrefix("0") && digits.count > 1 ? "1" + digits : digits)
                    + fraction + exponent
            }
            if !expectAgreement(Array("{\"n\":\(text)}".utf8)) {
                failures += 1
                if failures >= 5 { break }
            }
        }
        #expect(failures == 0)
    }

    // MARK: Nesting

    @Test func nestedValuesDecodeToTheParsersTrees() throws {
        let text = #"{"u":{"name":"ada","tags":["x",1,2.5,true,null,{}],"deep":{"a":{"b":[[]]}}},"l":[1,[2,[3]]],"e":[],"o":{}}"#
        let bytes = Array(text.utf8)
        let s = try #require(try? scanned(bytes).get())
        #expect(s.fields.map(\.kind) == [.object, .array, .array, .object])
        let u = s.fields[0]
        let whole = bytes.withUnsafeBytes {
            JSONIndex.value(kind: .object, escaped: false, start: Int(u.valueStart), end: Int(u.valueEnd), in: $0)
        }
        #expect(identical(whole, try #require(parsed(bytes).ok?["u"])))
        expectAgreement(bytes)
    }

    @Test func nestingIsLimitedAsInTheParser() {
        let max = JSON.maxDepth
        let cases = [
            String(repeating: "[", count: max) + String(repeating: "]", count: max),
            String(repeating: "[", count: max + 1) + String(repeating: "]", count: max + 1),
            "{\"a\":" + String(repeating: "[", count: max - 1) + String(repeating: "]", count: max - 1) + "}",
            "{\"a\":" + String(repeating: "[", count: max) + String(repeating: "]", count: max) + "}",
            String(repeating: #"{"a":"#, count: max) + "1" + String(repeating: "}", count: max),
            String(repeating: #"{"a":"#, count: max + 1) + "1" + String(repeating: "}", count: max + 1),
            "[" + String(repeating: #"{"a":["#, count: max / 2) + String(repeating: "]}", count: max / 2) + "]",
            String(repeating: "[", count: 100_000),
            String(repeating: "[", count: max) + String(repeating: "]", count: max - 1),
        ]
        for text in cases { expectAgreement(Array(text.utf8)) }
        #expect(scanned(Array(cases[0].utf8)).error == nil)
        #expect(scanned(Array(cases[1].utf8)).error?.code == .tooDeep)
        #expect(scanned(Array(cases[3].utf8)).error?.code == .tooDeep)
        #expect(scanned(Array(cases[5].utf8)).error?.code == .tooDeep)
    }

    // MARK: Malformed documents

    @Test(arguments: [
        "", " ", "\t\n\r ", #"{"a":1} x"#, #"{"a":1}}"#, "1 2", #""a" "b""#, "[1]]", "{\"a\":1}\u{0}", "{\"a\":1}\u{0B}",
        "\u{0C}{}", "\u{A0}{}", "{\u{0B}\"a\":1}", "{\"a\":1,}", "[1,2,]", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "{\"a\": 1, \"b\": 2  ]",
        "[1 2]", "{'a': 1}", "{a:1}", "{\"a\":}", "{\"a\"}", "{,}", "[,]", "{\"a\":[}", "{\"a\":{]}", "[}", "{]", "{\"a\":tru}",
        "{\"a\":trux}", "{\"a\":nul}", "{\"a\":fals}", "{\"a\":truee}", "[true false]", "{\"a\":[1,{\"b\":2,}]}",
        "{\"a\":[1,{\"b\" 2}]}", "{\"a\":[1,{\"b\":2]}]}", "{\"a\":[1,{3:2}]}", "{\"a\":{\"b\":[1,2}}", "[{\"a\":1}}",
    ])
    func rejectsMalformedDocumentsAsTheParserDoes(text: String) {
        expectAgreement(Array(text.utf8), expectError: true)
    }

    @Test func everyPrefixAgrees() {
        let docs = [
            Self.record,
            #"{"a":[1,-2.5e-3,{"b":"c\u00e9\n"}],"d":true,"e":false,"f":null,"g":{}}"#,
            " { \"k\" : [ 0 , 1e5 , \"\\ud83d\\ude00\" ] , \"é\" : \"😀\" } ",
            #"[{"x":"y"},[[]],"s",-0,12345678901234567890]"#,
        ]
        var failures = 0
        for doc in docs {
            let bytes = Array(doc.utf8)
            for n in 0...bytes.count where failures < 5 {
                if !expectAgreement(Array(bytes[0..<n]), "prefix \(n) of \(doc)") { failures += 1 }
            }
        }
        #expect(failures == 0)
    }

    @Test func randomMutationsAgree() {
        let seeds = [
            Self.record,
            #"{"a":[1,-2.5e-3,{"b":"c\u00e9\n"}],"d":true,"e":false,"f":null,"g":{}}"#,
            #"{"s":"\"\\\/\b\f\n\r\t\ud83d\ude00","k\u0061":"é€😀","n":[0,-0.0,1e308,5e-324,9223372036854775808]}"#,
            #"[{"x":"y"},[[]],"s",-0,12345678901234567890,{"a":1,"a":2}]"#,
            "{\"deep\":[[[[[[{\"a\":[[[[1]]]]}]]]]]],\"t\":\"0123456789abcdefghijklmnopqrstuvwxyz\"}",
        ].map { Array($0.utf8) }
        let interesting: [UInt8] = Array(#" "\{}[]:,0123456789-+.eEutrfalsn/bx"#.utf8)
            + [0x00, 0x09, 0x0A, 0x0B, 0x0D, 0x1F, 0x7F, 0x80, 0xA9, 0xBF, 0xC0, 0xC3, 0xE2, 0xED, 0xF0, 0xF4, 0xF5, 0xFF]
        var random = SplitMix64(seed: 0x5EED_0002)
        var failures = 0
        var rejected = 0
        let iterations = 5000
        for i in 0..<iterations where failures < 5 {
            var bytes = seeds[i % seeds.count]
            for _ in 0..<Int(random.next() % 4 + 1) {
                let at = bytes.isEmpty ? 0 : Int(random.next() % UInt64(bytes.count))
                let byte = random.next() % 4 == 0
                    ? UInt8(truncatingIfNeeded: random.next())
                    : interesting[Int(random.next() % UInt64(interesting.count))]
                switch random.next() % 6 {
                case 0, 1: if !bytes.isEmpty { bytes[at] = byte }
                case 2: bytes.insert(byte, at: at)
                case 3: if !bytes.isEmpty { bytes.remove(at: at) }
                case 4:
                    let length = Int(random.next() % 8)
                    let end = min(bytes.count, at + length)
                    bytes.insert(contentsOf: bytes[at..<end], at: end)
                default:
                    bytes.removeLast(Int(random.next() % UInt64(min(bytes.count, 6) + 1)))
                }
            }
            if parsed(bytes).error != nil { rejected += 1 }
            if !expectAgreement(bytes, "mutation \(i): \(bytes)") { failures += 1 }
        }
        #expect(failures == 0)
        // The mutations exercise both sides.
        #expect(rejected > iterations / 4 && rejected < iterations * 9 / 10)
    }

    @Test func materializeIsTheParser() {
        for text in [Self.record, "[1,2]", "{\"a\":", "\u{FF}"] {
            let bytes = Array(text.utf8)
            let lazy = bytes.withUnsafeBytes { doc in Result { () throws(JSONError) -> Value in try JSONIndex.materialize(doc) } }
            switch (lazy, parsed(bytes)) {
            case (.success(let a), .success(let b)): #expect(identical(a, b))
            case (.failure(let a), .failure(let b)): #expect(a == b)
            default: Issue.record("materialize and parse disagree on \(text)")
            }
        }
    }
}

// MARK: - Helpers

private struct Scanned {
    var scan: JSONScan
    var fields: [JSONField]
}

private func scanned(_ bytes: [UInt8]) -> Result<Scanned, JSONError> {
    bytes.withUnsafeBytes { doc in
        Result { () throws(JSONError) -> Scanned in
            var fields: [JSONField] = []
            let scan = try JSONIndex.scan(doc, into: &fields)
            return Scanned(scan: scan, fields: fields)
        }
    }
}

private func parsed(_ bytes: [UInt8]) -> Result<Value, JSONError> {
    Result { () throws(JSONError) -> Value in try JSON.parse(bytes) }
}

extension Result {
    fileprivate var ok: Success? {
        if case .success(let s) = self { return s }
        return nil
    }

    fileprivate var error: Failure? {
        if case .failure(let f) = self { return f }
        return nil
    }
}

private func find(_ key: String, _ s: Scanned, _ bytes: [UInt8], hint: Int = 0) -> Int? {
    s.fields.withUnsafeBufferPointer { fields in
        bytes.withUnsafeBytes { doc in
            Array(key.utf8).withUnsafeBytes { JSONIndex.find($0, in: fields, bytes: doc, hint: hint) }
        }
    }
}

/// Equal down to the bits of doubles, the bytes of strings and the order of keys.
private func identical(_ a: Value, _ b: Value) -> Bool {
    switch (a, b) {
    case (.double(let x), .double(let y)): return x.bitPattern == y.bitPattern
    case (.string(let x), .string(let y)): return Array(x.utf8) == Array(y.utf8)
    case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { identical($0, $1) }
    case (.object(let x), .object(let y)):
        return x.count == y.count
            && zip(x, y).allSatisfy { Array($0.key.utf8) == Array($1.key.utf8) && identical($0.value, $1.value) }
    default: return a == b
    }
}

private func kind(of value: Value) -> JSONKind {
    switch value {
    case .object: return .object
    case .array: return .array
    case .string: return .string
    case .int, .double: return .number
    case .bool: return .bool
    case .null: return .null
    }
}

/// Scans and parses `bytes`; records an issue (and returns false) where they disagree: accept
/// or reject, the error, the root kind, every field's key and value, duplicates, `find`,
/// `double` and `stringEquals`.
@discardableResult
private func expectAgreement(
    _ bytes: [UInt8], _ comment: @autoclosure () -> String = "", expectError: Bool = false,
    sourceLocation: SourceLocation = #_sourceLocation
) -> Bool {
    var problems: [String] = []
    switch (parsed(bytes), scanned(bytes)) {
    case (.failure(let p), .failure(let s)):
        if p != s { problems.append("parse threw \(p), scan threw \(s)") }
    case (.success(let v), .failure(let s)):
        problems.append("parse gave \(v), scan threw \(s)")
    case (.failure(let p), .success):
        problems.append("parse threw \(p), scan accepted")
    case (.success(let v), .success(let s)):
        if expectError { problems.append("accepted a document expected to be rejected") }
        problems += disagreements(bytes, v, s)
    }
    if expectError, case .success = parsed(bytes) { problems.append("JSON.parse accepted it") }
    guard problems.isEmpty else {
        let text = String(decoding: bytes.prefix(200), as: UTF8.self)
        Issue.record("\(comment()) \(text): \(problems.joined(separator: "; "))", sourceLocation: sourceLocation)
        return false
    }
    return true
}

private func disagreements(_ bytes: [UInt8], _ value: Value, _ s: Scanned) -> [String] {
    var problems: [String] = []
    if s.scan.rootKind != kind(of: value) { problems.append("root kind \(s.scan.rootKind)") }
    guard case .object(let object) = value else {
        if !s.fields.isEmpty { problems.append("fields for a non-object") }
        return problems
    }
    bytes.withUnsafeBytes { doc in
        var rebuilt = ValueObject()
        var previousEnd: Int32 = 0
        for f in s.fields {
            guard f.keyStart >= 1, f.keyStart <= f.keyEnd, f.keyEnd < f.valueStart, f.valueStart < f.valueEnd,
                  f.valueEnd <= s.scan.closingBrace, f.keyStart > previousEnd,
                  doc[Int(f.keyStart) - 1] == UInt8(ascii: "\""), doc[Int(f.keyEnd)] == UInt8(ascii: "\"")
            else {
                problems.append("bad positions \(f)")
                return
            }
            previousEnd = f.valueEnd
            let key = JSONIndex.value(
                kind: .string, escaped: f.keyEscaped, start: Int(f.keyStart) - 1, end: Int(f.keyEnd) + 1, in: doc
            )
            guard case .string(let k) = key else {
                problems.append("key of \(f) is \(key)")
                return
            }
            let v = JSONIndex.value(f, in: doc)
            if kind(of: v) != f.kind { problems.append("\(k): kind \(f.kind) but value \(v)") }
            rebuilt.updateValue(v, forKey: k)
            if f.kind == .number, JSONIndex.double(f, in: doc)?.bitPattern != v.asDouble?.bitPattern {
                problems.append("\(k): double \(String(describing: JSONIndex.double(f, in: doc))) for \(v)")
            }
            if case .string(let text) = v {
                let equal = Array(text.utf8).withUnsafeBytes { JSONIndex.stringEquals(f, $0, in: doc) }
                if !equal { problems.append("\(k): stringEquals(\(text)) is false") }
            } else if Array("x".utf8).withUnsafeBytes({ JSONIndex.stringEquals(f, $0, in: doc) }) {
                problems.append("\(k): stringEquals on a \(f.kind)")
            }
        }
        if doc[Int(s.scan.closingBrace)] != UInt8(ascii: "}") { problems.append("closing brace at \(s.scan.closingBrace)") }
        if !identical(.object(rebuilt), value) { problems.append("fields give \(Value.object(rebuilt)), parse gives \(value)") }
        if s.scan.hasDuplicateKeys != (rebuilt.count < s.fields.count) {
            problems.append("hasDuplicateKeys \(s.scan.hasDuplicateKeys) with \(s.fields.count) fields, \(rebuilt.count) keys")
        }
        s.fields.withUnsafeBufferPointer { fields in
            for (key, v) in object {
                let i = Array(key.utf8).withUnsafeBytes { JSONIndex.find($0, in: fields, bytes: doc, hint: 0) }
                guard let i else {
                    problems.append("find(\(key)) is nil")
                    continue
                }
                if !identical(JSONIndex.value(fields[i], in: doc), v) { problems.append("find(\(key)) is field \(i)") }
            }
        }
    }
    return problems
}

/// A fixed-seed generator (SplitMix64), so every run tests the same inputs.
private struct SplitMix64 {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
