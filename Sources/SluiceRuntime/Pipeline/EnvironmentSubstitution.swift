// ${VAR} and ${VAR:-default} in pipeline files, substituted into the parsed scalars, never
// into the YAML text. `mask` replaces every reference with a placeholder exactly as long
// (private-use characters, which YAML takes as ordinary text anywhere, even unquoted inside
// `{ }`), so the file parses as it is written and every position in it stays exact; then
// `substitute` puts the values into the scalars (keys too) that hold placeholders. A value is
// thus always text inside one scalar: a newline, `key: value`, `{`, `#`, `&`, `*` in it never
// become YAML, and the spans it fills are remembered so a template takes its `{{ }}` as text.
// A reference in a comment is never substituted (nor reported when unset).

enum EnvironmentSubstitution {
    /// One `${NAME}`, `${NAME:-default}` or `$${` (a literal `${`) of the text.
    struct Reference {
        var name: String
        /// The value it stands for; nil when the variable is unset and there is no default.
        var value: String?
        /// Where the `$` is in the file.
        var line: Int
        var column: Int
        /// Its length in Unicode scalars (the placeholder's too).
        var length: Int
    }

    struct Masked {
        /// The text with a placeholder in place of each reference.
        var text: String
        var references: [Reference]
    }

    /// A scalar's text with the values in.
    struct Substituted {
        var text: String
        /// The UTF-8 byte ranges of `text` that came from values.
        var literal: [Range<Int>]
        /// The indices (into `references`) of the references it held.
        var used: [Int]
    }

    /// A placeholder is this marker and then its reference's index, in base `radix` with a
    /// digit per scalar from `digitZero`, padded with zeros to the reference's length.
    static let marker: Unicode.Scalar = "\u{E000}"
    static let digitZero: UInt32 = 0xE100
    static let radix = 4096

    static func digit(_ d: Int) -> Unicode.Scalar {
        Unicode.Scalar(digitZero + UInt32(d)) ?? marker
    }

    static func digitValue(_ s: Unicode.Scalar) -> Int? {
        let v = s.value
        return v >= digitZero && v < digitZero + UInt32(radix) ? Int(v - digitZero) : nil
    }

    /// Resolves every reference of `text` against `environment` and masks it. A reference
    /// ends at the first `}` on its line; `${` without one is text.
    static func mask(_ text: String, environment: [String: String]) -> Masked {
        // Most files have no reference at all: one pass over the bytes says so.
        var previous: UInt8 = 0
        var mentioned = false
        for b in text.utf8 {
            if previous == UInt8(ascii: "$") && b == UInt8(ascii: "{") {
                mentioned = true
                break
            }
            previous = b
        }
        if !mentioned { return Masked(text: text, references: []) }
        let scalars = Array(text.unicodeScalars)
        let n = scalars.count
        var out = String.UnicodeScalarView()
        var references: [Reference] = []
        var line = 1, column = 1
        // Where the last search for a closing '}' stopped without one: a '${' before that has
        // none either, so no stretch of a line is searched twice.
        var unclosedUntil = 0
        var i = 0
        while i < n {
            let c = scalars[i]
            if c == "$" {
                var length = 0
                var reference: Reference?
                var close = n
                if i + 1 < n, scalars[i + 1] == "{", i >= unclosedUntil {
                    close = closingBrace(scalars, from: i + 2)
                    if close == n || scalars[close] != "}" {
                        unclosedUntil = close
                        close = n
                    }
                }
                if i + 2 < n, scalars[i + 1] == "$", scalars[i + 2] == "{" {
                    length = 3
                    reference = Reference(name: "", value: "${", line: line, column: column, length: length)
                } else if close < n {
                    length = close + 1 - i
                    var inner = String.UnicodeScalarView()
                    inner.append(contentsOf: scalars[(i + 2)..<close])
                    let parts = String(inner).components(separatedBy: ":-")
                    let name = parts[0]
                    var value: String?
                    if let v = environment[name], !(parts.count > 1 && v.isEmpty) {
                        value = v
                    } else if parts.count > 1 {
                        value = parts.dropFirst().joined(separator: ":-")
                    }
                    reference = Reference(name: name, value: value, line: line, column: column, length: length)
                }
                if let reference, let placeholder = placeholder(references.count, length: length) {
                    references.append(reference)
                    out.append(contentsOf: placeholder)
                    i += length
                    column += length
                    continue
                }
            }
            out.append(c)
            if c == "\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
            i += 1
        }
        return Masked(text: String(out), references: references)
    }

    /// The index of the first `}` or newline from `from` on, or the end.
    static func closingBrace(_ scalars: [Unicode.Scalar], from: Int) -> Int {
        var k = from
        while k < scalars.count && scalars[k] != "}" && scalars[k] != "\n" { k += 1 }
        return k
    }

    /// `length` scalars standing for reference number `index`; nil if the index does not fit
    /// (it always does in a file of at most `PipelineLoader.maxFileBytes`).
    static func placeholder(_ index: Int, length: Int) -> [Unicode.Scalar]? {
        var digits: [Unicode.Scalar] = []
        var rest = index
        for _ in 1..<max(length, 2) {
            digits.append(digit(rest % radix))
            rest /= radix
        }
        guard rest == 0 else { return nil }
        return [marker] + digits.reversed()
    }

    /// `s` with the placeholders of `references` replaced by their values (an unset one by
    /// nothing); nil when `s` holds none. A marker not followed by a placeholder of the right
    /// length stays as it is.
    static func substitute(_ s: String, _ references: [Reference]) -> Substituted? {
        guard !references.isEmpty, s.unicodeScalars.contains(marker) else { return nil }
        let scalars = Array(s.unicodeScalars)
        var out = ""
        var literal: [Range<Int>] = []
        var used: [Int] = []
        var i = 0
        while i < scalars.count {
            let c = scalars[i]
            if c == marker {
                var j = i + 1
                var index = 0
                while j < scalars.count, let d = digitValue(scalars[j]) {
                    // Capped so that stray digits cannot overflow; a capped index matches nothing.
                    if index <= references.count { index = index * radix + d }
                    j += 1
                }
                if j > i + 1, index < references.count, references[index].length == j - i {
                    used.append(index)
                    let start = out.utf8.count
                    out += references[index].value ?? ""
                    if out.utf8.count > start { literal.append(start..<out.utf8.count) }
                    i = j
                    continue
                }
            }
            out.unicodeScalars.append(c)
            i += 1
        }
        return Substituted(text: out, literal: literal, used: used)
    }
}
