// One running plugin process and its supervisor. The process is started with posix_spawn,
// its stdin and stdout are pipes carrying one JSON message per line, and its stderr is read
// line by line into Sluice's log under the plugin's name. All blocking I/O (poll, read,
// write, waitpid, the restart backoff) happens on the supervisor's own dispatch queue, never
// on the cooperative pool.
import Dispatch
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Why an exchange with a plugin process did not produce a reply line.
enum PluginIOFailure: Error, CustomStringConvertible {
    case exited(String)
    case timedOut(Int64)
    case spawnFailed(String)

    var description: String {
        switch self {
        case .exited(let how): "the plugin process \(how)"
        case .timedOut(let ms): "the plugin did not answer within \(ms) ms"
        case .spawnFailed(let why): "the plugin could not be started: \(why)"
        }
    }
}

/// A started child process with piped stdin/stdout/stderr.
final class PluginProcess: @unchecked Sendable {
    let pid: pid_t
    private let input: Int32   // our end of the child's stdin
    private let output: Int32  // our end of the child's stdout
    private var pending: [UInt8] = []
    private var pendingStart = 0
    /// Bytes of `pending` from `pendingStart` already searched for a newline.
    private var scanned = 0
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)
    private var reaped = false

    private static let ignoreSigpipe: Void = { signal(SIGPIPE, SIG_IGN) }()
    /// The longest reply line taken; a plugin writing more without a newline is treated as
    /// crashed (killed and restarted).
    static let maxLineBytes = 256 << 20

    init(argv: [String], environment extra: [String: String], name: String, logger: Logger) throws {
        _ = Self.ignoreSigpipe
        var inPipe: [Int32] = [0, 0], outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard pipe(&inPipe) == 0, pipe(&outPipe) == 0, pipe(&errPipe) == 0 else {
            throw PluginIOFailure.spawnFailed("pipe: \(String(cString: strerror(errno)))")
        }
        // No other child inherits these; dup2 onto 0, 1 and 2 clears the flag in this child.
        for fd in inPipe + outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in extra { env[k] = v }
        let envStrings = env.map { "\($0.key)=\($0.value)" }
        var cArgs = argv.map { strdup($0) } + [nil]
        var cEnv = envStrings.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) }; for p in cEnv { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, argv[0], &actions, nil, &cArgs, &cEnv)
        close(inPipe[0]); close(outPipe[1]); close(errPipe[1])
        guard rc == 0 else {
            close(inPipe[1]); close(outPipe[0]); close(errPipe[0])
            throw PluginIOFailure.spawnFailed("\(argv[0]): \(String(cString: strerror(rc)))")
        }
        pid = child
        input = inPipe[1]
        output = outPipe[0]
        _ = fcntl(input, F_SETFL, fcntl(input, F_GETFL) | O_NONBLOCK)
        _ = fcntl(output, F_SETFL, fcntl(output, F_GETFL) | O_NONBLOCK)
        let errFD = errPipe[0], childPID = child
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 4096), line: [UInt8] = []
            while true {
                let n = buffer.withUnsafeMutableBytes { read(errFD, $0.baseAddress, 4096) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                for b in buffer[0..<n] {
                    if b == 10 {
                        logger.warning("\(String(decoding: line, as: UTF8.self))", metadata: ["plugin": "\(name)", "pid": "\(childPID)"])
                        line.removeAll(keepingCapacity: true)
                    } else if line.count < 16384 { line.append(b) }
                }
            }
            if !line.isEmpty { logger.warning("\(String(decoding: line, as: UTF8.self))", metadata: ["plugin": "\(name)", "pid": "\(childPID)"]) }
            close(errFD)
        }
        thread.name = "sluice-plugin-stderr"
        thread.start()
    }

    /// Writes `request` (one line, newline included) and reads one reply line, interleaving
    /// the two so a plugin that answers while still reading never deadlocks with us. With
    /// `request` empty only reads. Returns the line without its newline.
    func exchange(_ request: [UInt8], deadline: DispatchTime, timeoutMs: Int64) throws -> [UInt8] {
        var written = 0
        while true {
            if written == request.count {
                if let nl = pending[(pendingStart + scanned)...].firstIndex(of: 10) {
                    let line = Array(pending[pendingStart..<nl])
                    pendingStart = nl + 1
                    scanned = 0
                    if pendingStart == pending.count { pending.removeAll(keepingCapacity: true); pendingStart = 0 }
                    return line
                }
                scanned = pending.count - pendingStart
            }
            let now = DispatchTime.now()
            guard now < deadline else { throw PluginIOFailure.timedOut(timeoutMs) }
            let waitMs = Int32(min(1000, (deadline.uptimeNanoseconds - now.uptimeNanoseconds) / 1_000_000 + 1))
            var fds = [pollfd(fd: output, events: Int16(POLLIN), revents: 0)]
            if written < request.count { fds.append(pollfd(fd: input, events: Int16(POLLOUT), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), waitMs)
            if ready < 0 { if errno == EINTR { continue }; throw PluginIOFailure.exited("could not be polled: \(String(cString: strerror(errno)))") }
            if fds.count > 1, fds[1].revents != 0 {
                let n = request.withUnsafeBytes { write(input, $0.baseAddress! + written, request.count - written) }
                if n < 0 {
                    if errno == EAGAIN || errno == EINTR { continue }
                    throw PluginIOFailure.exited(exitDescription(fallback: "closed its input"))
                }
                written += n
            }
            if fds[0].revents != 0 {
                if pendingStart > 65536 { pending.removeFirst(pendingStart); pendingStart = 0 }
                let n = chunk.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
                if n > 0 {
                    chunk.withUnsafeBytes { pending.append(contentsOf: $0[0..<n]) }
                    if pending.count - pendingStart > Self.maxLineBytes {
                        throw PluginIOFailure.exited("wrote more than \(Self.maxLineBytes >> 20) MiB without ending the line")
                    }
                } else if n == 0 { throw PluginIOFailure.exited(exitDescription(fallback: "closed its output")) }
                else if errno != EAGAIN && errno != EINTR { throw PluginIOFailure.exited("could not be read: \(String(cString: strerror(errno)))") }
            }
        }
    }

    /// How the child ended, when it has (waits up to 200 ms for it to go).
    private func exitDescription(fallback: String) -> String {
        var status: Int32 = 0
        for _ in 0..<20 {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                reaped = true
                if status & 0x7f == 0 { return "exited with status \((status >> 8) & 0xff)" }
                return "was killed by signal \(status & 0x7f)"
            }
            usleep(10_000)
        }
        return fallback
    }

    /// Closes stdin (a plugin ends at end of input), waits up to `graceMs`, then kills.
    func stop(graceMs: Int = 2000) {
        close(input)
        var status: Int32 = 0
        if !reaped {
            var waited = 0
            while waitpid(pid, &status, WNOHANG) == 0 {
                if waited >= graceMs { kill(pid, SIGKILL); _ = waitpid(pid, &status, 0); break }
                usleep(10_000)
                waited += 10
            }
            reaped = true
        }
        close(output)
    }

    func kill9() {
        if !reaped { kill(pid, SIGKILL) }
        stop(graceMs: 1000)
    }
}

