// The `sluice` command: parses arguments, runs the subcommand, and turns every failure into
// one sentence on stderr and an exit code (0 ok, 1 user error, 2 runtime failure).
import ArgumentParser
import CSluiceAllocCount
import Foundation
import SluiceBroker
import SluiceLog
import SluiceRuntime

struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "An embedded partitioned broker and stream processing runtime.",
        discussion: """
        Data lives in --data DIR (default ./.sluice, or $SLUICE_DATA).
        Exit codes: 0 success, 1 user error, 2 runtime failure.
        """,
        version: "0.1.0",
        subcommands: [Run.self, Serve.self, Validate.self, TestCommand.self, TopicCommand.self, Produce.self, Consume.self, GroupCommand.self, QueueCommand.self, Components.self, PluginCommand.self, Bench.self]
    )
}

@main
enum Main {
    static func main() async {
        // A closed pipe (sluice consume | head) ends the command quietly; a file size limit
        // (ulimit -f) becomes an EFBIG error the log can report instead of a killed process.
        signal(SIGPIPE, SIG_IGN)
        signal(SIGXFSZ, SIG_IGN)
        keepFetchBuffersInTheHeap()
        do {
            var command = try Sluice.parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            exit(0)
        } catch {
            exit(report(error))
        }
    }

    /// Fetches read up to a few MiB per partition into fresh buffers. glibc serves blocks
    /// that large with mmap, or gives freed heap tops back to the kernel, so every read pays
    /// for page faults on new memory (a group consumer read a backlog at about half the rate
    /// of a bare log read, most of the gap in the kernel). Keeping such blocks in the heap,
    /// and up to 256 MiB of freed heap before trimming, lets the next fetch reuse them.
    static func keepFetchBuffersInTheHeap() { sluice_keep_large_blocks_in_heap() }

    /// Prints `error` as one line and returns the exit code for it.
    static func report(_ error: any Error) -> Int32 {
        switch error {
        case let e as CLIError:
            printError(e.message)
            return e.exitCode
        case let e as BrokerError:
            printError(e.message)
            return e.isUserError ? 1 : 2
        case let e as LogError:
            printError(e.message)
            return [.invalidArgument, .offsetOutOfRange].contains(e.code) ? 1 : 2
        case let e as PipelineLoadError:
            for d in e.diagnostics { FileHandle.standardError.write(Data((d.description + "\n").utf8)) }
            let errors = e.diagnostics.filter { $0.severity == .error }.count
            FileHandle.standardError.write(Data("\(errors) error\(errors == 1 ? "" : "s")\n".utf8))
            return 1
        case let e as PipelineRunError:
            printError(e.description)
            return 2
        case let e as ComponentError:
            // A component that cannot start (its file, its port): the sentence says which.
            printError("component " + e.description)
            return 2
        case let e as ExitCode:
            return e.rawValue
        default:
            let code = Sluice.exitCode(for: error)
            if code == .success {
                print(Sluice.fullMessage(for: error))
                return 0
            }
            let message = Sluice.message(for: error).trimmingCharacters(in: .whitespacesAndNewlines)
            printError(message.isEmpty ? "\(error)" : message + " (see 'sluice help')")
            return 1
        }
    }
}

/// A failure raised by the command layer itself.
struct CLIError: Error {
    var message: String
    var exitCode: Int32

    static func user(_ message: String) -> CLIError { CLIError(message: message, exitCode: 1) }
    static func runtime(_ message: String) -> CLIError { CLIError(message: message, exitCode: 2) }
}

func printError(_ message: String) {
    var line = message
    if line.hasPrefix("Error: ") { line.removeFirst(7) }
    // The log already said this very sentence (a read logged damage, then failed on it).
    if SaidErrors.contains(line) { return }
    FileHandle.standardError.write(Data(("error: " + line + "\n").utf8))
}
