// Runs the real `sluice` binary built next to the test bundle.
import Foundation
import Synchronization

enum Sluice {
    /// The `sluice` executable in the same build directory as the running tests
    /// (or $SLUICE_BIN).
    static let binary: String = {
        if let path = ProcessInfo.processInfo.environment["SLUICE_BIN"] { return path }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("sluice").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return "sluice"
    }()

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var stdoutLines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast(stdout.hasSuffix("\n") ? 1 : 0).map(String.init) }
    }

    /// Runs sluice to completion with `stdin` as its standard input.
    @discardableResult
    static func run(_ args: [String], data: String? = nil, stdin: String = "", shellPrefix: String? = nil, runAs uid: String? = nil, binary: String = Sluice.binary) throws -> Result {
        let tmp = NSTemporaryDirectory() + "sluice-io-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try Data(stdin.utf8).write(to: URL(fileURLWithPath: tmp + "/in"))
        _ = FileManager.default.createFile(atPath: tmp + "/out", contents: nil)
        _ = FileManager.default.createFile(atPath: tmp + "/err", contents: nil)
        let p = Process()
        var full = args
        if let data { full += ["--data", data] }
        if let uid {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            p.arguments = ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", binary] + full
        } else if let shellPrefix {
            // For limits such as `ulimit -f` that must apply to the sluice process itself.
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = ["-c", shellPrefix + " && exec \"$0\" \"$@\"", binary] + full
        } else {
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = full
        }
        p.standardInput = FileHandle(forReadingAtPath: tmp + "/in")
        p.standardOutput = FileHandle(forWritingAtPath: tmp + "/out")
        p.standardError = FileHandle(forWritingAtPath: tmp + "/err")
        try p.run()
        p.waitUntilExit()
        let out = (try? String(contentsOfFile: tmp + "/out", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: tmp + "/err", encoding: .utf8)) ?? ""
        return Result(status: p.terminationStatus, stdout: out, stderr: err)
    }
}

/// A scratch directory for one test.
final class Scratch: Sendable {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "sluice-cli-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A running `sluice` process (or a helper script) with pipes to its stdin and stdout, for tests that kill it.
final class LiveProcess: @unchecked Sendable {
    // `process` and the pipes are set once in init; `acked` is guarded by its mutex.
    let process = Process()
    let input = Pipe()
    let output = Pipe()
    let errorFile: String
    private let acked = AckCounter()
    private let reader: Thread

    init(_ args: [String], executable: String = Sluice.binary, environment: [String: String] = [:]) throws {
        errorFile = NSTemporaryDirectory() + "sluice-live-\(UUID().uuidString).err"
        _ = FileManager.default.createFile(atPath: errorFile, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: errorFile)
        let handle = output.fileHandleForReading
        let counter = acked
        reader = Thread {
            var pending = ""
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                pending += String(decoding: data, as: UTF8.self)
                while let nl = pending.firstIndex(of: "\n") {
                    let line = pending[..<nl]
                    pending = String(pending[pending.index(after: nl)...])
                    if line.hasPrefix("acked "), let n = Int(line.dropFirst(6)) {
                        counter.raise(to: n)
                    }
                }
            }
        }
        try process.run()
        reader.start()
    }

    /// The highest "acked N" the process printed so far.
    var ackedCount: Int { acked.value }

    /// Writes lines to the process's stdin; false once the pipe is closed.
    func write(_ text: String) -> Bool {
        let data = Data(text.utf8)
        return data.withUnsafeBytes { p -> Bool in
            var done = 0
            while done < p.count {
                let n = Foundation.write(input.fileHandleForWriting.fileDescriptor, p.baseAddress! + done, p.count - done)
                if n <= 0 { return false }
                done += n
            }
            return true
        }
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? input.fileHandleForWriting.close()
        // Let the reader drain what the process printed before it died.
        while reader.isExecuting { usleep(1000) }
    }

    var stderrText: String { (try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? "" }

    /// Waits for the process to exit by itself; its status, or nil (and SIGKILL) after `timeout` seconds.
    func wait(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill9()
            return nil
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { try? FileManager.default.removeItem(atPath: errorFile) }
}

final class AckCounter: Sendable {
    private let count = Mutex(0)
    func raise(to n: Int) { count.withLock { $0 = max($0, n) } }
    var value: Int { count.withLock { $0 } }
}
