// One segment's files: `<base>.log`, `<base>.index`, `<base>.timeindex` (base offset in 20
// digits). Immutable after creation; its mutable bookkeeping lives in PartitionLog's state.

final class LogSegment: Sendable {
    let baseOffset: Int64
    let directory: String
    let log: FileHandleRef
    /// nil when the log is opened read-only.
    let index: FileHandleRef?
    let timeIndex: FileHandleRef?

    var logPath: String { log.path }
    var indexPath: String { LogSegment.path(directory, baseOffset, "index") }
    var timeIndexPath: String { LogSegment.path(directory, baseOffset, "timeindex") }
    var fileName: String { LogSegment.fileName(baseOffset, "log") }

    init(directory: String, baseOffset: Int64, create: Bool, readOnly: Bool) throws {
        self.directory = directory
        self.baseOffset = baseOffset
        log = try FileHandleRef.open(LogSegment.path(directory, baseOffset, "log"), create: create, readOnly: readOnly)
        if readOnly {
            index = nil
            timeIndex = nil
        } else {
            index = try FileHandleRef.open(LogSegment.path(directory, baseOffset, "index"), create: true)
            timeIndex = try FileHandleRef.open(LogSegment.path(directory, baseOffset, "timeindex"), create: true)
        }
    }

    static func fileName(_ base: Int64, _ ext: String) -> String {
        let digits = String(base)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + "." + ext
    }

    static func path(_ dir: String, _ base: Int64, _ ext: String) -> String {
        dir + "/" + fileName(base, ext)
    }

    /// The base offset encoded in a segment file name, or nil for other files.
    static func baseOffset(fromFileName name: String, ext: String) -> Int64? {
        guard name.hasSuffix("." + ext) else { return nil }
        let stem = name.dropLast(ext.count + 1)
        guard stem.count == 20, stem.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int64(stem)
    }

    func deleteFiles() throws {
        try FileIO.remove(logPath)
        try FileIO.remove(indexPath)
        try FileIO.remove(timeIndexPath)
    }
}
