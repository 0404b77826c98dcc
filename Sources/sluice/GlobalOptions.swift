// Options every command takes: where the data lives and how much to log.
import ArgumentParser
import Foundation
import Logging
import Synchronization
import SluiceBroker
import SluiceRuntime

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Data directory of the embedded broker (default ./.sluice, or $SLUICE_DATA).", valueName: "dir"))
    var data: String?

    @Option(name: .long, help: ArgumentHelp("Broker to use: 'embedded' (the default) or kafka://host:port.", valueName: "url"))
    var broker: String?

    @Option(name: .customLong("broker-option"), help: ArgumentHelp("A librdkafka property for --broker kafka://… (SASL, TLS, timeouts), e.g. security.protocol=SASL_SSL; repeatable. `sluice run` adds them to the file's broker_options.", valueName: "name=value"))
    var brokerOptions: [String] = []

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "warning"

    var dataPath: String {
        data ?? ProcessInfo.processInfo.environment["SLUICE_DATA"] ?? "./.sluice"
    }

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got '\(logLevel)'")
        }
        if let broker, broker != "embedded" && !PipelineLoader.isKafkaURL(broker) {
            throw ValidationError("--broker must be 'embedded' or kafka://host:port[,host:port]; got '\(broker)'")
        }
        for o in brokerOptions where !o.contains("=") || o.hasPrefix("=") {
            throw ValidationError("--broker-option must be name=value, e.g. security.protocol=SASL_SSL; got '\(o)'")
        }
    }

    /// The Kafka cluster --broker names; nil for the embedded broker.
    var kafkaURL: String? {
        guard let broker, broker != "embedded" else { return nil }
        return broker
    }

    /// --broker-option pairs (the last of a name wins).
    var brokerOptionMap: [String: String] {
        var out: [String: String] = [:]
        for o in brokerOptions {
            let eq = o.firstIndex(of: "=")!  // validate() checked
            out[String(o[..<eq])] = String(o[o.index(after: eq)...])
        }
        return out
    }

    /// Commands that work on the data directory alone refuse a Kafka broker.
    func requireEmbedded(_ command: String) throws {
        if let broker, broker != "embedded" {
            throw CLIError.user("sluice \(command) works on the embedded broker only; --broker \(broker) is for run, produce, consume, topic and group")
        }
    }

    /// Bootstraps logging once, then opens the data directory.
    func openTopics(readOnly: Bool) throws -> TopicManager {
        bootstrapLogging()
        let directory = try DataDirectory(path: dataPath, readOnly: readOnly)
        return TopicManager(directory: directory, logger: Logger(label: "sluice"))
    }

    func bootstrapLogging() {
        let level = Logger.Level(rawValue: logLevel) ?? .warning
        LoggingBootstrap.once(level: level)
    }
}

enum LoggingBootstrap {
    nonisolated(unsafe) private static var done = false

    static func once(level: Logger.Level) {
        // Commands are single-threaded until logging is up.
        guard !done else { return }
        done = true
        LoggingSystem.bootstrap { label in
            var handler = OneLineLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// `sluice: warning: message key=value` on stderr.
struct OneLineLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .warning
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        if event.level >= .error { SaidErrors.note("\(event.message)") }
        var text = "sluice: \(event.level): \(event.message)"
        let all = self.metadata.merging(event.metadata ?? [:]) { $1 }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) { text += " \(k)=\(v)" }
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}

/// Error sentences the log has already printed, so the command's own final error line does
/// not say the same sentence again (a read that logged damage, then failed on it).
enum SaidErrors {
    private static let said = Mutex<Set<String>>([])
    static func note(_ message: String) { _ = said.withLock { $0.insert(message) } }
    static func contains(_ message: String) -> Bool { said.withLock { $0.contains(message) } }
}
