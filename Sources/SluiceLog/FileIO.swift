// Thin wrappers over POSIX file calls that retry EINTR and turn errno into LogError, and the
// process-wide pool that bounds how many of the log's files have a descriptor open at once.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A file of the log, opened on demand. Its descriptor belongs to a `DescriptorPool` (the
/// process-wide `shared` one), which may close it while the file is idle and descriptors run
/// short; the next operation reopens it with the same flags, never creating or truncating it
/// (only the first open creates, when asked). Every operation pins the descriptor while it
/// runs, so it is never closed under a read, a write or a sync. Thread-safe.
///
/// Deleted files: a reader that looked a segment up before retention deleted it keeps reading
/// it, because `keepOpen()` (called just before the unlink) holds the descriptor until the last
/// reference to the handle goes away, as an always-open descriptor did. A file deleted behind
/// the pool's back (by another process, or a topic deleted under a reader) cannot be reopened:
/// that operation fails with `offsetOutOfRange` on read-only handles, the error a read of data
/// that retention removed gets, and with `io` on writable ones.
public final class FileHandleRef: Sendable {
    public let path: String
    let readOnly: Bool
    /// O_RDONLY or O_RDWR, with O_CLOEXEC: the flags of every open.
    let flags: Int32
    /// The first open adds O_CREAT; a reopen never does.
    let createOnFirstOpen: Bool
    let pool: DescriptorPool
    /// This file's entry in the pool, for the handle's lifetime.
    let slot: Int
    /// Operations in flight.
    let pins: DescriptorPool.PinCount

    private init(path: String, readOnly: Bool, create: Bool, pool: DescriptorPool) {
        self.path = path
        self.readOnly = readOnly
        self.flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        self.createOnFirstOpen = create
        self.pool = pool
        let pins = DescriptorPool.PinCount()
        self.pins = pins
        self.slot = pool.register(pins)
    }

    deinit { pool.unregister(slot) }

    /// Opens (and with `create`, creates) `path` now, for reading, and writing unless
    /// `readOnly`: a missing file is an error here rather than at the first read.
    static func open(_ path: String, create: Bool, readOnly: Bool = false, pool: DescriptorPool = .shared) throws -> FileHandleRef {
        let file = FileHandleRef(path: path, readOnly: readOnly, create: create, pool: pool)
        try pool.open(file)
        return file
    }

    /// A handle whose file is opened (and with `create`, created) by its first operation.
    static func onFirstUse(_ path: String, create: Bool, readOnly: Bool = false, pool: DescriptorPool = .shared) -> FileHandleRef {
        FileHandleRef(path: path, readOnly: readOnly, create: create, pool: pool)
    }

    /// Runs `body` with the file's descriptor, reopening the file if the pool closed it. The
    /// descriptor stays pinned (the pool never closes it) until `body` returns; `body` must not
    /// close it or keep it.
    @inline(__always)
    func withDescriptor<R>(_ body: (Int32) throws -> R) throws -> R {
        let fd = try pool.pin(self)
        defer { pins.value.wrappingSubtract(1, ordering: .releasing) }
        return try body(fd)
    }

    /// Keeps the file open until this handle goes away, opening it now if the pool had closed
    /// it: for a segment about to be deleted while readers may still hold it.
    func keepOpen() throws {
        try pool.keepOpen(self)
    }

    /// Closes the descriptor now if no operation is using it (it reopens on the next use).
    func closeIfIdle() {
        pool.closeIfIdle(self)
    }

    /// Whether the file has a descriptor open now.
    var isOpen: Bool { pool.isOpen(self) }

    func size() throws -> Int {
        try withDescriptor { fd in
            var st = stat()
            if fstat(fd, &st) != 0 { throw FileIO.error("cannot stat", path) }
            return Int(st.st_size)
        }
    }

