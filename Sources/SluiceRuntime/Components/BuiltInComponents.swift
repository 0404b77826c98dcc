import Foundation
// The built-in components, declared once: fields for validation and docs, and builders.
import Logging
import SluiceBroker
import SluiceLog

extension ComponentRegistry {
    /// A registry with every built-in component.
    public static func builtIns() -> ComponentRegistry {
        let r = ComponentRegistry()
        for spec in BuiltInComponents.all { r.register(spec) }
        return r
    }
}

public enum BuiltInComponents {
    static let batchField = FieldSpec("batch_records", .int, default: "1000", "Most records per batch handed downstream.")

    public static var all: [ComponentSpec] { sources + transforms + sinks }

    // MARK: Sources

    static let sources: [ComponentSpec] = [
        ComponentSpec(kind: .source, type: "topic", summary: "Reads a topic as a member of a consumer group; each assigned partition is a lane processed in offset order.", fields: [
            FieldSpec("topic", .topic, required: true, "The topic to read."),
            FieldSpec("group", .string, "Consumer group; defaults to the pipeline's name."),
            FieldSpec("start", .choice(["earliest", "latest"]), default: "earliest", "Where to start when the group has no committed offset."),
            FieldSpec("isolation", .choice(["read_uncommitted", "read_committed"]), default: "read_committed", "Whether to see records of open and aborted transactions."),
            FieldSpec("fetch_bytes", .size, default: "4MiB", "Most bytes read from one partition per poll. A poll is the unit of commit, so this bounds what is processed again after a crash; larger polls spread the sinks' flush over more records."),
            batchField,
        ]) { config, _ in
            .topicSource(TopicSourceSettings(
                fetchBytes: Int(config.bytes("fetch_bytes") ?? (4 << 20)),
                topic: config.string("topic")!, group: config.string("group") ?? config.pipelineName,
                start: config.string("start") == "latest" ? .latest : .earliest,
                isolation: config.string("isolation") == "read_uncommitted" ? .readUncommitted : .readCommitted,
                maxBatchRecords: Int(config.int("batch_records") ?? 1000)))
        },
        ComponentSpec(kind: .source, type: "queue", summary: "Reads a topic as a queue: a share group (Kafka's KIP-932) whose members each take records under a lock and acknowledge them one by one. Workers may outnumber partitions and order is not kept; a record is accepted once every sink downstream has it. A record that fails through its own fault (a transform's per-record error, a sink's refusal, with no .errors output wired) is rejected at once; one that fails in a way that may pass (a sink that is down) is released for another delivery and rejected on its last. Rejected records go to dead_letter.", fields: [
            FieldSpec("topic", .topic, required: true, "The topic to read."),
            FieldSpec("group", .string, "Share group; defaults to the pipeline's name. Other processes (and Kafka share consumers) in the same group share its records."),
            FieldSpec("lock", .duration, default: "30s", "How long a worker holds records before they go to another."),
            FieldSpec("max_deliveries", .int, default: "5", "Deliveries before a record that keeps failing is rejected (and dead-lettered)."),
            FieldSpec("dead_letter", .topic, "Topic for rejected records and those past max_deliveries, with headers saying why (sluice.dlq.reason, .error, .delivery.count, .topic, .partition, .offset)."),
            FieldSpec("start", .choice(["earliest", "latest"]), default: "earliest", "Where a partition the group has not read yet starts."),
            FieldSpec("instances", .int, default: "1", "Workers in this process."),
            batchField,
        ]) { config, _ in
            let instances = Int(config.int("instances") ?? 1), deliveries = Int(config.int("max_deliveries") ?? 5)
            guard instances >= 1 && instances <= 256 else { throw ComponentError(component: config.id, "instances must be 1 to 256, got \(instances)") }
            guard deliveries >= 1 && deliveries <= 100 else { throw ComponentError(component: config.id, "max_deliveries must be 1 to 100, got \(deliveries)") }
            return .queueSource(QueueSourceSettings(
                topic: config.string("topic")!, group: config.string("group") ?? config.pipelineName,
                lockMs: config.milliseconds("lock") ?? 30_000, maxDeliveries: deliveries, deadLetter: config.string("dead_letter"),
                start: config.string("start") == "latest" ? .latest : .earliest, instances: instances,
                maxBatchRecords: Int(config.int("batch_records") ?? 1000)))
        },
        ComponentSpec(kind: .source, type: "channel", summary: "Messages published on the gateway's channels (`sluice serve --ws`) whose name matches `channels`: each record's key is the channel, its value the message's JSON. Reads the channel topic as a consumer group, each partition a lane, like a topic source.", fields: [
            FieldSpec("channels", .string, required: true, "Channel names to read, a pattern where * matches any run of characters, e.g. inbox.*"),
            FieldSpec("topic", .topic, default: "channels", "The gateway's channel topic (its --ws-topic)."),
            FieldSpec("group", .string, "Consumer group; defaults to the pipeline's name."),
            FieldSpec("start", .choice(["earliest", "latest"]), default: "earliest", "Where to start when the group has no committed offset."),
            FieldSpec("fetch_bytes", .size, default: "4MiB", "Most bytes read from one partition per poll."),
            batchField,
        ]) { config, _ in
            .topicSource(TopicSourceSettings(
                fetchBytes: Int(config.bytes("fetch_bytes") ?? (4 << 20)),
                topic: config.string("topic") ?? "channels", group: config.string("group") ?? config.pipelineName,
                start: config.string("start") == "latest" ? .latest : .earliest,
                isolation: .readCommitted,
                maxBatchRecords: Int(config.int("batch_records") ?? 1000),
                keyPattern: config.string("channels")!))
        },
        ComponentSpec(kind: .source, type: "file", summary: "Reads a file one record per line (JSON lines or plain lines); ends at the end of the file unless `follow`.", fields: [
            FieldSpec("path", .string, required: true, "File to read."),
            FieldSpec("format", .choice(["jsonl", "lines", "csv"]), default: "lines", "`jsonl`: each line is a JSON value (parse it with a json transform); `lines`: plain text; `csv`: the first row names the columns and each later row becomes an object (numbers and true/false typed, empty cells null; quoted fields may not span lines)."),
            FieldSpec("follow", .bool, default: "false", "Keep reading as the file grows."),
            batchField,
        ]) { config, _ in
            .source(FileSource(id: config.id, path: config.string("path")!, format: config.string("format") ?? "lines", follow: config.bool("follow") ?? false, batchRecords: Int(config.int("batch_records") ?? 1000)))
        },
        ComponentSpec(kind: .source, type: "stdin", summary: "Reads standard input one record per line; ends at end of input.", fields: [
            FieldSpec("format", .choice(["jsonl", "lines"]), default: "lines", "How lines are meant (values are bytes either way)."),
            batchField,
        ]) { config, _ in
            .source(StdinSource(id: config.id, format: config.string("format") ?? "lines", batchRecords: Int(config.int("batch_records") ?? 1000)))
        },
        ComponentSpec(kind: .source, type: "http", summary: "An HTTP endpoint: each POST becomes one record (or one per line); the reply is 202 once the records passed the pipeline and every sink made them durable.", fields: [
            FieldSpec("address", .string, default: "127.0.0.1:8080", "host:port to listen on."),
            FieldSpec("path", .string, default: "/", "The path that takes POSTs."),
            FieldSpec("split", .choice(["request", "lines"]), default: "request", "`request`: the body is one record; `lines`: each non-empty line is a record."),
            FieldSpec("max_body", .size, default: "8MiB", "Largest body accepted (413 above it)."),
        ]) { config, _ in
            let address = config.string("address") ?? "127.0.0.1:8080"
            let parts = address.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]), port > 0, port < 65536 else {
                throw ComponentError(component: config.id, "address '\(address)' is not host:port")
            }
            return .source(HTTPSource(id: config.id, host: String(parts[0]), port: port, path: config.string("path") ?? "/", perLine: config.string("split") == "lines", maxBodyBytes: Int(config.bytes("max_body") ?? (8 << 20))))
        },
        ComponentSpec(kind: .source, type: "generator", summary: "Generates records from a template; `i` is the record's number.", fields: [
            FieldSpec("template", .template, required: true, "Each record's value, e.g. '{\"id\": {{i}}, \"amount\": {{i % 100}}}'."),
            FieldSpec("count", .int, default: "0", "How many records; 0 generates until stopped."),
            FieldSpec("rate", .int, default: "0", "Records per second; 0 is as fast as possible."),
            batchField,
        ]) { config, _ in
            .source(GeneratorSource(id: config.id, count: config.int("count") ?? 0, rate: config.int("rate") ?? 0, template: config.expression("template")!, batchRecords: Int(config.int("batch_records") ?? 1000)))
        },
    ]

    // MARK: Transforms

    static let transforms: [ComponentSpec] = [
        ComponentSpec(kind: .transform, type: "json", summary: "Parses each value as JSON so expressions can read its fields; invalid JSON goes to `<id>.errors`.", fields: []) { config, _ in
            .transform(JSONTransform(id: config.id))
        },
        ComponentSpec(kind: .transform, type: "filter", summary: "Keeps the records for which `where` is true.", fields: [
            FieldSpec("where", .expression, required: true, "The condition, e.g. amount > 50 and status == \"paid\"."),
        ]) { config, _ in
            .transform(FilterTransform(id: config.id, condition: config.expression("where")!))
        },
        ComponentSpec(kind: .transform, type: "map", summary: "Sets, removes and renames fields of a parsed JSON object.", fields: [
            FieldSpec("set", .expressionMap, "Fields to set, each from an expression: { cents: \"amount * 100\" }. Evaluated on the record as it came in."),
            FieldSpec("remove", .stringList, "Fields to remove."),
            FieldSpec("rename", .stringMap, "Fields to rename: { old: new }."),
        ]) { config, _ in
            .transform(MapTransform(id: config.id, set: config.expressionMap("set") ?? [], remove: config.stringList("remove") ?? [], rename: config.stringMap("rename") ?? []))
        },
        ComponentSpec(kind: .transform, type: "key", summary: "Sets each record's key from an expression (a string as is, other values as JSON).", fields: [
            FieldSpec("key", .expression, required: true, "The new key, e.g. user.id."),
        ]) { config, _ in
            .transform(KeyTransform(id: config.id, key: config.expression("key")!))
        },
        ComponentSpec(kind: .transform, type: "dedupe", summary: "Drops records whose key was already seen within a time window and/or among the last N keys (state shared by all lanes, in memory; under exactly-once also in the changelog topic `<pipeline>.<id>.changelog`, written in each lane's transaction and read back on start).", fields: [
            FieldSpec("key", .expression, required: true, "What makes two records duplicates, e.g. order_id."),
            FieldSpec("window", .duration, "How long a key is remembered, e.g. 10m."),
            FieldSpec("count", .int, "How many distinct keys are remembered."),
        ], capabilities: [.state, .transactionalEffects]) { config, context in
            let window = config.milliseconds("window"), count = config.int("count")
            guard window != nil || count != nil else { throw ComponentError(component: config.id, "dedupe needs a window, a count, or both") }
            var changelog: (broker: EmbeddedBroker, topic: TopicName)?
            if context.guarantee == .exactlyOnce, let services = context.services, !(services is BrokerServices) {
                throw ComponentError(component: config.id, "dedupe under guarantee: exactly-once keeps its changelog on the embedded broker; with another broker use guarantee: at-least-once or drop the dedupe")
            }
            if context.guarantee == .exactlyOnce, let broker = (context.services as? BrokerServices)?.broker {
                let name = try TopicName("\(config.pipelineName).\(config.id).changelog")
                if !broker.topics.exists(name) {
                    do { try broker.topics.create(name, config: TopicConfig(partitions: 1, retentionMs: window.map { max($0 * 2, 60_000) } ?? -1)) } catch let e as BrokerError where e.code == .topicExists {}
                }
                changelog = (broker, name)
            }
            return .transform(DedupeTransform(id: config.id, key: config.expression("key")!, windowMs: window, capacity: count.map { Int($0) }, changelog: changelog))
        },
        ComponentSpec(kind: .transform, type: "throttle", summary: "Passes at most `rate` records per second; a lane that is ahead waits (backpressure, nothing dropped).", fields: [
            FieldSpec("rate", .int, required: true, "Records per second."),
        ]) { config, _ in
            .transform(ThrottleTransform(rate: config.int("rate")!))
        },
        ComponentSpec(kind: .transform, type: "batch", summary: "Holds each lane's records until `count` records or `bytes` of values are held or `period` has passed, then passes the group on; source offsets are committed only once the group has gone through.", fields: [
            FieldSpec("count", .int, "Records per group."),
            FieldSpec("bytes", .size, "Value bytes per group."),
            FieldSpec("period", .duration, "Longest a record is held, e.g. 1s."),
            FieldSpec("as", .choice(["records", "array"]), default: "records", "`records`: the group goes on as it is; `array`: as one record whose value is a JSON array of the values."),
        ], capabilities: .buffering) { config, _ in
            let count = config.int("count"), bytes = config.bytes("bytes"), period = config.milliseconds("period")
            guard count != nil || bytes != nil || period != nil else { throw ComponentError(component: config.id, "batch needs a count, bytes or a period") }
            if let count, count < 1 { throw ComponentError(component: config.id, "count must be at least 1") }
            return .transform(BatchTransform(id: config.id, count: count.map { Int($0) }, bytes: bytes.map { Int($0) }, periodMs: period, asArray: config.string("as") == "array"))
        },
        ComponentSpec(kind: .transform, type: "route", summary: "Sends each record to the first case whose expression is true (output `<id>.<case>`), or to `<id>.default`.", fields: [
            FieldSpec("routes", .expressionMap, required: true, "Cases in order: { big: \"amount > 100\", eu: \"region == 'eu'\" }."),
        ], extraOutputs: { config in (config.expressionMap("routes") ?? []).map(\.name) + ["default"] }) { config, _ in
            .transform(RouteTransform(id: config.id, routes: config.expressionMap("routes") ?? []))
        },
    ]

    // MARK: Sinks

    static let sinks: [ComponentSpec] = [
        ComponentSpec(kind: .sink, type: "topic", summary: "Writes records to a topic; a batch is accepted once it is durable under the topic's flush policy.", fields: [
            FieldSpec("topic", .topic, required: true, "The topic to write."),
            FieldSpec("key", .expression, "The key, from an expression; defaults to the record's key."),
            FieldSpec("partition", .int, "Write every record to this partition (default: by key, as Kafka does)."),
        ], exactlyOnceCapable: true, capabilities: .transactionalEffects) { config, context in
            guard let services = context.services else { throw ComponentError(component: config.id, "the topic sink needs a broker") }
            let topic = try TopicName(config.string("topic")!)
            return .sink(TopicSink(id: config.id, output: try await services.output(), topic: topic.rawValue, key: config.expression("key"), partition: config.int("partition").map { Int32($0) }))
        },
        ComponentSpec(kind: .sink, type: "channel", summary: "Publishes each record to a gateway channel named by an expression: every subscriber of that channel on every gateway process receives the record's value (JSON; other text is sent as a JSON string).", fields: [
            FieldSpec("channel", .expression, required: true, "The channel's name, from an expression, e.g. \"room.\" + key."),
            FieldSpec("topic", .topic, default: "channels", "The gateway's channel topic (its --ws-topic)."),
        ], exactlyOnceCapable: true, capabilities: .transactionalEffects) { config, context in
            guard let services = context.services else { throw ComponentError(component: config.id, "the channel sink needs a broker") }
            let topic = try TopicName(config.string("topic") ?? "channels")
            return .sink(TopicSink(id: config.id, output: try await services.output(), topic: topic.rawValue, key: config.expression("channel"), partition: nil))
        },
        ComponentSpec(kind: .sink, type: "http", summary: "POSTs records in batches; 5xx answers and connection failures are retried with exponential backoff, 4xx answers send that request's records to `<id>.errors`.", fields: [
            FieldSpec("url", .string, required: true, "Where to POST, e.g. http://127.0.0.1:9000/ingest."),
            FieldSpec("format", .choice(["json", "lines"]), default: "json", "`json`: a JSON array of the values (values that are not JSON become strings); `lines`: the values, one per line."),
            FieldSpec("batch_records", .int, default: "500", "Most records per request."),
            FieldSpec("max_retries", .int, default: "8", "Retries of a request after 5xx or connection failures before the pipeline stops (under a queue source: before the records are released for another delivery)."),
            FieldSpec("backoff", .duration, default: "100ms", "First wait between retries; it doubles each time (at most 30s)."),
            FieldSpec("timeout", .duration, default: "10s", "Timeout of one request."),
        ]) { config, _ in
            guard let url = URL(string: config.string("url")!), let scheme = url.scheme, ["http", "https"].contains(scheme) else {
                throw ComponentError(component: config.id, "url '\(config.string("url")!)' is not an http(s) URL")
            }
            return .sink(HTTPSink(id: config.id, url: url, format: config.string("format") ?? "json", batchRecords: Int(max(1, config.int("batch_records") ?? 500)),
                                  maxRetries: Int(config.int("max_retries") ?? 8), backoffMs: max(1, config.milliseconds("backoff") ?? 100), timeoutMs: config.milliseconds("timeout") ?? 10_000))
        },
        ComponentSpec(kind: .sink, type: "file", summary: "Appends records to a file, one per line, synced before the batch is accepted; optionally rotated by size or age. Under exactly-once a manifest beside the file (`<path>.manifest`) records the committed length and each lane's offset, and a restart cuts the file back to it.", fields: [
            FieldSpec("path", .string, required: true, "File to append to (created if missing)."),
            FieldSpec("format", .choice(["lines", "jsonl", "csv"]), default: "lines", "`lines`: each value as it is; `jsonl`: each value as JSON (text that is not JSON becomes a JSON string); `csv`: the `columns` of each parsed value, with a header row."),
            FieldSpec("columns", .stringList, "Fields written by `csv`, in order (required for csv)."),
            FieldSpec("rotate_bytes", .size, "Start a new file once the current one has this many bytes; the old one becomes `<name>-<n>.<ext>`."),
            FieldSpec("rotate_interval", .duration, "Start a new file once the current one is this old, e.g. 1h."),
        ], exactlyOnceCapable: true) { config, context in
            let format = FileSink.Format(rawValue: config.string("format") ?? "lines") ?? FileSink.Format.lines
            let columns = config.stringList("columns") ?? []
            if format == .csv && columns.isEmpty { throw ComponentError(component: config.id, "format csv needs `columns`, the fields to write in order") }
            let logger = Logger(label: "sluice.sink")
            return .sink(try FileSink(id: config.id, path: config.string("path")!, format: format, columns: columns, rotateBytes: config.bytes("rotate_bytes"), rotateIntervalMs: config.milliseconds("rotate_interval"),
                                      exactlyOnce: context.guarantee == .exactlyOnce, warn: { logger.warning("\($0)") }))
        },
        ComponentSpec(kind: .sink, type: "sqlite", summary: "Inserts (or upserts) one row per record into a SQLite table, columns from expressions. Under exactly-once a lane's rows and its source offset are committed in one SQLite transaction, and the lane resumes from the offset stored in the database.", fields: [
            FieldSpec("path", .string, required: true, "The database file (created if missing, WAL mode, synchronous FULL)."),
            FieldSpec("table", .string, required: true, "The table (created if missing, with the columns below)."),
            FieldSpec("columns", .expressionMap, required: true, "Column values: { id: \"id\", total: \"amount * 100\" }; objects and arrays are stored as JSON text."),
            FieldSpec("key", .stringList, "Columns that identify a row: rows with the same key are updated (upsert) instead of added."),
        ], exactlyOnceCapable: true) { config, context in
            let columns = config.expressionMap("columns") ?? []
            let key = config.stringList("key") ?? []
            if let missing = key.first(where: { k in !columns.contains { $0.name == k } }) {
                throw ComponentError(component: config.id, "key column '\(missing)' is not one of the columns")
            }
            return .sink(try SQLiteSink(id: config.id, path: config.string("path")!, table: config.string("table")!, columns: columns, keyColumns: key, pipelineName: context.pipelineName))
        },
        ComponentSpec(kind: .sink, type: "stdout", summary: "Prints records to standard output.", fields: [
            FieldSpec("format", .choice(["value", "json"]), default: "value", "`value`: each value on a line; `json`: key, value (parsed fields when there are), topic, partition, offset."),
        ]) { config, _ in
            .sink(StdoutSink(format: config.string("format") ?? "value"))
        },
        ComponentSpec(kind: .sink, type: "drop", summary: "Discards records (for benchmarks and for outputs you mean to ignore).", fields: [], exactlyOnceCapable: true) { _, _ in
            .sink(DropSink())
        },
    ]
}
