// Plugin manifests: `plugins/<name>/plugin.yaml` says what a plugin is called, what kind of
// component it is, how it runs (a process speaking NDJSON, or a WebAssembly module) and which
// fields it takes. Discovery reads every manifest in the plugin directories and registers a
// ComponentSpec per plugin in the same registry the built-ins use, so `sluice validate`
// checks a plugin's fields exactly as it checks a built-in's.
import Foundation
import Yams

public enum PluginRuntime: String, Sendable, CaseIterable {
    case process, wasm
}

public struct PluginManifest: Sendable {
    public var name: String
    public var kind: ComponentKind
    public var runtime: PluginRuntime
    public var version: String
    public var summary: String
    /// process: the command line (argv), its first element resolved against `directory` when
    /// it names a file there. wasm: one path, a `.wasm` module or `.wat` text.
    public var entry: [String]
    public var fields: [FieldSpec]
    /// The directory holding plugin.yaml.
    public var directory: String
    /// Path of the manifest, for messages.
    public var file: String

    static let keys = ["name", "kind", "runtime", "version", "summary", "entry", "fields"]
    static let fieldKeys = ["name", "type", "required", "default", "doc", "options"]
    static let fieldTypes = ["string", "int", "bool", "duration", "size", "string_list", "string_map", "choice"]

