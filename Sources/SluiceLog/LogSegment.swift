// One segment's files: `<base>.log`, `<base>.index`, `<base>.timeindex` (base offset in 20
// digits). Immutable after creation; its mutable bookkeeping lives in PartitionLog's state.
// The files' descriptors belong to DescriptorPool.shared: open while the files are used,
// closed when they are idle and descriptors run short, reopened by the next use.

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
        // The log is opened now: a new segment's file is created here, and a missing one is
        // reported here rather than at the first read.
        log = try FileHandleRef.open(LogSegment.path(directory, baseOffset, "log"), create: create, readOnly: readOnly)
        if readOnly {
            index = nil
            timeIndex = nil
        } else if create {
            // A new segment has all three files from the start (the directory sync after a roll
            // covers them).
            index = try FileHandleRef.open(LogSegment.path(directory, baseOffset, "index"), create: true)
            timeIndex = try FileHandleRef.open(LogSegment.path(directory, baseOffset, "timeindex"), create: true)
        } else {
            // An existing segment's indexes are opened (and created if missing) by their first
            // use: a rolled segment's are read whole by path when the log opens, and most never
            // need a descriptor at all.
            index = FileHandleRef.onFirstUse(LogSegment.path(directory, baseOffset, "index"), create: true)
            timeIndex = FileHandleRef.onFirstUse(LogSegment.path(directory, baseOffset, "timeindex"), create: true)
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

    /// Deletes the segment's files. A reader that looked the segment up before the log dropped
    /// it keeps reading it: the log file is kept open (reopened first if the pool had closed
    /// it) until the last reference to this segment goes, which frees its disk space then, as
    /// when every descriptor stayed open. Should that reopen fail (no descriptor to be had), a
    /// late reader gets the error of a file deleted under it. The indexes are never read
    /// through their handles after this; their descriptors go now.
    func deleteFiles() throws {
        try? log.keepOpen()
        index?.closeIfIdle()
        timeIndex?.closeIfIdle()
        try FileIO.remove(logPath)
        try FileIO.remove(indexPath)
        try FileIO.remove(timeIndexPath)
    }
}
