// sluice bench fuzz: generated and mutated inputs through the parts that read what others
// wrote — the Kafka request codec (every API's generated decoder) and request handler, the
// record-batch checks and decoder, the pipeline loader and the expression compiler. A crash
// ends the process, so finishing is the result; memory is watched and must stay bounded.
//
// Seeds: the captured client requests (Tests/SluiceKafkaWireTests/Fixtures), record batches
// built here, the example pipelines and the broken-pipeline corpus, and expressions from a
// small grammar. Mutations: bit flips, interesting bytes (0, 0x7f, 0x80, 0xff), inserted,
// deleted, repeated and truncated ranges, splices of two seeds, and for text also inserted
// YAML and expression syntax.
import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import SluiceKafkaWire
import SluiceLog
import SluiceRuntime

struct FuzzBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Mutated inputs through the Kafka codec and handler, record-batch decoding, the pipeline loader and the expression compiler."
    )

    @Option(help: "Inputs in all (spread over the targets).") var iterations: Int = 1_000_000
    @Option(help: "Seed of the mutations (the same seed makes the same inputs).") var seed: UInt64 = 1
    @Option(name: .customLong("max-rss-mib"), help: "Fail when the peak resident memory exceeds this.") var maxRSSMiB: Int = 1024

    func validate() throws {
        if iterations < 1 { throw ValidationError("--iterations must be at least 1") }
    }

    func run() async throws {
        LoggingBootstrap.once(level: .critical)
        let repo = KafkaBench.repository
        let fixtures = Self.requestFixtures(repo + "/Tests/SluiceKafkaWireTests/Fixtures")
        guard !fixtures.isEmpty else { throw CLIError.user("no request fixtures under \(repo)/Tests/SluiceKafkaWireTests/Fixtures; run from the repository") }
        let pipelines = Self.files(repo + "/pipelines", ".yaml") + Self.files(repo + "/Tests/SluiceRuntimeTests/Fixtures/invalid", ".yaml")
        let batches = Self.batchSeeds()
        let expressions = Self.expressionSeeds()
        let dir = NSTemporaryDirectory() + "sluice-fuzz-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let broker = try await EmbeddedBroker.open(path: dir, logger: Logger(label: "sluice.fuzz"))
        _ = try broker.createTopic("plain", partitions: 2)
        let handler = KafkaRequestHandler(broker: broker, config: KafkaListenerConfig(advertisedHost: "127.0.0.1", advertisedPort: 9092), logger: Logger(label: "sluice.fuzz"))
        // Requests that wait (long polls, rebalances) or build large things (topics with
        // thousands of partitions) are fuzzed in the codec only, not through the handler.
        let handled = fixtures.filter { ![ApiKey.fetch, .joinGroup, .syncGroup, .createTopics, .createPartitions, .deleteTopics].contains($0.api) }
        var rng = SplitMix(seed: seed)
        var counts = [String: Int]()
        var refused = [String: Int]()
        let t0 = DispatchTime.now().uptimeNanoseconds
        emit("sluice bench fuzz: \(iterations) inputs, seed \(seed); seeds: \(fixtures.count) requests, \(batches.count) batches, \(pipelines.count) pipeline files, \(expressions.count) expressions")
        for i in 0..<iterations {
            switch i % 20 {
            case 0...7:  // the codec: every API's decoder, at the fixture's version and a neighbour
                let seed = fixtures[rng.below(fixtures.count)]
                let body = Self.mutate(seed.body, &rng, other: fixtures[rng.below(fixtures.count)].body)
                let version = rng.below(4) == 0 ? seed.version &+ Int16(rng.below(3)) - 1 : seed.version
                var r = KafkaReader(body)
                counts["codec", default: 0] += 1
                do { _ = try seed.api.decodeRequest(&r, version: version) } catch { refused["codec", default: 0] += 1 }
            case 8:  // the handler, whole frames
                guard !handled.isEmpty else { continue }
                let seed = handled[rng.below(handled.count)]
                let frame = Self.mutate(seed.frame, &rng, other: seed.frame)
                counts["handler", default: 0] += 1
                do { _ = try await handler.handle(frame) } catch { refused["handler", default: 0] += 1 }
            case 9...13:  // record batches: header checks, then every record
                let batch = Self.mutate(batches[rng.below(batches.count)], &rng, other: batches[rng.below(batches.count)])
                counts["batch", default: 0] += 1
                if !Self.decodeBatches(batch) { refused["batch", default: 0] += 1 }
            case 14...15:  // the pipeline loader
                let text = Self.mutateText(pipelines[rng.below(pipelines.count)], &rng)
                counts["loader", default: 0] += 1
                do { _ = try PipelineLoader(environment: [:]).load(text: text, file: "fuzz.yaml") } catch { refused["loader", default: 0] += 1 }
            default:  // the expression compiler
                let text = Self.mutateText(expressions[rng.below(expressions.count)], &rng)
                counts["expression", default: 0] += 1
                do { _ = try Expression.compile(text) } catch { refused["expression", default: 0] += 1 }
            }
            if i > 0 && i % 200_000 == 0 { emit("  \(i) inputs, peak RSS \(Self.peakRSSMiB()) MiB") }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        await broker.close()
        let rss = Self.peakRSSMiB()
        let parts = ["codec", "handler", "batch", "loader", "expression"].map { "\($0) \(counts[$0, default: 0]) (\(refused[$0, default: 0]) refused)" }
        emit(String(format: "fuzz: %d inputs in %.1f s (%.0f inputs/s): %@; 0 crashes; peak RSS %d MiB (limit %d)",
                    iterations, seconds, Double(iterations) / seconds, parts.joined(separator: ", "), rss, maxRSSMiB))
        if rss > maxRSSMiB { throw CLIError.runtime("peak resident memory \(rss) MiB is above the limit of \(maxRSSMiB) MiB") }
    }

    // MARK: Seeds

    struct RequestSeed {
        var api: ApiKey
        var version: Int16
        var frame: [UInt8]
        var body: [UInt8]
    }

    static func requestFixtures(_ dir: String) -> [RequestSeed] {
        files(dir, ".hex").compactMap { hex in
            var bytes: [UInt8] = []
            var it = hex.trimmingCharacters(in: .whitespacesAndNewlines).utf8.makeIterator()
            while let hi = it.next(), let lo = it.next() {
                guard let h = UInt8(String(UnicodeScalar(hi)), radix: 16), let l = UInt8(String(UnicodeScalar(lo)), radix: 16) else { return nil }
                bytes.append(h << 4 | l)
            }
            let frame = Array(bytes.dropFirst(4))
            guard let (header, body) = try? KafkaRequestHandler.header(frame), let api = ApiKey(rawValue: header.apiKey) else { return nil }
            return RequestSeed(api: api, version: header.apiVersion, frame: frame, body: Array(body.bytes[body.position...]))
        }
    }

    static func files(_ dir: String, _ suffix: String) -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(suffix) }.sorted()
        return names.compactMap { try? String(contentsOfFile: dir + "/" + $0, encoding: .utf8) }
    }

    static func batchSeeds() -> [[UInt8]] {
        var out: [[UInt8]] = []
        for (records, keyed) in [(1, false), (3, true), (20, true), (200, false)] {
            var b = RecordBatchBuilder(capacity: 1 << 16)
            for i in 0..<records {
                let value = Array("{\"id\":\(i),\"note\":\"seed\"}".utf8)
                b.append(key: keyed ? Array("k\(i % 7)".utf8) : nil, value: value, timestamp: 1_700_000_000_000 + Int64(i),
                         headers: keyed ? [RecordHeader(name: "h", value: Array("v".utf8))] : [])
            }
            b.seal()
            out.append(b.bytes)
        }
        return out
    }

    static func expressionSeeds() -> [String] {
        ["amount > 50", "user.name == \"ann\" and not (x < 3 or y >= 4.5)", "upper(name) + \"-\" + string(id * 100)",
         "meta.key == null", "items[0].price * (1 + tax) / 2 - 1", "coalesce(a, b, c) != \"\"", "len(tags) > 2 ? \"many\" : \"few\"",
         "meta.headers.origin == \"kcat\"", "-x + - - y", "contains(lower(s), \"err\")"]
    }

    /// True when every batch in `bytes` checked out and decoded.
    static func decodeBatches(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var it = RecordBatchIterator(raw)
            var ok = true
            while let batch = it.next() {
                do { try batch.forEachRecord { r in _ = r.offset } } catch { ok = false }
            }
            return ok && it.failure == nil
        }
    }

    // MARK: Mutation

    static func mutate(_ seed: [UInt8], _ rng: inout SplitMix, other: [UInt8]) -> [UInt8] {
        var b = seed
        for _ in 0..<(1 + rng.below(4)) {
            let at = b.isEmpty ? 0 : rng.below(b.count)
            switch rng.below(9) {
            case 0 where !b.isEmpty: b[at] ^= UInt8(1 << rng.below(8))
            case 1 where !b.isEmpty: b[at] = [0, 0x7f, 0x80, 0xff, 1][rng.below(5)]
            case 2: b.insert(contentsOf: (0..<(1 + rng.below(8))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
            case 3 where !b.isEmpty: b.removeSubrange(at..<min(b.count, at + 1 + rng.below(16)))
            case 4 where !b.isEmpty: b = Array(b.prefix(at))
            case 5 where !b.isEmpty:
                let end = min(b.count, at + 1 + rng.below(8))
                b.insert(contentsOf: Array(repeating: b[at..<end], count: 1 + rng.below(64)).joined(), at: at)
            case 6 where !b.isEmpty && !other.isEmpty:
                b = Array(b.prefix(at)) + Array(other.suffix(from: rng.below(other.count)))
            case 7 where b.count >= 4:  // a length or count field set large
                let v = [UInt32.max, 0x7fff_ffff, 0x8000_0000, 0x0100_0000][rng.below(4)]
                let p = rng.below(b.count - 3)
                for k in 0..<4 { b[p + k] = UInt8((v >> UInt32(24 - 8 * k)) & 0xff) }
            default: if !b.isEmpty { b[at] = UInt8(truncatingIfNeeded: rng.next()) }
            }
        }
        return b
    }

    static func mutateText(_ seed: String, _ rng: inout SplitMix) -> String {
        var s = Array(seed.unicodeScalars)
        let pieces = ["&a ", "*a", "<<: *a", "[", "]", "{", "}", ": ", "\n  ", "- ", "\"", "'", "${X}", "{{ ", " }}", "(", ")", " and ",
                      " + ", ".", "[0]", "!", "#", "\u{0}", "é", "null", "-1", "99999999999999999999", "\t", "|\n", "? "]
        for _ in 0..<(1 + rng.below(4)) {
            let at = s.isEmpty ? 0 : rng.below(s.count + 1)
            switch rng.below(6) {
            case 0, 1: s.insert(contentsOf: pieces[rng.below(pieces.count)].unicodeScalars, at: at)
            case 2 where !s.isEmpty: s.removeSubrange(min(at, s.count - 1)..<min(s.count, at + 1 + rng.below(12)))
            case 3 where !s.isEmpty:
                let start = min(at, s.count - 1)
                let end = min(s.count, start + 1 + rng.below(10))
                s.insert(contentsOf: Array(repeating: s[start..<end], count: 1 + rng.below(200)).joined(), at: start)
            case 4 where !s.isEmpty: s = Array(s.prefix(at))
            default: s.insert(UnicodeScalar(UInt8(32 + rng.below(95))), at: at)
            }
        }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: s)
        return String(out)
    }

    static func peakRSSMiB() -> Int {
        var u = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &u)
        return Int(u.ru_maxrss / 1024)  // kilobytes on Linux
    }
}

/// A small, fast, seedable generator (SplitMix64), so a run can be repeated exactly.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
}
