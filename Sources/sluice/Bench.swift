// sluice bench: built-in benchmarks (release builds give the real figures).
import ArgumentParser
import Foundation

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput and latency on this machine.",
        subcommands: [LogBench.self, BrokerBench.self, PipelineBench.self, ScaleOutBench.self, PluginBench.self, KafkaBench.self, CLIBench.self, FuzzBench.self, GatewayBench.self, QueueBench.self]
    )
}

/// Writes a line to stdout at once (benchmarks report as they go, even into a pipe).
func emit(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

/// The median of the runs of a measurement (the upper middle one for an even count).
func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
