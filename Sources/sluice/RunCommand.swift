// sluice run | validate | components: pipeline files.
import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import SluiceRuntime

/// Expands directories into their pipeline files (*.yaml, *.yml; not *.test.yaml).
func pipelineFiles(_ paths: [String]) throws -> [String] {
    var out: [String] = []
    for p in paths {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else {
            throw CLIError.user("\(p): no such file or directory")
        }
        if isDir.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: p)) ?? []
            for n in names.sorted() where (n.hasSuffix(".yaml") || n.hasSuffix(".yml")) && !n.contains(".test.") {
                out.append((p as NSString).appendingPathComponent(n))
            }
        } else {
            out.append(p)
        }
    }
    return out
}

/// Loads every file, collecting every file's diagnostics before failing. Component types
/// come from `registry` (built-ins and the plugins found).
func loadPipelines(_ files: [String], registry: ComponentRegistry) throws -> [Pipeline] {
    let loader = PipelineLoader(registry: registry)
    var pipelines: [Pipeline] = []
    var diagnostics: [Diagnostic] = []
    for f in files {
        do { pipelines.append(try loader.load(file: f)) } catch let e as PipelineLoadError { diagnostics += e.diagnostics }
    }
    if diagnostics.contains(where: { $0.severity == .error }) { throw PipelineLoadError(diagnostics: diagnostics) }
    for d in diagnostics { FileHandle.standardError.write(Data((d.description + "\n").utf8)) }
    return pipelines
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check pipeline files; every problem is printed as file:line:column.")
    @OptionGroup var plugins: PluginOptions
    @Argument(help: "Pipeline files or directories.") var files: [String]

    func run() throws {
        let list = try pipelineFiles(files)
        let pipelines = try loadPipelines(list, registry: plugins.registry(besides: list))
        let components = pipelines.reduce(0) { $0 + $1.nodes.count }
        print("ok: \(pipelines.count) pipeline\(pipelines.count == 1 ? "" : "s"), \(components) components")
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run pipelines until stopped (SIGINT/SIGTERM: finish the batch, commit, leave, exit 0) or until bounded sources end.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var plugins: PluginOptions
    @Argument(help: "Pipeline files or directories.") var files: [String]
    @Flag(help: "Stop topic sources once they have caught up with their partitions' ends.") var drain = false
    @Flag(help: "Print nothing but errors.") var quiet = false

    func run() async throws {
        global.bootstrapLogging()
        let list = try pipelineFiles(files)
        let pipelines = try loadPipelines(list, registry: plugins.registry(besides: list))
        global.bootstrapLogging()
        let logger = Logger(label: "sluice")
        // --broker overrides the files' broker.
        let brokerOf: (Pipeline) -> String = { global.broker ?? $0.broker }
        var broker: EmbeddedBroker?
        if pipelines.contains(where: { brokerOf($0) == "embedded" }) {
            broker = try await EmbeddedBroker.open(path: global.dataPath, logger: logger)
        }
        let kafka = KafkaClients()
        let options = RunOptions(drain: drain)
        var runners: [PipelineRunner] = []
        do {
            for p in pipelines {
                let url = brokerOf(p)
                let client: any BrokerClient = url == "embedded" ? EmbeddedBrokerClient(broker!) : try kafka.client(url: url, options: p.brokerOptions.merging(global.brokerOptionMap) { $1 }, file: p.file, logger: logger)
                runners.append(PipelineRunner(pipeline: p, client: client, options: options, logger: logger))
            }
        } catch {
            await broker?.close()
            throw error
        }
        let stop = StopSignal()
        let start = ContinuousClock.now
        let progress = quiet ? nil : ProgressReporter(runners: runners, logger: logger)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for r in runners { group.addTask { try await r.run() } }
                group.addTask {
                    var ticks = 0
                    while !stop.requested {
                        try await Task.sleep(for: .milliseconds(50))
                        ticks += 1
                        if ticks % 20 == 0 { progress?.report() }
                    }
                    throw CancellationError()
                }
                // The pipelines end (bounded sources) or a signal asks them to stop.
                var finished = 0
                while finished < runners.count {
                    do {
                        try await group.next()
                        finished += 1
                    } catch is CancellationError {
                        group.cancelAll()
                        while let _ = try? await group.next() {}
                        break
                    }
                }
                group.cancelAll()
            }
        } catch {
            await kafka.close()
            await broker?.close()
            throw error
        }
        await kafka.close()
        await broker?.close()
        progress?.finish()
        if !quiet {
            let seconds = Double((ContinuousClock.now - start).components.attoseconds) / 1e18 + Double((ContinuousClock.now - start).components.seconds)
            for r in runners {
                let counts = r.counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                FileHandle.standardError.write(Data("pipeline \(r.pipeline.name): \(counts) (\(String(format: "%.1f", seconds)) s)\n".utf8))
            }
        }
    }
}

