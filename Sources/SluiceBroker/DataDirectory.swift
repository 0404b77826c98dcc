// DataDirectory: the layout of a Sluice data directory and its single-writer lock.
//
//   <data>/.lock                          flock held by the one process that may write
//   <data>/topics/<topic>/topic.json      topic metadata (atomic writes)
//   <data>/topics/<topic>/<partition>/    one PartitionLog per partition
//   <data>/tmp/                           topics being created or deleted (never visible)
import Foundation
import SluiceLog
import Synchronization

public final class DataDirectory: Sendable {
    public let path: String
    public let isReadOnly: Bool
    private let lockFD: Mutex<Int32>

    /// Opens `path` for writing (creating it, and taking its lock) or read-only (no lock; the
    /// directory must exist). A second writer gets a clear `dataDirectoryLocked` error.
    public init(path: String, readOnly: Bool) throws {
        self.path = path
        self.isReadOnly = readOnly
        if readOnly {
            guard DataDirectory.isDirectory(path) else {
                throw BrokerError(.dataDirectory, "the data directory \(path) does not exist (nothing has been written there yet)")
            }
            guard access(path, R_OK | X_OK) == 0 else {
                throw BrokerError(.dataDirectory, "the data directory \(path) is not readable: \(String(cString: strerror(errno)))")
            }
            lockFD = Mutex(-1)
            return
        }
        for sub in ["/topics", "/tmp"] {
            if let problem = DataDirectory.makeDirectories(path + sub) {
                throw BrokerError(.dataDirectory, "cannot use \(path) as the data directory: \(problem)")
            }
        }
        let fd = open(path + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 {
            throw BrokerError(.dataDirectory, "cannot use \(path) as the data directory: cannot open \(path)/.lock: \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = (try? String(contentsOfFile: path + "/.lock", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            let who = holder.isEmpty ? "another sluice process" : "another sluice process (pid \(holder))"
            throw BrokerError(.dataDirectoryLocked, "the data directory \(path) is in use by \(who); stop it first, or reach it through its listener")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        lockFD = Mutex(fd)
        // Leftovers of an interrupted run: half-created or half-deleted topics go; a partition
        // moved aside by a rewrite that did not finish its swap goes back.
        if let leftovers = try? FileManager.default.contentsOfDirectory(atPath: path + "/tmp") {
            for name in leftovers {
                let parts = name.split(separator: ".", maxSplits: 3).map(String.init)
                if parts.count == 4 && parts[0] == "old" {
                    let target = path + "/topics/" + parts[3] + "/" + parts[1]
                    if !FileManager.default.fileExists(atPath: target) {
                        try? FileManager.default.moveItem(atPath: path + "/tmp/" + name, toPath: target)
                        continue
                    }
                }
                try? FileManager.default.removeItem(atPath: path + "/tmp/" + name)
            }
        }
    }

    deinit { release() }

    /// Gives up the writer lock (the broker calls this when it closes).
    public func release() {
        lockFD.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    public var topicsPath: String { path + "/topics" }
    public func topicPath(_ topic: TopicName) -> String { topicsPath + "/" + topic.rawValue }
    public func partitionPath(_ topic: TopicName, _ partition: PartitionID) -> String { topicPath(topic) + "/" + String(partition) }
    public func metadataPath(_ topic: TopicName) -> String { topicPath(topic) + "/topic.json" }
    var tmpPath: String { path + "/tmp" }

    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// Creates `path` and its parents; returns what went wrong, or nil.
    static func makeDirectories(_ path: String) -> String? {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                return "cannot create \(current): \(String(cString: strerror(errno)))"
            }
        }
        return isDirectory(path) ? nil : "\(path) is not a directory"
    }
}
