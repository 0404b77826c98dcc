// ChannelLog: where a gateway keeps channel messages. Every channel lives in one topic (the
// channel topic), keyed by the channel's name, so all of a channel's messages land in one
// partition in publish order and a subscriber can resume from the offset it saw last. Two
// implementations: the embedded broker in this process (here) and a Kafka cluster through
// librdkafka (`sluice serve --ws … --broker kafka://…`, in the sluice executable), so gateway
// processes link through the Kafka protocol rather than a protocol of their own.
import SluiceBroker
import SluiceLog

/// One message read back from the channel topic.
public struct ChannelMessage {
    public var offset: Int64
    /// The channel's name (the record's key).
    public var channel: UnsafeRawBufferPointer
    /// The message's JSON text (the record's value).
    public var message: UnsafeRawBufferPointer

    public init(offset: Int64, channel: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer) {
        self.offset = offset
        self.channel = channel
        self.message = message
    }
}

public protocol ChannelLog: Sendable {
    /// For messages: "embedded" or the bootstrap address.
    var name: String { get }
    var partitionCount: Int32 { get }
    /// The partition of a channel (murmur2 of its name, as Kafka's producers place keys).
    func partition(of channel: String) -> Int32
    /// Each partition's next offset now.
    func endOffsets() async throws -> [Int64]
    /// The first offset still kept (older messages have gone with the topic's retention).
    func startOffset(partition: Int32) async throws -> Int64
    /// Appends messages to one partition in order and returns the offset of the first.
    func append(partition: Int32, _ messages: [(channel: String, message: [UInt8])]) async throws -> Int64
    /// Reads messages from `offset` on, waiting up to `maxWait` when there are none yet;
    /// returns the offset to read next.
    func read(partition: Int32, from offset: Int64, maxBytes: Int, maxWait: Duration, _ body: (ChannelMessage) -> Void) async throws -> Int64
}

extension ChannelLog {
    public func partition(of channel: String) -> Int32 {
        var name = channel
        return name.withUTF8 { Murmur2.partition(forKey: UnsafeRawBufferPointer($0), partitions: partitionCount) }
    }
}

/// The channel topic on the embedded broker of this process.
public struct EmbeddedChannelLog: ChannelLog {
    public let broker: EmbeddedBroker
    public let topic: TopicName
    public let partitionCount: Int32

    /// Opens the channel topic, creating it with `partitions` when it does not exist.
    public init(broker: EmbeddedBroker, topic: String, partitions: Int32) throws {
        self.broker = broker
        self.topic = try broker.createTopic(topic, partitions: partitions)
        self.partitionCount = try broker.partitionCount(self.topic)
    }

    public var name: String { "embedded" }

    public func endOffsets() async throws -> [Int64] {
        try (0..<partitionCount).map { try broker.partition(TopicPartition(topic, $0)).highWatermark }
    }

    public func startOffset(partition: Int32) async throws -> Int64 {
        try broker.partition(TopicPartition(topic, partition)).logStartOffset
    }

    public func append(partition: Int32, _ messages: [(channel: String, message: [UInt8])]) async throws -> Int64 {
        var builder = RecordBatchBuilder(capacity: messages.reduce(128) { $0 + $1.channel.utf8.count + $1.message.count + 24 })
        let timestamp = currentTimeMillis()
        for m in messages {
            builder.append(key: Array(m.channel.utf8), value: m.message, timestamp: timestamp)
        }
        return try broker.partition(TopicPartition(topic, partition)).append(&builder).baseOffset
    }

    public func read(partition: Int32, from offset: Int64, maxBytes: Int, maxWait: Duration, _ body: (ChannelMessage) -> Void) async throws -> Int64 {
        let data = try await broker.fetch(TopicPartition(topic, partition), offset: offset, maxBytes: maxBytes, maxWait: maxWait)
        try data.forEachRecord(from: offset) { r in
            guard let key = r.key else { return }
            body(ChannelMessage(offset: r.offset, channel: key, message: r.value ?? UnsafeRawBufferPointer(start: nil, count: 0)))
        }
        return max(offset, data.nextOffset)
    }
}