    /// Writes all of `bytes` at `offset`.
    func pwriteAll(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        guard bytes.count > 0 else { return }
        try withDescriptor { fd in
            var done = 0
            while done < bytes.count {
                let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FileIO.error("cannot write", path)
                }
                if n == 0 { throw LogError(.io, "cannot write \(path): the write made no progress", file: path) }
                done += n
            }
        }
    }

    /// Reads up to `count` bytes at `offset` into a new array (shorter only at end of file).
    func pread(count: Int, at offset: Int) throws -> [UInt8] {
        guard count > 0 else { return [] }
        return try withDescriptor { fd in
            var got = 0
            let out = try [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
                while got < count {
                    let n = Glibc.pread(fd, buf.baseAddress! + got, count - got, off_t(offset + got))
                    if n < 0 {
                        if errno == EINTR { continue }
                        initialized = got
                        throw FileIO.error("cannot read", path)
                    }
                    if n == 0 { break }
                    got += n
                }
                initialized = got
            }
            return out
        }
    }

    /// Reads into `buffer` at `offset`; returns the bytes read.
    func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        return try withDescriptor { fd in
            var got = 0
            while got < buffer.count {
                let n = Glibc.pread(fd, buffer.baseAddress! + got, buffer.count - got, off_t(offset + got))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FileIO.error("cannot read", path)
                }
                if n == 0 { break }
                got += n
            }
            return got
        }
    }

    func truncate(to size: Int) throws {
        try withDescriptor { fd in
            while ftruncate(fd, off_t(size)) != 0 {
                if errno == EINTR { continue }
                throw FileIO.error("cannot truncate", path)
            }
        }
    }

    /// Makes written data durable (fdatasync). Writes made through a descriptor the pool has
    /// closed since are covered too: on Linux the dirty pages belong to the file, not to the
    /// descriptor, and fdatasync on any descriptor of the file flushes them.
    func sync() throws {
        try withDescriptor { fd in
            while fdatasync(fd) != 0 {
                if errno == EINTR { continue }
                throw FileIO.error("cannot sync", path)
            }
        }
    }
}

/// The descriptors of the log's files, at most `capacity` open at once in the process:
/// opening one more first closes the least recently used descriptors that no operation is
/// using. Kafka keeps idle segment files closed or maps them on demand for the same reason:
/// three files per segment, for every segment of every partition, outgrow any descriptor
/// limit (10,000 partitions need 30,000).
///
/// The shared pool raises the process's soft RLIMIT_NOFILE to its hard limit when it is first
/// used and takes that limit less a reserve for sockets, SQLite, pipes and stdio as its
/// capacity (`capacity(forLimit:)`). Should the process run out of descriptors anyway (the
/// reserve was not enough), an open gives back one of the pool's idle descriptors and tries
/// again.
///
/// Cost: one lock acquisition per file operation (which also marks the file most recently
/// used, in an intrusive list over an array: no allocation), and one atomic decrement when it
/// ends. Opening and closing happen under the lock, so only misses serialize.
///
/// Durability: closing a descriptor with unsynced writes loses nothing. The dirty pages belong
/// to the file, and a later `sync()` reopens it and fdatasyncs them. (A writeback error the
/// kernel meets while no descriptor is open is reported to the next fsync of the file as long
/// as the kernel keeps the inode cached; Linux reports an unseen error to a descriptor opened
/// after it, since 4.16.) Write and sync errors surface from the operation as before.
public final class DescriptorPool: Sendable {
    /// The pool every log file uses.
    public static let shared = DescriptorPool()

    /// RLIMIT_NOFILE's soft limit when the pool was made (for the shared pool, after raising
    /// it to the hard limit).
    public let descriptorLimit: Int

    private let state: Mutex<State>

    /// Operations in flight on one file. Raised only under the pool's lock and lowered without
    /// it, so an operation takes the lock once; the pool closes a descriptor only when this is
    /// zero, and it cannot rise while the pool holds the lock.
    final class PinCount: Sendable {
        let value = Atomic<Int>(0)
    }

