// TopicManager: creates, lists, describes and deletes topics, and opens their partition logs.
// Thread-safe; the open logs are cached and shared.
import Foundation
import Logging
import SluiceLog
import Synchronization

/// What `describe` reports for one partition.
public struct PartitionDescription: Sendable, Hashable {
    public var partition: PartitionID
    public var logStartOffset: Int64
    public var logEndOffset: Int64
    public var highWatermark: Int64
    public var sizeInBytes: Int
    public var segments: Int
}

public struct TopicDescription: Sendable, Hashable {
    public var name: TopicName
    public var config: TopicConfig
    public var partitions: [PartitionDescription]
}

public final class TopicManager: Sendable {
    public let directory: DataDirectory
    let logger: Logger
    private let state = Mutex<[TopicName: OpenTopic]>([:])
    private let creating = NSLock()
    /// Topic ids both ways, read from `<topic>/topic.id` on first use (Fetch v13+ looks
    /// topics up by id on every request).
    private let ids = Mutex<(byName: [TopicName: UUID], byId: [UUID: TopicName])>(([:], [:]))

    struct OpenTopic: Sendable {
        var config: TopicConfig
        var logs: [PartitionID: PartitionLog]
    }

    public init(directory: DataDirectory, logger: Logger = Logger(label: "sluice.topics")) {
        self.directory = directory
        self.logger = logger
    }

    public var isReadOnly: Bool { directory.isReadOnly }

    // MARK: Metadata

    /// Creates a topic with its partitions. The topic appears whole or not at all: it is
    /// built under `<data>/tmp` and renamed into place.
    @discardableResult
    public func create(_ name: TopicName, config: TopicConfig) throws -> TopicDescription {
        try config.validate()
        guard !directory.isReadOnly else { throw BrokerError(.dataDirectory, "cannot create topics: the data directory is open read-only") }
        let final = directory.topicPath(name)
        if FileManager.default.fileExists(atPath: final) {
            throw BrokerError(.topicExists, "topic '\(name)' already exists")
        }
        // Creations in this process run one at a time; the staging name is unique anyway.
        creating.lock()
        defer { creating.unlock() }
        if FileManager.default.fileExists(atPath: final) {
            throw BrokerError(.topicExists, "topic '\(name)' already exists")
        }
        // Scratch names never contain the topic's name: a 249-character name plus a prefix
        // would pass the 255-byte limit of one file name.
        let staging = directory.tmpPath + "/create-\(getpid())-\(UUID().uuidString)"
        // Set once the topic is in place: from then on a failure removes the topic itself.
        var placed = false
        do {
            try? FileManager.default.removeItem(atPath: staging)
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
            for p in 0..<config.partitions {
                let log = try PartitionLog.open(directory: staging + "/\(p)", config: config.logConfig, logger: logger)
                log.close()
            }
            try writeMetadata(config, to: staging + "/topic.json")
            try writeTopicId(UUID(), to: staging + "/topic.id")
            if FileManager.default.fileExists(atPath: final) {
                throw BrokerError(.topicExists, "topic '\(name)' already exists")
            }
            try FileManager.default.moveItem(atPath: staging, toPath: final)
            placed = true
            try syncDirectory(directory.topicsPath)
        } catch let error as BrokerError {
            discardFailedCreate(name, staging: staging, placed: placed)
            throw error
        } catch {
            discardFailedCreate(name, staging: staging, placed: placed)
            throw BrokerError(.metadata, "cannot create topic '\(name)': \(error)", cause: error)
        }
        // Describing opens every partition. Should that fail (a disk error, no descriptors to
        // be had), the topic goes again: a failed create leaves nothing behind, and the same
        // command can simply be run again.
        let description: TopicDescription
        do {
            description = try describe(name)
        } catch {
            discardFailedCreate(name, staging: staging, placed: true)
            throw error
        }
        logger.info("created topic \(name) with \(config.partitions) partitions")
        return description
    }

