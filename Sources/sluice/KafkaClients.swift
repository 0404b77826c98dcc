// The broker clients of `sluice run`: the embedded broker of the data directory, and a
// librdkafka client per Kafka cluster (`broker: kafka://…` in a file or `--broker`), when
// this sluice was built with the RdKafka trait.
import Logging
import SluiceBroker
import SluiceGateway
import SluiceRuntime
#if RdKafka
import SluiceRdKafka
#endif

/// Whether this build can reach Kafka clusters.
var kafkaClientsBuiltIn: Bool {
    #if RdKafka
    true
    #else
    false
    #endif
}

/// One client per distinct Kafka URL and settings; closed together.
final class KafkaClients {
    #if RdKafka
    private var clients: [String: RdKafkaClient] = [:]
    #endif

    /// The client for `url` with `options` (librdkafka properties).
    func client(url: String, options: [String: String], file: String, logger: Logger) throws -> any BrokerClient {
        #if RdKafka
        let key = url + "\u{0}" + options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\u{0}")
        if let c = clients[key] { return c }
        do {
            let c = try RdKafkaClient(url: url, properties: options, logger: logger)
            clients[key] = c
            return c
        } catch let e as RdKafkaError {
            throw CLIError.user("\(file): \(e.message)")
        }
        #else
        throw CLIError.user("\(file): broker \(url) needs the librdkafka client, and this sluice was built without it; build with `swift build --traits RdKafka` (needs Debian's librdkafka-dev)")
        #endif
    }

    func close() async {
        #if RdKafka
        for c in clients.values { await c.close() }
        clients = [:]
        #endif
    }
}

/// The gateway's channel topic on a Kafka cluster.
func kafkaChannelLog(url: String, options: [String: String], topic: String, partitions: Int32, logger: Logger) async throws -> any ChannelLog {
    #if RdKafka
    do {
        return try await RdChannelLog.open(url: url, properties: options, topic: topic, partitions: partitions, logger: logger)
    } catch let e as RdKafkaError {
        throw CLIError.user("sluice serve --broker \(url): \(e.message)")
    }
    #else
    throw CLIError.user("sluice serve --broker \(url) needs the librdkafka client, and this sluice was built without it; build with `swift build --traits RdKafka` (needs Debian's librdkafka-dev)")
    #endif
}

func closeChannelLog(_ log: any ChannelLog) async {
    #if RdKafka
    if let rd = log as? RdChannelLog { await rd.close() }
    #endif
}
