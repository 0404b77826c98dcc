// ExpressionLexer: expression text (UTF-8 bytes) → tokens, each with the byte range it
// came from so errors can point at it. Works on a range of a larger text so templates
// lex their `{{ }}` parts in place.

enum TokenKind: Equatable {
    case int(Int64)
    case double(Double)
    case string(String)
    case identifier(String)
    case leftParen, rightParen, leftBracket, rightBracket, comma, dot
    case plus, minus, star, slash, percent
    case equal, notEqual, less, lessEqual, greater, greaterEqual
    case andAnd, orOr, bang, coalesce
    case end
}

struct Token {
    var kind: TokenKind
    /// Byte offsets into the whole text.
    var start: Int
    var end: Int
}

struct ExpressionLexer {
    let bytes: [UInt8]
    var pos: Int
    let end: Int

    init(_ bytes: [UInt8], range: Range<Int>) {
        self.bytes = bytes
        self.pos = range.lowerBound
        self.end = range.upperBound
    }

    static func tokenize(_ bytes: [UInt8], range: Range<Int>) throws(ExpressionFailure) -> [Token] {
        var lexer = ExpressionLexer(bytes, range: range)
        var tokens: [Token] = []
        while true {
            let t = try lexer.next()
            tokens.append(t)
            if t.kind == .end { return tokens }
        }
    }

    func peek(_ ahead: Int = 0) -> UInt8? {
        pos + ahead < end ? bytes[pos + ahead] : nil
    }

    static func isIdentifierStart(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z")) || b == UInt8(ascii: "_")
    }

    static func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    mutating func next() throws(ExpressionFailure) -> Token {
        while let b = peek(), b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { pos += 1 }
        let start = pos
        guard let b = peek() else { return Token(kind: .end, start: end, end: end) }

        func single(_ kind: TokenKind) -> Token {
            Token(kind: kind, start: start, end: start + 1)
        }
        func double(_ kind: TokenKind) -> Token {
            Token(kind: kind, start: start, end: start + 2)
        }

        if Self.isIdentifierStart(b) {
            pos += 1
            while let c = peek(), Self.isIdentifierStart(c) || Self.isDigit(c) { pos += 1 }
            let name = String(decoding: bytes[start..<pos], as: UTF8.self)
            return Token(kind: .identifier(name), start: start, end: pos)
        }
        if Self.isDigit(b) { return try number() }
        if b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") { return try string(quote: b) }

        let next = peek(1)
        switch b {
        case UInt8(ascii: "("): pos += 1; return single(.leftParen)
        case UInt8(ascii: ")"): pos += 1; return single(.rightParen)
        case UInt8(ascii: "["): pos += 1; return single(.leftBracket)
        case UInt8(ascii: "]"): pos += 1; return single(.rightBracket)
        case UInt8(ascii: ","): pos += 1; return single(.comma)
        case UInt8(ascii: "."): pos += 1; return single(.dot)
        case UInt8(ascii: "+"): pos += 1; return single(.plus)
        case UInt8(ascii: "-"): pos += 1; return single(.minus)
        case UInt8(ascii: "*"): pos += 1; return single(.star)
        case UInt8(ascii: "/"): pos += 1; return single(.slash)
        case UInt8(ascii: "%"): pos += 1; return single(.percent)
        case UInt8(ascii: "="):
            if next == UInt8(ascii: "=") { pos += 2; return double(.equal) }
            throw ExpressionFailure("unexpected '=' (did you mean '=='?)", at: start)
        case UInt8(ascii: "!"):
            if next == UInt8(ascii: "=") { pos += 2; return double(.notEqual) }
            pos += 1
            return single(.bang)
        case UInt8(ascii: "<"):
            if next == UInt8(ascii: "=") { pos += 2; return double(.lessEqual) }
            pos += 1
            return single(.less)
        case UInt8(ascii: ">"):
            if next == UInt8(ascii: "=") { pos += 2; return double(.greaterEqual) }
            pos += 1
            return single(.greater)
        case UInt8(ascii: "&"):
            if next == UInt8(ascii: "&") { pos += 2; return double(.andAnd) }
            throw ExpressionFailure("unexpected '&' (did you mean '&&' or 'and'?)", at: start)
        case UInt8(ascii: "|"):
            if next == UInt8(ascii: "|") { pos += 2; return double(.orOr) }
            throw ExpressionFailure("unexpected '|' (did you mean '||' or 'or'?)", at: start)
        case UInt8(ascii: "?"):
            if next == UInt8(ascii: "?") { pos += 2; return double(.coalesce) }
            throw ExpressionFailure("unexpected '?' (did you mean '??' or 'if … then … else'?)", at: start)
        default:
            throw ExpressionFailure("unexpected character '\(characterAt(start))'", at: start)
        }
    }