    /// Removes what a failed `create` made, as far as it can: the staging directory or, once
    /// the topic was moved into place, the topic itself (the logs `describe` opened are closed
    /// first). What a crash leaves in `tmp/` goes at the next start.
    private func discardFailedCreate(_ name: TopicName, staging: String, placed: Bool) {
        guard placed else {
            try? FileManager.default.removeItem(atPath: staging)
            return
        }
        let logs = state.withLock { $0.removeValue(forKey: name) }
        ids.withLock { if let id = $0.byName.removeValue(forKey: name) { $0.byId.removeValue(forKey: id) } }
        for log in logs?.logs.values.map({ $0 }) ?? [] { log.close() }
        // Out of topics/ in one rename (readers see the whole topic or none), then removed.
        let graveyard = directory.tmpPath + "/delete-\(getpid())-\(UUID().uuidString)"
        if (try? FileManager.default.moveItem(atPath: directory.topicPath(name), toPath: graveyard)) != nil {
            try? syncDirectory(directory.topicsPath)
            try? FileManager.default.removeItem(atPath: graveyard)
        } else {
            try? FileManager.default.removeItem(atPath: directory.topicPath(name))
        }
        if FileManager.default.fileExists(atPath: directory.topicPath(name)) {
            logger.error("could not remove the half-created topic \(name) at \(directory.topicPath(name)); delete it with: sluice topic delete \(name)")
        } else {
            logger.warning("removed the half-created topic \(name) after its creation failed")
        }
    }

