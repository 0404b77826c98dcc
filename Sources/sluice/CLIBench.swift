// sluice bench cli: the commands a user pipes data through, against the disk's own limit in
// the same run.
//   dd:      dd bs=1M conv=fdatasync of the records file (the time to write and sync its bytes)
//   produce: sluice produce of the same file into a 1-partition `interval` topic (a child
//            process, stdin from the file; it exits once the records are durable)
//   consume: sluice consume --from earliest of those records to /dev/null
// Each round runs dd and produce back to back; the figures are per round and their medians.
// With --kafka (a build with the RdKafka trait, kcat installed): the same file through a
// `sluice serve` on loopback, by `sluice produce|consume --broker kafka://…` and by kcat -P /
// kcat -C -e, round by round in the same run.
import ArgumentParser
import Foundation

struct CLIBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cli",
        abstract: "sluice produce and sluice consume of a file of lines, against dd conv=fdatasync of the same file."
    )

    @Option(help: "Scratch directory (deleted afterwards); on the disk being measured.") var dir: String?
    @Option(help: "Lines in the file.") var records: Int = 1_000_000
    @Option(help: "Bytes per line, newline excluded.") var size: Int = 100
    @Option(help: "Rounds of dd + produce + consume.") var rounds: Int = 3
    @Flag(help: "Also through sluice serve over the Kafka protocol: sluice produce/consume --broker against kcat (needs the RdKafka trait and kcat).") var kafka = false

    func validate() throws {
        if records < 1 || size < 1 || rounds < 1 { throw ValidationError("--records, --size and --rounds must be at least 1") }
        if kafka && !kafkaClientsBuiltIn { throw ValidationError("--kafka needs a sluice built with the RdKafka trait (swift build -c release --traits RdKafka)") }
    }

    func run() throws {
        let base = dir ?? (FileManager.default.currentDirectoryPath + "/.sluice-bench-cli-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        #if DEBUG
        emit("note: this is a debug build; build with -c release for real figures")
        #endif
        let file = base + "/records.txt"
        var text: [UInt8] = []
        text.reserveCapacity(records * (size + 1))
        for i in 0..<records {
            let start = text.count
            text += Array("{\"id\":\(i),\"note\":\"".utf8)
            while text.count - start < size - 2 { text.append(120) }
            text += Array("\"}".utf8)
            text.removeLast(Swift.max(0, text.count - start - size))
            text.append(10)
        }
        FileManager.default.createFile(atPath: file, contents: Data(text))
        let self_ = try Child.executablePath()
        emit("sluice bench cli: \(records) lines of \(size) bytes (\(text.count) bytes) in \(base)")
        var dd: [Double] = [], produce: [Double] = [], consume: [Double] = []
        for round in 1...rounds {
            let data = base + "/data-\(round)"
            let ddRun = try Child.run("/usr/bin/env", ["dd", "if=\(file)", "of=\(base)/dd.out", "bs=1M", "conv=fdatasync"])
            try? FileManager.default.removeItem(atPath: base + "/dd.out")
            _ = try Child.run(self_, ["topic", "create", "bench", "--partitions", "1", "--flush", "interval", "--data", data])
            let p = try Child.run(self_, ["produce", "bench", "--data", data], stdin: file)
            let c = try Child.run(self_, ["consume", "bench", "--from", "earliest", "--data", data], stdout: "/dev/null")
            if round == 1 {
                // Once, untimed: what consume prints is exactly the file that was produced.
                let check = try Child.run(self_, ["consume", "bench", "--from", "earliest", "--data", data])
                guard check.stdoutBytes == text.count else {
                    throw CLIError.runtime("sluice consume printed \(check.stdoutBytes) bytes, not the \(text.count) produced")
                }
            }
            try? FileManager.default.removeItem(atPath: data)
            dd.append(ddRun.wall); produce.append(p.wall); consume.append(c.wall)
            emit(String(format: "round %d: dd conv=fdatasync %.3f s; sluice produce %.3f s (user %.2f s, sys %.2f s) = %.2f× dd; sluice consume %.3f s = %.0f records/s",
                        round, ddRun.wall, p.wall, p.user, p.system, p.wall / ddRun.wall, c.wall, Double(records) / c.wall))
        }
        let (d, p, c) = (median(dd), median(produce), median(consume))
        emit(String(format: "median: dd %.3f s, sluice produce %.3f s (%.0f records/s, %.2f× dd's time; target ≤ 3×), sluice consume %.3f s (%.0f records/s; target ≥ 2,000,000)",
                    d, p, Double(records) / p, p / d, c, Double(records) / c))
        if kafka { try overKafka(file: file, bytes: text.count, base: base, exe: self_) }
    }

    /// The same file through `sluice serve`: sluice's librdkafka commands against kcat's.
    private func overKafka(file: String, bytes: Int, base: String, exe: String) throws {
        let (serve, port) = try ServeProcess.start(exe, data: base + "/serve", log: base + "/serve.log")
        defer { serve.terminate(); serve.waitUntilExit() }
        let url = "kafka://127.0.0.1:\(port)", kcat = ["kcat", "-b", "127.0.0.1:\(port)", "-q"]
        var sp: [Double] = [], kp: [Double] = [], sc: [Double] = [], kc: [Double] = []
        for round in 1...rounds {
            for t in ["s\(round)", "k\(round)"] { _ = try Child.run(exe, ["topic", "create", t, "--partitions", "1", "--broker", url]) }
            let p = try Child.run(exe, ["produce", "s\(round)", "--broker", url], stdin: file)
            let k = try Child.run("/usr/bin/env", kcat + ["-P", "-t", "k\(round)", "-X", "enable.idempotence=true", "-X", "acks=all"], stdin: file)
            let c = try Child.run(exe, ["consume", "s\(round)", "--broker", url])
            let kcRun = try Child.run("/usr/bin/env", kcat + ["-C", "-t", "k\(round)", "-e", "-o", "beginning"])
            // What each read printed is the file each wrote.
            guard c.stdoutBytes == bytes, kcRun.stdoutBytes == bytes else {
                throw CLIError.runtime("over Kafka, sluice consume printed \(c.stdoutBytes) bytes and kcat \(kcRun.stdoutBytes), not the \(bytes) produced")
            }
            sp.append(p.wall); kp.append(k.wall); sc.append(c.wall); kc.append(kcRun.wall)
            emit(String(format: "kafka round %d: sluice produce --broker %.3f s, kcat -P %.3f s (%.2f×); sluice consume --broker %.3f s, kcat -C %.3f s (%.2f×)",
                        round, p.wall, k.wall, p.wall / k.wall, c.wall, kcRun.wall, c.wall / kcRun.wall))
        }
        let (p, k, c, r) = (median(sp), median(kp), median(sc), median(kc))
        emit(String(format: "kafka median: sluice produce --broker %.0f records/s, kcat -P %.0f (sluice/kcat time %.2f×); sluice consume --broker %.0f records/s, kcat -C %.0f (%.2f×)",
                    Double(records) / p, Double(records) / k, p / k, Double(records) / c, Double(records) / r, c / r))
    }
}

