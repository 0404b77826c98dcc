// Helpers for broker tests: a throw-away broker and polling until a condition holds.
import Foundation
import SluiceBroker
import SluiceLog

/// Opens a broker on a fresh directory. The caller closes it; the directory is removed.
final class TestBroker: Sendable {
    let path: String
    let broker: EmbeddedBroker

    private init(path: String, broker: EmbeddedBroker) {
        self.path = path
        self.broker = broker
    }

    /// A broker in a fresh directory (or `path`). With `clock`, the broker's timers read it
    /// and never tick on their own: the test advances the clock and calls `tick()`.
    static func make(groupConfig: GroupConfig = GroupConfig(), path: String? = nil, clock: ManualClock? = nil) async throws -> TestBroker {
        let dir = path ?? NSTemporaryDirectory() + "sluice-broker-\(UUID().uuidString)"
        var config = BrokerConfig()
        config.groups = groupConfig
        config.tickIntervalMs = 10
        if let clock {
            config.clock = clock.function
            config.tickIntervalMs = 3_600_000
        }
        return TestBroker(path: dir, broker: try await EmbeddedBroker.open(path: dir, config: config))
    }

    func close(removing: Bool = true) async {
        await broker.close()
        if removing { try? FileManager.default.removeItem(atPath: path) }
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func text(_ p: UnsafeRawBufferPointer?) -> String { p.map { String(decoding: $0, as: UTF8.self) } ?? "<null>" }

/// Polls `condition` every 5 ms until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Duration = .seconds(10), _ condition: @Sendable () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return try await condition()
}

/// All values of a partition as a given isolation level sees them.
func values(_ broker: EmbeddedBroker, _ tp: TopicPartition, isolation: IsolationLevel) throws -> [String] {
    let h = try broker.partition(tp)
    var out: [String] = []
    var offset = h.logStartOffset
    while true {
        let d = try h.read(from: offset, maxBytes: 1 << 20, isolation: isolation)
        if d.isEmpty { break }
        try d.forEachRecord(from: offset) { out.append(text($0.value)) }
        offset = d.nextOffset
    }
    return out
}
