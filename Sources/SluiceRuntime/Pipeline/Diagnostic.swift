// Diagnostics: every problem found in a pipeline file, printed like a compiler's.

public struct Diagnostic: Sendable, Hashable, CustomStringConvertible, Comparable {
    public enum Severity: String, Sendable { case error, warning }

    public var file: String
    public var line: Int
    public var column: Int
    public var severity: Severity
    public var message: String
    /// A suggestion such as "did you mean 'filter'?", printed after the message.
    public var hint: String?

    public init(file: String, line: Int, column: Int, severity: Severity = .error, message: String, hint: String? = nil) {
        self.file = file
        self.line = line
        self.column = column
        self.severity = severity
        self.message = message
        self.hint = hint
    }

    /// `file:line:column: error: message (hint)`
    public var description: String {
        "\(file):\(line):\(column): \(severity.rawValue): \(message)" + (hint.map { " (\($0))" } ?? "")
    }

    public static func < (a: Diagnostic, b: Diagnostic) -> Bool {
        (a.file, a.line, a.column, a.message) < (b.file, b.line, b.column, b.message)
    }
}

/// Loading failed; `diagnostics` holds every problem found, in file order.
public struct PipelineLoadError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [Diagnostic]
    public init(diagnostics: [Diagnostic]) { self.diagnostics = diagnostics }
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

enum Spelling {
    /// The closest candidate within two edits, for did-you-mean hints.
    static func suggestion(for word: String, in candidates: [String]) -> String? {
        var best: (String, Int)?
        for c in candidates {
            let d = distance(word.lowercased(), c.lowercased())
            if d <= 2 && d < (best?.1 ?? Int.max) { best = (c, d) }
        }
        return best?.0
    }

    static func distance(_ a: String, _ b: String) -> Int {
        ExpressionHints.distance(Array(a.unicodeScalars), Array(b.unicodeScalars))
    }

    static func didYouMean(_ word: String, _ candidates: [String]) -> String? {
        suggestion(for: word, in: candidates).map { "did you mean '\($0)'?" }
    }
}