    struct Slot {
        var fd: Int32 = -1
        /// Neighbours in the list of closable descriptors, toward the least (`older`) and the
        /// most (`newer`) recently used; -1 at the ends.
        var older = -1
        var newer = -1
        /// In that list: open and not kept open.
        var listed = false
        /// Opened once already: the file exists, and reopening must not create it again.
        var opened = false
        /// Never closed by the pool (a deleted file readers may still read).
        var keepOpen = false
        /// The file the first open found; a reopen must find the same one.
        var device: UInt64 = 0
        var inode: UInt64 = 0
        var pins: PinCount?
    }

    struct State {
        var capacity: Int
        var openCount = 0
        var slots: [Slot] = []
        var freeSlots: [Int] = []
        var oldest = -1
        var newest = -1
        var opens = 0
        var reopens = 0
        var evictions = 0

        init(capacity: Int) { self.capacity = capacity }
    }

    /// A pool of its own that keeps at most `capacity` descriptors open (for tests; log files
    /// use `shared`). It leaves the process's descriptor limit alone.
    public init(capacity: Int) {
        descriptorLimit = DescriptorPool.currentLimit(raisingSoftLimit: false)
        state = Mutex(State(capacity: max(1, capacity)))
    }

    private init() {
        let limit = DescriptorPool.currentLimit(raisingSoftLimit: true)
        descriptorLimit = limit
        state = Mutex(State(capacity: DescriptorPool.capacity(forLimit: limit)))
    }

    /// What a pool may keep open under a descriptor limit of `limit`: all but a reserve of a
    /// quarter of it, at least 128 and at most half.
    public static func capacity(forLimit limit: Int) -> Int {
        let reserve = min(max(128, limit / 4), limit / 2)
        return max(1, limit - reserve)
    }

    /// The soft RLIMIT_NOFILE, first raised to the hard limit when `raisingSoftLimit`.
    static func currentLimit(raisingSoftLimit raising: Bool) -> Int {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return 1024 }
        if raising && limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }

    /// The most descriptors kept open; lowering it closes idle ones at once. Settable for
    /// tests and for processes that need more of their descriptors for something else.
    public var capacity: Int {
        get { state.withLock { $0.capacity } }
        set {
            let fds = state.withLock { s -> [Int32] in
                s.capacity = max(1, newValue)
                var closed: [Int32] = []
                while s.openCount > s.capacity, let fd = s.evictOne() { closed.append(fd) }
                return closed
            }
            for fd in fds { _ = Glibc.close(fd) }
        }
    }

    /// Descriptors open now.
    public var openCount: Int { state.withLock { $0.openCount } }
    /// Files opened again after the pool had closed them, since the pool was made.
    public var reopenCount: Int { state.withLock { $0.reopens } }
    /// Descriptors the pool closed to make room, since it was made.
    public var evictionCount: Int { state.withLock { $0.evictions } }

    /// Closes one idle descriptor so that the caller can open a descriptor the pool does not
    /// manage (a directory, a socket) when the process is out of them; false when none is idle.
    /// `errno` is left as it was.
    public func closeIdleDescriptor() -> Bool {
        let saved = errno
        defer { errno = saved }
        guard let fd = state.withLock({ $0.evictOne() }) else { return false }
        _ = Glibc.close(fd)
        return true
    }

    // MARK: For FileHandleRef

    func register(_ pins: PinCount) -> Int {
        state.withLock { s -> Int in
            if let i = s.freeSlots.popLast() {
                s.slots[i] = Slot(pins: pins)
                return i
            }
            s.slots.append(Slot(pins: pins))
            return s.slots.count - 1
        }
    }

    /// The handle went away: its descriptor is closed (outside the lock: closing the last
    /// descriptor of a deleted file frees its blocks, which can take a while).
    func unregister(_ slot: Int) {
        let fd = state.withLock { s -> Int32 in
            let detached = s.detach(slot)
            s.slots[slot] = Slot()
            s.freeSlots.append(slot)
            return detached
        }
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    /// The file's descriptor, opened if needed, pinned and marked most recently used.
    @inline(__always)
    func pin(_ file: FileHandleRef) throws -> Int32 {
        try state.withLock { s -> Int32 in
            let i = file.slot
            if s.slots[i].fd < 0 {
                try s.open(i, file)
            } else if s.slots[i].listed {
                s.touch(i)
            }
            file.pins.value.wrappingAdd(1, ordering: .relaxed)
            return s.slots[i].fd
        }
    }

    func open(_ file: FileHandleRef) throws {
        try state.withLock { s in
            if s.slots[file.slot].fd < 0 { try s.open(file.slot, file) }
        }
    }

    func keepOpen(_ file: FileHandleRef) throws {
        try state.withLock { s in
            let i = file.slot
            if s.slots[i].fd < 0 { try s.open(i, file) }
            if s.slots[i].listed { s.unlink(i) }
            s.slots[i].keepOpen = true
        }
    }

    func isOpen(_ file: FileHandleRef) -> Bool {
        state.withLock { $0.slots[file.slot].fd >= 0 }
    }

    func closeIfIdle(_ file: FileHandleRef) {
        let fd = state.withLock { s -> Int32 in
            let i = file.slot
            guard s.slots[i].fd >= 0, !s.slots[i].keepOpen, file.pins.value.load(ordering: .acquiring) == 0 else { return -1 }
            return s.detach(i)
        }
        if fd >= 0 { _ = Glibc.close(fd) }
    }
}

