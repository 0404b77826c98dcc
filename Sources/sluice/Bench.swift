// sluice bench: built-in benchmarks (release builds give the real figures).
import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput and latency on this machine.",
        subcommands: [LogBench.self]
    )
}