struct Components: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the component types, or print their reference (--markdown).")
    @Flag(help: "Print the full reference in Markdown (docs/components.md).") var markdown = false
    @Flag(help: "Also list the plugins found (--plugins, ./plugins, $SLUICE_PLUGINS).") var withPlugins = false
    @OptionGroup var plugins: PluginOptions

    func run() throws {
        let registry = withPlugins ? plugins.registry() : ComponentRegistry.builtIns()
        if markdown {
            print(registry.markdownReference(), terminator: "")
            return
        }
        for kind in ComponentKind.allCases {
            print("\(kind.rawValue)s: " + registry.types(kind).joined(separator: ", "))
        }
    }
}

struct TestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Run the pipelines' test cases (tests: in the file, or NAME.test.yaml beside it) on a throw-away broker.")
    @OptionGroup var plugins: PluginOptions
    @Argument(help: "Pipeline files or directories.") var files: [String]

    func run() async throws {
        LoggingBootstrap.once(level: .warning)
        let list = try pipelineFiles(files)
        let registry = plugins.registry(besides: list)
        let pipelines = try loadPipelines(list, registry: registry)
        let loader = PipelineLoader(registry: registry)
        var passed = 0, failed = 0
        for p in pipelines {
            let cases = try loader.tests(for: p)
            if cases.isEmpty { print("\(p.file): no test cases"); continue }
            for r in await PipelineTestRunner.run(p, cases: cases) {
                if r.passed {
                    passed += 1
                    print("✔ \(p.name): \(r.name)")
                } else {
                    failed += 1
                    print("✘ \(p.name): \(r.name) (\(p.file):\(r.line))")
                    for f in r.failures { print("    \(f)") }
                }
            }
        }
        print("test cases: \(passed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }
}

/// Progress of running pipelines: a live line on a terminal (records in and out, rate, and
/// percent and ETA when every source is bounded: generators with a count, files), a periodic log line otherwise.
final class ProgressReporter: @unchecked Sendable {
    // Called from one task at a time (the stop watcher), then once at the end.
    let runners: [PipelineRunner]
    let logger: Logger
    let terminal = isatty(2) != 0
    let start = ContinuousClock.now
    var lastLog = ContinuousClock.now
    var printed = false

    init(runners: [PipelineRunner], logger: Logger) {
        self.runners = runners
        self.logger = logger
    }

    func report() {
        let elapsed = (ContinuousClock.now - start)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        var parts: [String] = []
        for r in runners {
            let counts = r.counts
            let inCount = r.pipeline.sources.reduce(0) { $0 + (counts[$1.id] ?? 0) }
            let outCount = r.pipeline.sinks.reduce(0) { $0 + (counts[$1.id] ?? 0) }
            var text = "\(r.pipeline.name): in \(inCount), out \(outCount), \(Int(Double(inCount) / max(seconds, 0.001)))/s"
            if let fraction = r.fractionDone {
                let eta = fraction > 0 ? seconds / fraction - seconds : 0
                text += String(format: ", %.0f%%, ETA %.0fs", fraction * 100, eta)
            }
            parts.append(text)
        }
        let line = parts.joined(separator: " | ")
        if terminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            printed = true
        } else if ContinuousClock.now - lastLog >= .seconds(10) {
            lastLog = ContinuousClock.now
            logger.notice("progress: \(line)")
        }
    }

    func finish() {
        if printed { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