extension DescriptorPool.State {
    /// Opens slot `i`'s file, first closing least recently used idle descriptors while the
    /// pool is full. Called with the lock held.
    mutating func open(_ i: Int, _ file: FileHandleRef) throws {
        while openCount >= capacity, let fd = evictOne() { _ = Glibc.close(fd) }
        let first = !slots[i].opened
        var flags = file.flags
        if first && file.createOnFirstOpen { flags |= O_CREAT }
        while true {
            let fd = file.path.withCString { Glibc.open($0, flags, 0o644) }
            if fd >= 0 {
                // A reopen must find the same file: one renamed over it (a partition swapped
                // for its rewrite, a topic deleted and created again) is not this handle's.
                var st = stat()
                if fstat(fd, &st) != 0 {
                    let e = errno
                    _ = Glibc.close(fd)
                    throw FileIO.error("cannot stat", file.path, errno: e)
                }
                if first {
                    slots[i].device = UInt64(st.st_dev)
                    slots[i].inode = UInt64(st.st_ino)
                } else if slots[i].device != UInt64(st.st_dev) || slots[i].inode != UInt64(st.st_ino) {
                    _ = Glibc.close(fd)
                    throw Self.goneError(file, errno: ENOENT)
                }
                slots[i].fd = fd
                slots[i].opened = true
                openCount += 1
                if first { opens += 1 } else { reopens += 1 }
                if !slots[i].keepOpen { link(i) }
                return
            }
            let e = errno
            if e == EINTR { continue }
            // Descriptors the pool does not count (sockets, pipes, other files) used up the
            // process's limit: give one of ours back and try again.
            if e == EMFILE || e == ENFILE, let victim = evictOne() {
                _ = Glibc.close(victim)
                continue
            }
            if e == ENOENT && !first { throw Self.goneError(file, errno: e) }
            throw FileIO.error("cannot open", file.path, errno: e)
        }
    }

    /// A file this handle had open was deleted (or replaced) since the pool closed it. For a
    /// reader that is data retention removed: the same error as a read below the log start.
    static func goneError(_ file: FileHandleRef, errno e: Int32) -> LogError {
        LogError(file.readOnly ? .offsetOutOfRange : .io,
                 "\(file.path) was deleted while it was still in use (retention removed it, or its topic was deleted or rewritten)",
                 file: file.path, errno: e)
    }

    /// Takes the least recently used descriptor that no operation is using out of the pool and
    /// returns it for the caller to close; nil when every open descriptor is in use or kept open.
    mutating func evictOne() -> Int32? {
        var i = oldest
        while i >= 0 {
            if slots[i].pins!.value.load(ordering: .acquiring) == 0 {
                evictions += 1
                return detach(i)
            }
            i = slots[i].newer
        }
        return nil
    }