/// A `sluice serve --kafka 127.0.0.1:0` in the background for benchmarks, and the port it
/// bound (read from the line it prints).
enum ServeProcess {
    static func start(_ exe: String, data: String, log: String) throws -> (Process, Int) {
        let p = try background(exe, ["serve", "--kafka", "127.0.0.1:0", "--data", data], log: log)
        for _ in 0..<400 {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let m = text.firstMatch(of: /Kafka listener on 127\.0\.0\.1:(\d+)/), let port = Int(m.1) { return (p, port) }
            usleep(50_000)
        }
        p.terminate()
        throw CLIError.runtime("sluice serve did not report its Kafka listener within 20 s; see \(log)")
    }

    /// Waits up to 20 s for `log` to show `pattern` and returns its first capture as a port.
    static func waitFor(_ pattern: Regex<(Substring, Substring)>, log: String, what: String) throws -> Int {
        for _ in 0..<400 {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let m = text.firstMatch(of: pattern), let port = Int(m.1) { return port }
            usleep(50_000)
        }
        throw CLIError.runtime("sluice serve did not report \(what) within 20 s; see \(log)")
    }

    /// `exe args` with stdout and stderr into `log`.
    static func background(_ exe: String, _ args: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let out = FileHandle(forWritingAtPath: log)
        p.standardOutput = out
        p.standardError = out
        try p.run()
        return p
    }
}

/// A child process run to completion with posix_spawn, its CPU times taken from wait4.
enum Child {
    struct Result {
        var wall: Double
        var user: Double
        var system: Double
        /// Bytes the child wrote to stdout (read and discarded).
        var stdoutBytes: Int
    }

    static func executablePath() throws -> String {
        let path = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        return path
    }

    /// Runs `path args`, stdin from `stdin` (or /dev/null), stdout to the file `stdout` or else
    /// counted and discarded, stderr to a pipe quoted in the error when the child fails.
    static func run(_ path: String, _ args: [String], stdin: String? = nil, stdout: String? = nil) throws -> Result {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin ?? "/dev/null", O_RDONLY, 0)
        var out: [Int32] = [0, 0], err: [Int32] = [0, 0]
        guard pipe(&out) == 0, pipe(&err) == 0 else { throw CLIError.runtime("cannot make a pipe: \(String(cString: strerror(errno)))") }
        if let stdout {
            posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY, 0)
        } else {
            posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        }
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        posix_spawn_file_actions_addclose(&actions, out[0])
        posix_spawn_file_actions_addclose(&actions, err[0])
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let t0 = DispatchTime.now().uptimeNanoseconds
        let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
        close(out[1]); close(err[1])
        guard rc == 0 else {
            close(out[0]); close(err[0])
            throw CLIError.runtime("cannot start \(path): \(String(cString: strerror(rc)))")
        }
        // stdout is drained here; stderr on another thread, so neither pipe can fill and stall the child.
        let errBox = ErrorText()
        let errFd = err[0]
        let reader = Thread { errBox.text = drain(errFd, keep: true).kept; close(errFd) }
        reader.start()
        let counted = drain(out[0], keep: false).count
        close(out[0])
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let wall = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        while !errBox.done { usleep(1000) }
        let exited = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard exited == 0 else {
            let last = String(decoding: errBox.text, as: UTF8.self).split(separator: "\n").last ?? ""
            throw CLIError.runtime("\(path) \(args.joined(separator: " ")) exited \(exited): \(last)")
        }
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return Result(wall: wall, user: seconds(usage.ru_utime), system: seconds(usage.ru_stime), stdoutBytes: counted)
    }

    private final class ErrorText: @unchecked Sendable {
        // Written once by the reader thread before `done` is set; read after.
        private let lock = NSLock()
        private var value: [UInt8] = []
        private var finished = false
        var text: [UInt8] {
            get { lock.withLock { value } }
            set { lock.withLock { value = newValue; finished = true } }
        }
        var done: Bool { lock.withLock { finished } }
    }

    private static func drain(_ fd: Int32, keep: Bool) -> (count: Int, kept: [UInt8]) {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total = 0
        var kept: [UInt8] = []
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            total += n
            if keep { kept += buffer[0..<n] }
        }
        return (total, kept)
    }
}