    /// Names of every topic, sorted.
    public func list() throws -> [TopicName] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.topicsPath)
        } catch {
            if !FileManager.default.fileExists(atPath: directory.topicsPath) { return [] }
            throw BrokerError(.dataDirectory, "cannot list topics in \(directory.topicsPath): \(error)")
        }
        return names.compactMap { name in
            guard FileManager.default.fileExists(atPath: directory.topicsPath + "/" + name + "/topic.json") else { return nil }
            return try? TopicName(name)
        }.sorted()
    }

    public func config(_ name: TopicName) throws -> TopicConfig {
        if let open = state.withLock({ $0[name] }) { return open.config }
        return try readMetadata(name)
    }

    public func exists(_ name: TopicName) -> Bool {
        FileManager.default.fileExists(atPath: directory.metadataPath(name))
    }

    public func describe(_ name: TopicName) throws -> TopicDescription {
        let config = try self.config(name)
        var parts: [PartitionDescription] = []
        for p in 0..<config.partitions {
            let log = try partitionLog(name, p)
            parts.append(PartitionDescription(partition: p, logStartOffset: log.logStartOffset, logEndOffset: log.logEndOffset, highWatermark: log.highWatermark, sizeInBytes: log.sizeInBytes, segments: log.segmentCount))
        }
        return TopicDescription(name: name, config: config, partitions: parts)
    }

    /// Deletes a topic and its data. Readers in this process see it vanish at once; the files
    /// are moved out of `topics/` atomically, then removed.
    public func delete(_ name: TopicName) throws {
        guard !directory.isReadOnly else { throw BrokerError(.dataDirectory, "cannot delete topics: the data directory is open read-only") }
        guard exists(name) else { throw unknownTopic(name) }
        let logs = state.withLock { $0.removeValue(forKey: name) }
        ids.withLock { if let id = $0.byName.removeValue(forKey: name) { $0.byId.removeValue(forKey: id) } }
        for log in logs?.logs.values.map({ $0 }) ?? [] { log.close() }
        let graveyard = directory.tmpPath + "/delete-\(getpid())-\(UUID().uuidString)"
        do {
            try FileManager.default.moveItem(atPath: directory.topicPath(name), toPath: graveyard)
            try syncDirectory(directory.topicsPath)
            try FileManager.default.removeItem(atPath: graveyard)
        } catch {
            throw BrokerError(.metadata, "cannot delete topic '\(name)': \(error)", cause: error)
        }
        logger.info("deleted topic \(name)")
    }

    // MARK: Topic ids

    /// The topic's id (Kafka's topic UUID, used by Fetch v13+ and admin APIs): chosen at
    /// random when the topic is created, so a topic deleted and created again gets a new one.
    /// Topics created before ids existed are given one on first use.
    public func topicId(_ name: TopicName) throws -> UUID {
        if let id = ids.withLock({ $0.byName[name] }) { return id }
        guard exists(name) else { throw unknownTopic(name) }
        let path = directory.topicPath(name) + "/topic.id"
        let id: UUID
        if let text = FileManager.default.contents(atPath: path).flatMap({ String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }),
           let parsed = UUID(uuidString: text) {
            id = parsed
        } else if FileManager.default.fileExists(atPath: path) {
            throw BrokerError(.metadata, "the id of topic '\(name)' at \(path) is not a UUID")
        } else if directory.isReadOnly {
            throw BrokerError(.metadata, "topic '\(name)' has no id yet and the data directory is open read-only")
        } else {
            creating.lock()
            defer { creating.unlock() }
            if let text = FileManager.default.contents(atPath: path).flatMap({ String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }),
               let parsed = UUID(uuidString: text) {
                id = parsed
            } else {
                id = UUID()
                try writeTopicId(id, to: path)
            }
        }
        ids.withLock { $0.byName[name] = id; $0.byId[id] = name }
        return id
    }

    /// The topic with this id, if any.
    public func topic(withId id: UUID) throws -> TopicName? {
        if let hit = ids.withLock({ $0.byId[id] }) { return hit }
        for name in try list() where try topicId(name) == id { return name }
        return nil
    }

    // MARK: Logs

    /// The log of one partition, opened on first use (read-only when the directory is).
    public func partitionLog(_ name: TopicName, _ partition: PartitionID) throws -> PartitionLog {
        if let log = state.withLock({ $0[name]?.logs[partition] }) { return log }
        let config = try self.config(name)
        guard partition >= 0 && partition < config.partitions else {
            throw BrokerError(.invalidPartition, "topic '\(name)' has partitions 0 to \(config.partitions - 1); there is no partition \(partition)")
        }
        let log: PartitionLog
        do {
            log = try PartitionLog.open(directory: directory.partitionPath(name, partition), config: config.logConfig, readOnly: directory.isReadOnly, logger: logger)
        } catch let error as LogError {
            throw BrokerError(.log, error.message, cause: error)
        }
        if !directory.isReadOnly {
            do { try log.applyRetention() } catch { logger.warning("retention of \(name)/\(partition) failed: \(error)") }
        }
        return state.withLock { s in
            if let existing = s[name]?.logs[partition] {
                log.close()
                return existing
            }
            s[name, default: OpenTopic(config: config, logs: [:])].logs[partition] = log
            return log
        }
    }

    /// Every partition log of a topic.
    public func partitionLogs(_ name: TopicName) throws -> [PartitionLog] {
        let config = try self.config(name)
        return try (0..<config.partitions).map { try partitionLog(name, $0) }
    }

    /// Replaces a partition's log with a new one that `fill` writes (compaction of internal
    /// topics). The new log is built beside the old one and swapped in by rename; a crash
    /// leaves either the old log or the new one.
    public func rewritePartition(_ name: TopicName, _ partition: PartitionID, fill: (PartitionLog) throws -> Void) throws {
        let config = try self.config(name)
        let path = directory.partitionPath(name, partition)
        let staging = directory.tmpPath + "/rewrite.\(partition).\(getpid()).\(UUID().uuidString)"
        try? FileManager.default.removeItem(atPath: staging)
        let fresh = try PartitionLog.open(directory: staging, config: config.logConfig, logger: logger)
        try fill(fresh)
        try fresh.flush()
        fresh.close()
        let old = state.withLock { $0[name]?.logs.removeValue(forKey: partition) }
        old?.close()
        let graveyard = directory.tmpPath + "/old.\(partition).\(getpid()).\(UUID().uuidString)"
        do {
            try FileManager.default.moveItem(atPath: path, toPath: graveyard)
            try FileManager.default.moveItem(atPath: staging, toPath: path)
            try syncDirectory(directory.topicPath(name))
            try? FileManager.default.removeItem(atPath: graveyard)
        } catch {
            if !FileManager.default.fileExists(atPath: path) { try? FileManager.default.moveItem(atPath: graveyard, toPath: path) }
            throw BrokerError(.metadata, "cannot swap in the rewritten log of \(name)/\(partition): \(error)", cause: error)
        }
    }

    /// Adds partitions to a topic (never removes any).
    public func addPartitions(_ name: TopicName, total: Int32) throws {
        guard !directory.isReadOnly else { throw BrokerError(.dataDirectory, "cannot change topics: the data directory is open read-only") }
        var config = try self.config(name)
        guard total > config.partitions else {
            throw BrokerError(.invalidPartition, "topic '\(name)' already has \(config.partitions) partitions; the count can only grow")
        }
        for p in config.partitions..<total {
            let log = try PartitionLog.open(directory: directory.partitionPath(name, p), config: config.logConfig, logger: logger)
            log.close()
        }
        config.partitions = total
        try writeMetadata(config, to: directory.metadataPath(name))
        state.withLock { $0[name]?.config = config }
        logger.info("topic \(name) now has \(total) partitions")
    }

    /// Flushes and closes every open log.
    public func close() {
        let all = state.withLock { s -> [PartitionLog] in
            defer { s.removeAll() }
            return s.values.flatMap { $0.logs.values }
        }
        for log in all { log.close() }
    }

    // MARK: Helpers

    func unknownTopic(_ name: TopicName) -> BrokerError {
        BrokerError(.unknownTopic, "topic '\(name)' does not exist (create it with: sluice topic create \(name) --partitions N)")
    }

    private func readMetadata(_ name: TopicName) throws -> TopicConfig {
        let path = directory.metadataPath(name)
        guard let data = FileManager.default.contents(atPath: path) else {
            if FileManager.default.fileExists(atPath: path) {
                throw BrokerError(.metadata, "cannot read the metadata of topic '\(name)' at \(path)")
            }
            throw unknownTopic(name)
        }
        do {
            let config = try JSONDecoder().decode(TopicConfig.self, from: data)
            try config.validate()
            return config
        } catch let error as BrokerError {
            throw BrokerError(.metadata, "the metadata of topic '\(name)' at \(path) is invalid: \(error.message)")
        } catch {
            throw BrokerError(.metadata, "the metadata of topic '\(name)' at \(path) is not valid JSON: \(error)")
        }
    }

    private func writeTopicId(_ id: UUID, to path: String) throws {
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data((id.uuidString.lowercased() + "\n").utf8)) else {
            throw BrokerError(.metadata, "cannot write \(tmp): \(String(cString: strerror(errno)))")
        }
        let fd = open(tmp, O_RDONLY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); Glibc.close(fd) }
        if rename(tmp, path) != 0 { throw BrokerError(.metadata, "cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))") }
    }

    private func writeMetadata(_ config: TopicConfig, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(config)
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: data) else {
            throw BrokerError(.metadata, "cannot write \(tmp): \(String(cString: strerror(errno)))")
        }
        let fd = open(tmp, O_RDONLY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); Glibc.close(fd) }
        if rename(tmp, path) != 0 { throw BrokerError(.metadata, "cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))") }
    }

    private func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { Glibc.close(fd) }
        if fsync(fd) != 0 { throw BrokerError(.dataDirectory, "cannot sync \(path): \(String(cString: strerror(errno)))") }
    }
}
