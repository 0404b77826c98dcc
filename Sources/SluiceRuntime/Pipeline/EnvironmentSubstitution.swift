// ${VAR} and ${VAR:-default} in pipeline files, substituted before YAML parsing so that
// positions of everything after a substitution on the same line stay close.

enum EnvironmentSubstitution {
    struct Missing: Error { var name: String; var line: Int; var column: Int }

    /// Replaces every `${NAME}` / `${NAME:-default}`; `$${` escapes a literal `${`.
    static func apply(_ text: String, environment: [String: String]) -> (String, [Missing]) {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        var missing: [Missing] = []
        var line = 1, column = 1
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if c == "$", text[i...].hasPrefix("$${") {
                out += "${"
                i = text.index(i, offsetBy: 3)
                column += 3
                continue
            }
            if c == "$", text[i...].hasPrefix("${"), let close = text[i...].firstIndex(of: "}") {
                let inner = String(text[text.index(i, offsetBy: 2)..<close])
                let parts = inner.components(separatedBy: ":-")
                let name = parts[0]
                if let v = environment[name], !(parts.count > 1 && v.isEmpty) {
                    out += v
                } else if parts.count > 1 {
                    out += parts.dropFirst().joined(separator: ":-")
                } else {
                    missing.append(Missing(name: name, line: line, column: column))
                }
                column += text.distance(from: i, to: close) + 1
                i = text.index(after: close)
                continue
            }
            out.append(c)
            if c == "\n" { line += 1; column = 1 } else { column += 1 }
            i = text.index(after: i)
        }
        return (out, missing)
    }
}
