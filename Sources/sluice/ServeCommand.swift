// sluice serve: the embedded broker behind a Kafka wire-protocol listener, optionally running
// pipeline files in the same process (their groups are the same coordinator wire clients use).
import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import NIOSSL
import SluiceKafkaWire
import SluiceGateway
import ServiceLifecycle
import SluiceRuntime

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the embedded broker to Kafka clients (kcat, librdkafka, kafka-python, Java) and run pipeline files beside it until SIGINT/SIGTERM.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var plugins: PluginOptions
    @Option(help: "host:port of the Kafka listener.") var kafka: String = "127.0.0.1:9092"
    @Option(help: "host:port advertised to clients in Metadata (default: the listen address).") var advertise: String?
    @Option(name: .customLong("max-request"), help: "Largest request accepted, e.g. 100MiB; larger frames close the connection.") var maxRequest: String = "100MiB"
    @Option(name: .customLong("idle-timeout"), help: "Close connections idle this long, e.g. 10m.") var idleTimeout: String = "10m"
    @Option(name: .customLong("auto-create-partitions"), help: "Partitions of topics created when a client asks for metadata of a missing topic; 0 turns auto-creation off.") var autoCreatePartitions: Int32 = 1
    @Option(name: .customLong("sasl-users"), help: "A file of user:password lines; clients must then authenticate with SASL PLAIN or SCRAM-SHA-256.") var saslUsers: String?
    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: the listener then speaks TLS (clients use security.protocol SSL or SASL_SSL).") var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-cert.") var tlsKey: String?
    @Option(name: .customLong("group-heartbeat-interval"), help: "How often consumer-protocol (KIP-848) members heartbeat, e.g. 5s (Kafka's group.consumer.heartbeat.interval.ms).") var groupHeartbeatInterval: String = "5s"
    @Option(name: .customLong("group-session-timeout"), help: "A consumer-protocol member without a heartbeat for this long leaves, e.g. 45s (group.consumer.session.timeout.ms).") var groupSessionTimeout: String = "45s"
    @Option(name: .customLong("group-migration-policy"), help: "Whether groups change protocol while they have members: bidirectional (the default, as Kafka), upgrade, downgrade or disabled (Kafka's group.consumer.migration.policy).") var groupMigrationPolicy: String = "bidirectional"
    @OptionGroup var gateway: GatewayOptions
    @Argument(help: "Pipeline files or directories to run in the server.") var files: [String] = []

    func run() async throws {
        if let url = global.broker, url != "embedded" { return try await serveGatewayOnly(url) }
        let list = try pipelineFiles(files)
        let pipelines = try loadPipelines(list, registry: plugins.registry(besides: list))
        let (host, port) = try Self.hostPort(kafka, "--kafka")
        let (adHost, adPort) = try advertise.map { try Self.hostPort($0, "--advertise") } ?? (host, port)
        guard let maxBytes = Durations.bytes(maxRequest), maxBytes > 0 else { throw CLIError.user("--max-request '\(maxRequest)' is not a size such as 100MiB") }
        guard let idleMs = Durations.milliseconds(idleTimeout), idleMs > 0 else { throw CLIError.user("--idle-timeout '\(idleTimeout)' is not a duration such as 10m") }
        guard let heartbeatMs = Durations.milliseconds(groupHeartbeatInterval), heartbeatMs >= 10 else {
            throw CLIError.user("--group-heartbeat-interval '\(groupHeartbeatInterval)' is not a duration of at least 10ms, such as 5s")
        }
        guard let sessionMs = Durations.milliseconds(groupSessionTimeout), sessionMs > heartbeatMs else {
            throw CLIError.user("--group-session-timeout '\(groupSessionTimeout)' must be a duration longer than --group-heartbeat-interval, such as 45s")
        }
        guard let migration = GroupMigrationPolicy(rawValue: groupMigrationPolicy.lowercased()) else {
            throw CLIError.user("--group-migration-policy '\(groupMigrationPolicy)' is not one of \(GroupMigrationPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        global.bootstrapLogging()
        let logger = Logger(label: "sluice")
        var brokerConfig = BrokerConfig()
        brokerConfig.groups.migrationPolicy = migration
        brokerConfig.groups.consumerHeartbeatIntervalMs = heartbeatMs
        brokerConfig.groups.consumerSessionTimeoutMs = sessionMs
        let broker = try await EmbeddedBroker.open(path: global.dataPath, config: brokerConfig, logger: logger)
        var config = KafkaListenerConfig(advertisedHost: adHost, advertisedPort: Int32(adPort))
        config.maxRequestBytes = Int(maxBytes)
        config.autoCreatePartitions = autoCreatePartitions
        if let saslUsers {
            guard let text = try? String(contentsOfFile: saslUsers, encoding: .utf8) else { throw CLIError.user("--sasl-users: cannot read \(saslUsers)") }
            var pairs: [(user: String, password: String)] = []
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty && !line.hasPrefix("#") {
                guard let colon = line.firstIndex(of: ":"), colon > line.startIndex else { throw CLIError.user("\(saslUsers):\(n + 1): expected user:password") }
                pairs.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
            guard !pairs.isEmpty else { throw CLIError.user("\(saslUsers) has no user:password lines") }
            config.sasl = SASLUsers(pairs)
        }
        var tls: NIOSSLContext?
        if tlsCert != nil || tlsKey != nil {
            guard let tlsCert, let tlsKey else { throw CLIError.user("--tls-cert and --tls-key go together") }
            do { tls = try KafkaListener.tlsContext(certificate: tlsCert, key: tlsKey) } catch {
                await broker.close()
                throw CLIError.user("cannot use --tls-cert \(tlsCert) / --tls-key \(tlsKey): \(error)")
            }
        }
        let handler = KafkaRequestHandler(broker: broker, config: config, logger: logger)
        let listener = KafkaListener(handler: handler, host: host, port: port, idleTimeout: .milliseconds(idleMs), tls: tls, logger: logger)
        let runners = pipelines.map { PipelineRunner(pipeline: $0, broker: broker, logger: logger) }
        let gatewayServer: GatewayServer?
        do { gatewayServer = try await gateway.server(log: { try EmbeddedChannelLog(broker: broker, topic: gateway.wsTopic, partitions: gateway.wsPartitions) }, logger: logger) } catch {
            await broker.close()
            throw error
        }
        let listening: @Sendable (Int) -> Void = { bound in
            handler.listening(on: bound)
            FileHandle.standardError.write(Data("sluice serve: Kafka listener on \(host):\(bound), data \(global.dataPath)\(runners.isEmpty ? "" : ", \(runners.count) pipeline\(runners.count == 1 ? "" : "s")")\n".utf8))
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: BrokerService(broker: broker, logger: logger), serviceName: "broker"),
            .init(service: ListenerService(serve: { try await listener.run(bound: listening) }, stopped: "the Kafka listener stopped", logger: logger), serviceName: "kafka-listener"),
        ]
        if let gatewayServer {
            services.append(.init(service: Self.gatewayService(gatewayServer, on: "topic \(gateway.wsTopic)", logger: logger), serviceName: "gateway"))
        }
        services.append(.init(service: PipelinesService(runners: runners, logger: logger), serviceName: "pipelines"))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        // The broker service closes the broker however the group ends.
        try await group.run()
    }

    /// `--broker kafka://…`: a further gateway process, its channels on that cluster.
    func serveGatewayOnly(_ url: String) async throws {
        guard gateway.ws != nil else {
            throw CLIError.user("sluice serve --broker \(url) runs a gateway only, and needs --ws HOST:PORT (the Kafka listener and pipelines serve the embedded broker)")
        }
        guard files.isEmpty else {
            throw CLIError.user("sluice serve --broker \(url) runs a gateway only; run the pipelines with sluice run --broker \(url)")
        }
        global.bootstrapLogging()
        let logger = Logger(label: "sluice")
        let log = try await kafkaChannelLog(url: url, options: global.brokerOptionMap, topic: gateway.wsTopic, partitions: gateway.wsPartitions, logger: logger)
        guard let server = try await gateway.server(log: { log }, logger: logger) else { return }
        let service = Self.gatewayService(server, on: "topic \(gateway.wsTopic) on \(url)", logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [.init(service: service, serviceName: "gateway")], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do { try await group.run() } catch {
            await closeChannelLog(log)
            throw error
        }
        await closeChannelLog(log)
    }

    /// The gateway as a service; it says where it listens once bound.
    static func gatewayService(_ server: GatewayServer, on channels: String, logger: Logger) -> ListenerService {
        ListenerService(serve: {
            try await server.run { bound in
                FileHandle.standardError.write(Data("sluice serve: WebSocket gateway on ws://\(server.host):\(bound)\(server.hub.config.path) (channels in \(channels))\n".utf8))
            }
        }, stopped: "the gateway closed its sockets and its port", logger: logger)
    }

    static func hostPort(_ text: String, _ option: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port), colon > text.startIndex else {
            throw CLIError.user("\(option) '\(text)' is not host:port")
        }
        return (String(text[..<colon]), port)
    }
}
