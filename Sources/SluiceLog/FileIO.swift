// Thin wrappers over POSIX file calls that retry EINTR and turn errno into LogError.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file descriptor, closed when the last reference goes away. Readers may keep a
/// deleted segment's file alive this way until they finish.
public final class FileHandleRef: @unchecked Sendable {
    // The descriptor never changes after init; every call below is thread-safe at the OS level.
    public let fd: Int32
    public let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { _ = close(fd) }

    /// Opens (and with `create`, creates) `path` for reading, and writing unless `readOnly`.
    static func open(_ path: String, create: Bool, readOnly: Bool = false) throws -> FileHandleRef {
        var flags: Int32 = readOnly ? O_RDONLY : O_RDWR
        if create { flags |= O_CREAT }
        flags |= O_CLOEXEC
        let fd = path.withCString { Glibc.open($0, flags, 0o644) }
        if fd < 0 { throw FileIO.error("cannot open", path) }
        return FileHandleRef(fd: fd, path: path)
    }

    func size() throws -> Int {
        var st = stat()
        if fstat(fd, &st) != 0 { throw FileIO.error("cannot stat", path) }
        return Int(st.st_size)
    }

    /// Writes all of `bytes` at `offset`.
    func pwriteAll(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
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

    /// Reads up to `count` bytes at `offset` into a new array (shorter only at end of file).
    func pread(count: Int, at offset: Int) throws -> [UInt8] {
        guard count > 0 else { return [] }
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

    /// Reads into `buffer` at `offset`; returns the bytes read.
    func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
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

    func truncate(to size: Int) throws {
        while ftruncate(fd, off_t(size)) != 0 {
            if errno == EINTR { continue }
            throw FileIO.error("cannot truncate", path)
        }
    }

    /// Makes written data durable (fdatasync).
    func sync() throws {
        while fdatasync(fd) != 0 {
            if errno == EINTR { continue }
            throw FileIO.error("cannot sync", path)
        }
    }
}

enum FileIO {
    static func error(_ what: String, _ path: String) -> LogError {
        let e = errno
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
        guard let dir = opendir(path) else { throw error("cannot list", path) }
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
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
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
