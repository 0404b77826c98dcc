// sluice plugin list | describe | new, and the --plugins option every pipeline command takes.
import ArgumentParser
import Foundation
import SluiceRuntime

struct PluginOptions: ParsableArguments {
    @Option(name: .customLong("plugins"), help: ArgumentHelp("A plugin directory, or a folder of them (repeatable); ./plugins and $SLUICE_PLUGINS are always searched.", valueName: "dir"))
    var directories: [String] = []

    /// Every directory searched, in order; a pipeline file's own directory is searched too
    /// when it holds a plugin.yaml (a plugin's scaffolded test pipeline).
    func searched(besides files: [String] = []) -> [String] {
        var extra = directories
        for f in files {
            let dir = (f as NSString).deletingLastPathComponent
            if FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("plugin.yaml")) { extra.append(dir.isEmpty ? "." : dir) }
        }
        return PluginCatalog.directories(explicit: extra)
    }

    func catalog(besides files: [String] = []) -> PluginCatalog {
        PluginCatalog.discover(in: searched(besides: files))
    }

    /// The built-ins and every plugin found; manifest problems are printed as warnings.
    func registry(besides files: [String] = []) -> ComponentRegistry {
        let registry = ComponentRegistry.builtIns()
        let catalog = catalog(besides: files)
        let problems = catalog.problems + catalog.register(in: registry)
        for p in problems {
            var d = p
            d.severity = .warning
            FileHandle.standardError.write(Data((d.description + "\n").utf8))
        }
        return registry
    }
}

struct PluginCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin",
        abstract: "List, describe and create plugins (plugins/<name>/plugin.yaml).",
        subcommands: [List.self, Describe.self, New.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the plugins found, with their kind, runtime and directory; exit 1 when a manifest is broken.")
        @OptionGroup var plugins: PluginOptions

        func run() throws {
            let catalog = plugins.catalog()
            let registry = ComponentRegistry.builtIns()
            let clashes = catalog.register(in: registry)
            if catalog.manifests.isEmpty && catalog.problems.isEmpty {
                print("no plugins found in " + plugins.searched().joined(separator: ", "))
            }
            for m in catalog.manifests {
                print("\(m.name)\t\(m.kind.rawValue)\t\(m.runtime.rawValue)\t\(m.version)\t\(m.directory)")
            }
            let problems = catalog.problems + clashes
            for p in problems { FileHandle.standardError.write(Data((p.description + "\n").utf8)) }
            if !problems.isEmpty { throw ExitCode(1) }
        }
    }

    struct Describe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a plugin's manifest facts and every field it takes (its own and Sluice's).")
        @OptionGroup var plugins: PluginOptions
        @Argument(help: "The plugin's name.") var name: String

        func run() throws {
            let catalog = plugins.catalog()
            guard let m = catalog.manifests.first(where: { $0.name == name }) else {
                let names = catalog.manifests.map(\.name)
                throw CLIError.user("no plugin named '\(name)' in " + plugins.searched().joined(separator: ", ") + (names.isEmpty ? "" : "; found: " + names.joined(separator: ", ")))
            }
            let registry = ComponentRegistry()
            _ = catalog.register(in: registry)
            guard let spec = registry.spec(m.kind, m.name) else { throw CLIError.user("plugin '\(name)' could not be registered") }
            print("\(m.name) \(m.version): \(m.kind.rawValue), runtime \(m.runtime.rawValue)")
            print("  \(m.summary)")
            print("  manifest: \(m.file)")
            print("  entry: \(m.resolvedEntry.joined(separator: " "))")
            print("fields:")
            for f in spec.fields {
                let def = f.required ? "required" : (f.defaultValue.map { "default \($0)" } ?? "optional")
                print("  \(f.name) (\(f.kind.noun), \(def))\(f.doc.isEmpty ? "" : ": \(f.doc)")")
            }
            print("use it: { type: \(m.name), inputs: [...]\(spec.fields.filter(\.required).map { ", \($0.name): ..." }.joined()) }")
        }
    }

    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a working plugin scaffold in plugins/NAME (or --dir) with a pipeline and its test case; run the test with `sluice test plugins/NAME/pipeline.yaml`.")
        @Argument(help: "The plugin's name (letters, digits, - and _).") var name: String
        @Option(help: "source, transform or sink.") var kind: String = "transform"
        @Option(help: "process (Python) or wasm (WebAssembly text).") var runtime: String = "process"
        @Option(help: "The folder to create the plugin in (default ./plugins).") var dir: String = "plugins"

        func run() throws {
            guard let k = ComponentKind(rawValue: kind) else { throw CLIError.user("--kind must be source, transform or sink, got '\(kind)'") }
            guard let r = PluginRuntime(rawValue: runtime) else { throw CLIError.user("--runtime must be process or wasm, got '\(runtime)'") }
            if r == .wasm && k != .transform { throw CLIError.user("WebAssembly plugins are transforms; use --runtime process for a \(kind)") }
            guard let first = name.first, first.isLetter, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw CLIError.user("plugin name '\(name)' must start with a letter and hold only letters, digits, '-' and '_'")
            }
            let target = (dir as NSString).appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: target) { throw CLIError.user("\(target) already exists; choose another name or remove it") }
            let files = PluginScaffold.files(name: name, kind: k, runtime: r)
            do {
                try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
                for (file, text, executable) in files {
                    let path = (target as NSString).appendingPathComponent(file)
                    try text.write(toFile: path, atomically: true, encoding: .utf8)
                    if executable { try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path) }
                }
            } catch {
                throw CLIError.user("cannot write \(target): \(error.localizedDescription)")
            }
            print("created \(target): " + files.map(\.0).joined(separator: ", "))
            print("test it:  sluice test \(target)/pipeline.yaml")
            print("see it:   sluice plugin list\(dir == "plugins" ? "" : " --plugins \(dir)")")
        }
    }
}