    /// Reads and checks `file`; throws `PipelineLoadError` naming every problem with its line.
    public static func load(file: String) throws -> PluginManifest {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw PipelineLoadError(diagnostics: [Diagnostic(file: file, line: 1, column: 1, message: "cannot read the plugin manifest")])
        }
        return try parse(text: text, file: file)
    }

    public static func parse(text: String, file: String) throws -> PluginManifest {
        var problems: [Diagnostic] = []
        func fail(_ node: Node?, _ message: String) {
            problems.append(Diagnostic(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, message: message))
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            var line = 1, column = 1, problem = "\(error)"
            if let e = error as? YamlError {
                switch e {
                case .scanner(_, let p, let mark, _), .parser(_, let p, let mark, _), .composer(_, let p, let mark, _):
                    line = mark.line; column = mark.column; problem = p
                default: break
                }
            }
            throw PipelineLoadError(diagnostics: [Diagnostic(file: file, line: line, column: column, message: "invalid YAML: \(problem)")])
        }
        guard let root, case .mapping(let top) = root else {
            throw PipelineLoadError(diagnostics: [Diagnostic(file: file, line: 1, column: 1, message: "a plugin manifest must be a mapping with name, kind, runtime and entry")])
        }
        var values: [String: Node] = [:]
        for (k, v) in top {
            guard let key = k.string else { fail(k, "keys must be words"); continue }
            if !keys.contains(key) {
                fail(k, "unknown field '\(key)' in a plugin manifest" + (Spelling.didYouMean(key, keys).map { " (\($0))" } ?? "; known: " + keys.joined(separator: ", ")))
                continue
            }
            values[key] = v
        }
        func scalar(_ key: String) -> String? {
            guard let node = values[key] else { return nil }
            guard case .scalar(let s) = node else { fail(node, "'\(key)' must be a single value"); return nil }
            return s.string
        }
        let name = scalar("name") ?? ""
        if values["name"] == nil { fail(root, "the manifest has no 'name'") }
        else if name.isEmpty || !name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) || !(name.first?.isLetter ?? false) {
            fail(values["name"], "plugin name '\(name)' must start with a letter and hold only letters, digits, '-' and '_'")
        }
        var kind = ComponentKind.transform
        if let k = scalar("kind") {
            if let parsed = ComponentKind(rawValue: k) { kind = parsed } else { fail(values["kind"], "kind '\(k)' must be source, transform or sink") }
        } else if values["kind"] == nil { fail(root, "the manifest has no 'kind' (source, transform or sink)") }
        var runtime = PluginRuntime.process
        if let r = scalar("runtime") {
            if let parsed = PluginRuntime(rawValue: r) { runtime = parsed } else { fail(values["runtime"], "runtime '\(r)' must be process or wasm") }
        } else if values["runtime"] == nil { fail(root, "the manifest has no 'runtime' (process or wasm)") }
        if runtime == .wasm && kind != .transform && values["runtime"] != nil {
            fail(values["kind"] ?? root, "WebAssembly plugins are transforms; a \(kind.rawValue) must run as a process")
        }
        var entry: [String] = []
        switch values["entry"] {
        case .scalar(let s)?:
            entry = runtime == .process ? s.string.split(separator: " ").map(String.init) : [s.string]
        case .sequence(let seq)?:
            for item in seq {
                if case .scalar(let s) = item { entry.append(s.string) } else { fail(item, "entry items must be single values") }
            }
        case .some(let node): fail(node, "'entry' must be a command line or a list of its words")
        case nil: fail(root, "the manifest has no 'entry' (the command to run, or the .wasm/.wat module)")
        }
        if values["entry"] != nil && entry.isEmpty { fail(values["entry"], "'entry' is empty") }
        if runtime == .wasm, let e = entry.first, !(e.hasSuffix(".wasm") || e.hasSuffix(".wat")) || entry.count != 1 {
            fail(values["entry"], "a wasm plugin's entry must be one .wasm or .wat file")
        }
        var fields: [FieldSpec] = []
        switch values["fields"] {
        case nil: break
        case .sequence(let seq)?:
            for item in seq {
                if let f = field(item, fail: fail) {
                    if fields.contains(where: { $0.name == f.name }) { fail(item, "field '\(f.name)' is declared twice") } else { fields.append(f) }
                }
            }
        case .some(let node): fail(node, "'fields' must be a list of fields (name, type, required, default, doc)")
        }
        var directory = (file as NSString).deletingLastPathComponent
        if !directory.hasPrefix("/") {
            directory = ((FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(directory.isEmpty ? "." : directory) as NSString).standardizingPath
        }
        if !problems.isEmpty { throw PipelineLoadError(diagnostics: problems.sorted()) }
        return PluginManifest(name: name, kind: kind, runtime: runtime, version: scalar("version") ?? "0.0.0", summary: scalar("summary") ?? "A \(runtime.rawValue) plugin.",
                              entry: entry, fields: fields, directory: directory.isEmpty ? "." : directory, file: file)
    }

    private static func field(_ node: Node, fail: (Node?, String) -> Void) -> FieldSpec? {
        guard case .mapping(let m) = node else { fail(node, "a field must be a mapping with name, type and doc"); return nil }
        var values: [String: Node] = [:]
        for (k, v) in m {
            guard let key = k.string, fieldKeys.contains(key) else {
                fail(k, "unknown key '\(k.string ?? "?")' in a field; known: " + fieldKeys.joined(separator: ", "))
                continue
            }
            values[key] = v
        }
        guard let name = values["name"]?.string, !name.isEmpty else { fail(node, "a field needs a 'name'"); return nil }
        if PluginHostFields.names.contains(name) { fail(values["name"], "field '\(name)' is set by Sluice for every plugin; choose another name") }
        let type = values["type"]?.string ?? "string"
        let kind: FieldKind
        switch type {
        case "string": kind = .string
        case "int": kind = .int
        case "bool": kind = .bool
        case "duration": kind = .duration
        case "size": kind = .size
        case "string_list": kind = .stringList
        case "string_map": kind = .stringMap
        case "choice":
            guard case .sequence(let options)? = values["options"], !options.isEmpty else {
                fail(values["type"], "field '\(name)' of type choice needs 'options', a list of words"); return nil
            }
            kind = .choice(options.compactMap(\.string))
        default:
            fail(values["type"], "field type '\(type)' must be one of " + fieldTypes.joined(separator: ", "))
            return nil
        }
        let required: Bool
        switch values["required"]?.string {
        case nil, "false": required = false
        case "true": required = true
        default: fail(values["required"], "'required' must be true or false"); required = false
        }
        return FieldSpec(name, kind, required: required, default: values["default"]?.string, values["doc"]?.string ?? "")
    }

    /// The entry with every word that names a file in the plugin's directory made absolute
    /// (`python3 mask.py` runs the plugin's own mask.py from any working directory).
    public var resolvedEntry: [String] {
        entry.enumerated().map { i, word in
            guard !word.hasPrefix("/"), !word.hasPrefix("-") else { return word }
            let local = (directory as NSString).appendingPathComponent(word)
            return (runtime == .wasm && i == 0) || FileManager.default.fileExists(atPath: local) ? local : word
        }
    }
}