/// A plugin process kept running: started on first use, sent its `configure` message,
/// restarted with backoff when it crashes or hangs, the failed exchange retried. One exchange
/// at a time, in the order they were asked for.
final class PluginSupervisor: @unchecked Sendable {
    let manifest: PluginManifest
    let component: String
    let instance: Int
    let configureLine: [UInt8]
    let timeoutMs: Int64
    let backoffMs: Int64
    let maxRestarts: Int
    let logger: Logger
    private let queue: DispatchQueue
    private var process: PluginProcess?
    private var failuresInARow = 0
    /// Whether the process ever answered configure: one that never did is misconfigured, and
    /// is given up on after three tries instead of `maxRestarts`.
    private var everReady = false
    private var closed = false
    /// How many times the process was (re)started; for tests and logs.
    private(set) var starts = 0

    init(manifest: PluginManifest, component: String, instance: Int, configureLine: [UInt8], timeoutMs: Int64, backoffMs: Int64, maxRestarts: Int, logger: Logger) {
        self.manifest = manifest
        self.component = component
        self.instance = instance
        self.configureLine = configureLine
        self.timeoutMs = timeoutMs
        self.backoffMs = backoffMs
        self.maxRestarts = maxRestarts
        self.logger = logger
        queue = DispatchQueue(label: "sluice.plugin.\(manifest.name).\(instance)")
    }

