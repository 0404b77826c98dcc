// CSV as RFC 4180 writes it: comma-separated fields, a field with a comma, quote or line
// break inside double quotes, quotes doubled. Rows are single lines here (the file source
// splits on line breaks before parsing).

enum CSV {
    /// Splits one row into its fields; nil when a quoted field is not closed.
    static func fields(_ line: ArraySlice<UInt8>) -> [String]? {
        var fields: [String] = []
        var field: [UInt8] = []
        var i = line.startIndex
        var quoted = false
        var atFieldStart = true
        while i < line.endIndex {
            let c = line[i]
            if quoted {
                if c == 34 {
                    if i + 1 < line.endIndex, line[i + 1] == 34 { field.append(34); i += 1 } else { quoted = false }
                } else {
                    field.append(c)
                }
            } else if c == 34 && atFieldStart {
                quoted = true
                atFieldStart = false
            } else if c == 44 {
                fields.append(String(decoding: field, as: UTF8.self))
                field.removeAll(keepingCapacity: true)
                atFieldStart = true
            } else {
                field.append(c)
                atFieldStart = false
            }
            i += 1
        }
        if quoted { return nil }
        fields.append(String(decoding: field, as: UTF8.self))
        return fields
    }

    /// A cell's value: numbers and booleans as such, an empty cell as null, text otherwise.
    static func value(_ text: String) -> Value {
        if text.isEmpty { return .null }
        if let i = Int64(text) { return .int(i) }
        if let d = Double(text), d.isFinite, text.first.map({ $0.isNumber || $0 == "-" || $0 == "." }) == true { return .double(d) }
        if text == "true" { return .bool(true) }
        if text == "false" { return .bool(false) }
        return .string(text)
    }

    /// Appends `text` as one field, quoted when it has to be.
    static func append(_ text: String, to out: inout [UInt8]) {
        let utf8 = text.utf8
        if !utf8.contains(where: { $0 == 44 || $0 == 34 || $0 == 10 || $0 == 13 }) {
            out += utf8
            return
        }
        out.append(34)
        for b in utf8 {
            if b == 34 { out.append(34) }
            out.append(b)
        }
        out.append(34)
    }

    /// A value as a cell: strings as they are, null as empty, others as JSON.
    static func append(_ value: Value, to out: inout [UInt8]) {
        switch value {
        case .null: break
        case .string(let s): append(s, to: &out)
        default: append(String(decoding: JSON.serialize(value), as: UTF8.self), to: &out)
        }
    }
}