/// Fields Sluice adds to every plugin component (they are not sent to the plugin).
enum PluginHostFields {
    static let names: Set<String> = ["instances", "timeout", "restart_backoff", "max_restarts", "memory_limit", "fuel"]

    static func fields(for manifest: PluginManifest) -> [FieldSpec] {
        switch manifest.runtime {
        case .process:
            var f = [
                FieldSpec("timeout", .duration, default: "30s", "How long one batch may take before the plugin process counts as hung: it is killed, restarted and the batch retried."),
                FieldSpec("restart_backoff", .duration, default: "100ms", "The first wait before restarting a crashed or hung plugin; it doubles up to 5s."),
                FieldSpec("max_restarts", .int, default: "10", "Restarts in a row without one batch answered before the component fails."),
            ]
            if manifest.kind == .transform {
                f.insert(FieldSpec("instances", .int, default: "1", "Plugin processes run side by side; each source partition always goes to the same one, so order per partition is kept."), at: 0)
            }
            return f
        case .wasm:
            return [
                FieldSpec("fuel", .int, default: "100000000", "The most WebAssembly instructions one batch call may run (counted at loop heads and calls); past it the batch fails with an error."),
                FieldSpec("memory_limit", .size, default: "64MiB", "The most linear memory the module may grow to."),
            ]
        }
    }
}

/// Where plugins are looked for, and what was found there.
public struct PluginCatalog: Sendable {
    public var manifests: [PluginManifest]
    /// Manifests that could not be read, with why.
    public var problems: [Diagnostic]

    /// `./plugins`, then each `--plugins DIR`, then each directory in `SLUICE_PLUGINS`
    /// (colon-separated). A directory is either a plugin (holding plugin.yaml) or a folder of
    /// plugins (each subdirectory holding one).
    public static func directories(explicit: [String], environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        var dirs = ["plugins"] + explicit
        if let env = environment["SLUICE_PLUGINS"] { dirs += env.split(separator: ":").map(String.init) }
        var seen: Set<String> = []
        return dirs.filter { seen.insert((absolutePath($0) as NSString).resolvingSymlinksInPath).inserted }
    }

    public static func discover(in directories: [String]) -> PluginCatalog {
        var manifests: [PluginManifest] = [], problems: [Diagnostic] = []
        let fm = FileManager.default
        for dir in directories {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else { continue }
            var files: [String] = []
            let own = (dir as NSString).appendingPathComponent("plugin.yaml")
            if fm.fileExists(atPath: own) { files = [own] } else {
                for sub in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
                    let f = ((dir as NSString).appendingPathComponent(sub) as NSString).appendingPathComponent("plugin.yaml")
                    if fm.fileExists(atPath: f) { files.append(f) }
                }
            }
            for f in files {
                // The same manifest reached twice (./plugins and a pipeline's own directory).
                if manifests.contains(where: { absolutePath($0.file) == absolutePath(f) }) { continue }
                do {
                    let m = try PluginManifest.load(file: f)
                    if let earlier = manifests.first(where: { $0.name == m.name }) {
                        problems.append(Diagnostic(file: f, line: 1, column: 1, message: "plugin '\(m.name)' is also defined by \(earlier.file); this one is ignored"))
                        continue
                    }
                    manifests.append(m)
                } catch let e as PipelineLoadError { problems += e.diagnostics } catch {
                    problems.append(Diagnostic(file: f, line: 1, column: 1, message: "\(error)"))
                }
            }
        }
        return PluginCatalog(manifests: manifests, problems: problems)
    }

    /// Registers every plugin in `registry`; a plugin named like a built-in of its kind is a
    /// problem and is not registered.
    public func register(in registry: ComponentRegistry) -> [Diagnostic] {
        var out: [Diagnostic] = []
        for m in manifests {
            if registry.spec(m.kind, m.name) != nil {
                out.append(Diagnostic(file: m.file, line: 1, column: 1, message: "plugin '\(m.name)' has the name of a \(m.kind.rawValue) Sluice already has; rename it"))
                continue
            }
            registry.register(PluginComponents.spec(for: m))
        }
        return out
    }
}

extension Node {
    fileprivate var string: String? {
        if case .scalar(let s) = self { return s.string }
        return nil
    }
}

/// `path` made absolute against the working directory, with `.` and `..` resolved.
private func absolutePath(_ path: String) -> String {
    let full = path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
    return (full as NSString).standardizingPath
}