    /// Takes slot `i`'s descriptor out of the pool (-1 when it has none) for the caller to close.
    mutating func detach(_ i: Int) -> Int32 {
        if slots[i].listed { unlink(i) }
        let fd = slots[i].fd
        guard fd >= 0 else { return -1 }
        slots[i].fd = -1
        slots[i].keepOpen = false
        openCount -= 1
        return fd
    }

    /// Makes slot `i` the most recently used.
    mutating func touch(_ i: Int) {
        guard newest != i else { return }
        unlink(i)
        link(i)
    }

    mutating func link(_ i: Int) {
        slots[i].older = newest
        slots[i].newer = -1
        slots[i].listed = true
        if newest >= 0 { slots[newest].newer = i } else { oldest = i }
        newest = i
    }

    mutating func unlink(_ i: Int) {
        let older = slots[i].older, newer = slots[i].newer
        if older >= 0 { slots[older].newer = newer } else { oldest = newer }
        if newer >= 0 { slots[newer].older = older } else { newest = older }
        slots[i].older = -1
        slots[i].newer = -1
        slots[i].listed = false
    }
}

enum FileIO {
    static func error(_ what: String, _ path: String) -> LogError {
        error(what, path, errno: errno)
    }

    static func error(_ what: String, _ path: String, errno e: Int32) -> LogError {
        let reason = String(cString: strerror(e))
        let code: LogError.Code = (e == ENOSPC || e == EFBIG || e == EDQUOT) ? .diskFull : .io
        if code == .diskFull {
            return LogError(code, "\(what) \(path): the disk is full (\(reason))", file: path, errno: e)
        }
        return LogError(code, "\(what) \(path): \(reason)", file: path, errno: e)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw error("cannot create directory", current)
            }
        }
        if !isDirectory(path) { throw LogError(.io, "cannot create directory \(path): a file is in the way", file: path) }
    }

    /// Names in a directory, without "." and "..".
    static func list(_ path: String) throws -> [String] {
        var opened = opendir(path)
        while opened == nil && (errno == EMFILE || errno == ENFILE) && DescriptorPool.shared.closeIdleDescriptor() {
            opened = opendir(path)
        }
        guard let dir = opened else { throw error("cannot list", path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw error("cannot delete", path) }
    }

    /// Removes a directory tree.
    static func removeTree(_ path: String) throws {
        if isDirectory(path) {
            for name in try list(path) { try removeTree(path + "/" + name) }
            if rmdir(path) != 0 && errno != ENOENT { throw error("cannot delete", path) }
        } else {
            try remove(path)
        }
    }

    static func rename(_ from: String, _ to: String) throws {
        if Glibc.rename(from, to) != 0 { throw error("cannot rename \(from) to", to) }
    }

    /// fsyncs a directory so that a create, rename or unlink in it is durable.
    static func syncDirectory(_ path: String) throws {
        var fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        while fd < 0 && (errno == EMFILE || errno == ENFILE) && DescriptorPool.shared.closeIdleDescriptor() {
            fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }
        if fd < 0 { throw error("cannot open directory", path) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw error("cannot sync directory", path) }
    }

    /// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
    /// Readers see the old content or the new, never a mix.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let tmp = path + ".tmp"
        let file = try FileHandleRef.open(tmp, create: true)
        do {
            try file.truncate(to: 0)
            try bytes.withUnsafeBytes { try file.pwriteAll($0, at: 0) }
            try file.sync()
        } catch {
            try? remove(tmp)
            throw error
        }
        try rename(tmp, path)
        let dir = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        try syncDirectory(dir.isEmpty ? "." : dir)
    }

    static func readAll(_ path: String) throws -> [UInt8] {
        let file = try FileHandleRef.open(path, create: false, readOnly: true)
        return try file.pread(count: try file.size(), at: 0)
    }
}

/// Wall-clock time in milliseconds since the epoch.
public func currentTimeMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Monotonic time in nanoseconds, for measuring intervals.
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