    /// The whole character starting at `offset`, for messages.
    func characterAt(_ offset: Int) -> String {
        var e = offset + 1
        while e < end && bytes[e] & 0xC0 == 0x80 { e += 1 }
        return String(decoding: bytes[offset..<e], as: UTF8.self)
    }

    mutating func number() throws(ExpressionFailure) -> Token {
        let start = pos
        var integral = true
        while let c = peek(), Self.isDigit(c) { pos += 1 }
        if peek() == UInt8(ascii: "."), let d = peek(1), Self.isDigit(d) {
            integral = false
            pos += 1
            while let c = peek(), Self.isDigit(c) { pos += 1 }
        }
        if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            var look = 1
            if let s = peek(1), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { look = 2 }
            if let d = peek(look), Self.isDigit(d) {
                integral = false
                pos += look
                while let c = peek(), Self.isDigit(c) { pos += 1 }
            }
        }
        if let c = peek(), Self.isIdentifierStart(c) {
            throw ExpressionFailure("unexpected '\(characterAt(pos))' after a number", at: pos)
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        if integral, let i = Int64(text) { return Token(kind: .int(i), start: start, end: pos) }
        guard let d = Double(text), d.isFinite else { throw ExpressionFailure("number '\(text)' is out of range", at: start) }
        return Token(kind: .double(d), start: start, end: pos)
    }

    mutating func string(quote: UInt8) throws(ExpressionFailure) -> Token {
        let start = pos
        pos += 1
        var out: [UInt8] = []
        while let c = peek() {
            if c == quote {
                pos += 1
                return Token(kind: .string(String(decoding: out, as: UTF8.self)), start: start, end: pos)
            }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                pos += 1
                continue
            }
            let escape = pos
            guard let e = peek(1) else { break }
            pos += 2
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "0"): out.append(0x00)
            case UInt8(ascii: "u"):
                var scalar = try hex4(escape: escape)
                if scalar >= 0xD800 && scalar < 0xDC00, peek() == UInt8(ascii: "\\"), peek(1) == UInt8(ascii: "u") {
                    let second = pos
                    pos += 2
                    let low = try hex4(escape: second)
                    guard low >= 0xDC00 && low < 0xE000 else {
                        throw ExpressionFailure("invalid surrogate pair in '\\u' escape", at: escape)
                    }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let s = Unicode.Scalar(scalar) else {
                    throw ExpressionFailure("invalid '\\u' escape (a lone surrogate)", at: escape)
                }
                out.append(contentsOf: Array(String(Character(s)).utf8))
            default:
                throw ExpressionFailure("invalid escape '\\\(characterAt(escape + 1))'", at: escape)
            }
        }
        throw ExpressionFailure("unterminated string", at: start)
    }

    mutating func hex4(escape: Int) throws(ExpressionFailure) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let c = peek() else { throw ExpressionFailure("invalid '\\u' escape (needs 4 hex digits)", at: escape) }
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw ExpressionFailure("invalid '\\u' escape (needs 4 hex digits)", at: escape)
            }
            v = v << 4 | UInt32(d)
            pos += 1
        }
        return v
    }
}
