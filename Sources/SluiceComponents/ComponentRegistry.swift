// ComponentRegistry: every component type the loader knows, by kind. Thread-safe.
import Synchronization

public final class ComponentRegistry: Sendable {
    private let specs = Mutex<[ComponentKind: [String: ComponentSpec]]>([:])

    public init() {}

    public func register(_ spec: ComponentSpec) {
        specs.withLock { $0[spec.kind, default: [:]][spec.type] = spec }
    }

    public func spec(_ kind: ComponentKind, _ type: String) -> ComponentSpec? {
        specs.withLock { $0[kind]?[type] }
    }

    public func types(_ kind: ComponentKind) -> [String] {
        specs.withLock { ($0[kind] ?? [:]).keys.sorted() }
    }

    /// The component reference in Markdown: every component with every field.
    public func markdownReference() -> String {
        var out = "# Components\n\nGenerated from the component registry (`sluice components --markdown`); every field a component declares is listed.\n"
        for kind in ComponentKind.allCases {
            out += "\n## \(kind.plural.capitalized)\n"
            for type in types(kind) {
                let s = spec(kind, type)!
                out += "\n### `\(type)`\n\n\(s.summary)\n"
                if kind == .sink { out += "\nExactly-once: \(s.exactlyOnceCapable ? "yes" : "no (at-least-once)").\n" }
                if s.fields.isEmpty { out += "\nNo fields.\n"; continue }
                out += "\n| field | type | default | description |\n| --- | --- | --- | --- |\n"
                for f in s.fields {
                    let def = f.required ? "required" : (f.defaultValue.map { "`\($0)`" } ?? "—")
                    out += "| `\(f.name)` | \(f.kind.noun) | \(def) | \(f.doc) |\n"
                }
            }
        }
        return out
    }
}