    var label: String { "plugin '\(manifest.name)' (\(component))" }

    /// Sends `request` and returns the reply line; `check` validates it (a thrown
    /// `PluginProtocolError` is not retried). Crashes and timeouts restart the process and
    /// send `request` again.
    func exchange(_ request: [UInt8]) async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8], Error>) in
            queue.async { c.resume(with: Result { try self.exchangeBlocking(request) }) }
        }
    }

    /// Reads the next line the plugin writes on its own (sources); `request` (an ack) is sent
    /// first when not empty, but not again to a restarted process, which starts afresh. No
    /// timeout: a source may be quiet for a long time.
    func readMessage(sending request: [UInt8]) async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8], Error>) in
            queue.async { c.resume(with: Result { try self.exchangeBlocking(request, timeout: false, resend: false) }) }
        }
    }

    private func exchangeBlocking(_ first: [UInt8], timeout: Bool = true, resend: Bool = true) throws -> [UInt8] {
        var request = first
        while true {
            if closed { throw ComponentError(component: component, "\(label) is closed") }
            do {
                let p = try started()
                let deadline = timeout ? DispatchTime.now() + .milliseconds(Int(timeoutMs)) : DispatchTime.distantFuture
                let line = try p.exchange(request, deadline: deadline, timeoutMs: timeoutMs)
                failuresInARow = 0
                return line
            } catch let failure as PluginIOFailure {
                process?.kill9()
                process = nil
                failuresInARow += 1
                if failuresInARow > maxRestarts || (!everReady && failuresInARow >= 3) {
                    throw ComponentError(component: component, "\(label) failed \(failuresInARow) times in a row, last: \(failure); giving up")
                }
                let wait = min(5000, backoffMs << min(failuresInARow - 1, 16))
                logger.warning("\(label): \(failure); restarting it in \(wait) ms\(resend ? " and sending the batch again" : "")")
                if !resend { request = [] }
                usleep(useconds_t(wait * 1000))
            }
        }
    }

    /// The running process, started and configured when there is none.
    private func started() throws -> PluginProcess {
        if let process { return process }
        let p = try PluginProcess(argv: manifest.resolvedEntry, environment: ["SLUICE_PLUGIN_DIR": manifest.directory, "SLUICE_PLUGIN_INSTANCE": "\(instance)"], name: manifest.name, logger: logger)
        starts += 1
        let reply: [UInt8]
        do {
            reply = try p.exchange(configureLine, deadline: .now() + .milliseconds(Int(timeoutMs)), timeoutMs: timeoutMs)
        } catch {
            p.kill9()
            throw error
        }
        let message: Value
        do { message = try JSON.parse(reply) } catch {
            p.kill9()
            throw ComponentError(component: component, "\(label) answered configure with a line that is not JSON: \(error)")
        }
        switch message["type"]?.asString {
        case "ready": break
        case "error":
            p.kill9()
            throw ComponentError(component: component, "\(label) refused its configuration: \(message["message"]?.asString ?? "no message")")
        default:
            p.kill9()
            throw ComponentError(component: component, "\(label) answered configure with \(String(decoding: reply.prefix(200), as: UTF8.self)); expected {\"type\":\"ready\"}")
        }
        process = p
        everReady = true
        return p
    }

    func close() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            queue.async {
                self.closed = true
                self.process?.stop()
                self.process = nil
                c.resume()
            }
        }
    }
}
