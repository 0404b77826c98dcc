// guarantee: exactly-once in one process: transactional lanes, the sqlite sink (insert,
// upsert, offsets stored with the rows and taking precedence over the group's), rebalances.
import Foundation
import GRDB
import SluiceBroker
import SluiceLog
import SluiceRuntime
import Testing

private func load(_ text: String, _ file: String) throws -> Pipeline {
    try PipelineLoader(environment: [:]).load(text: text, file: file)
}

private func input(_ broker: EmbeddedBroker, partitions: Int32, count: Int, keys: Int = 20, perSend: Int = .max) async throws {
    let topic = try broker.createTopic("input", partitions: partitions)
    let producer = try await Producer(broker: broker)
    for start in stride(from: 0, to: count, by: min(perSend, count)) {
        _ = try await producer.send(batch: (start..<min(count, start + perSend)).map { i in
            ProducerRecord(topic: topic, key: Array("k\(i % keys)".utf8), value: Array("{\"id\":\(i),\"key\":\"k\(i % keys)\",\"seq\":\(i / keys)}".utf8))
        })
    }
}

@Suite(.serialized) struct ExactlyOnceTests {
    @Test func topicAndSqliteOutputsHoldEachInputOnceAndOffsetsAreStoredWithTheRows() async throws {
        try await withBroker { broker, dir in
            try await input(broker, partitions: 3, count: 3000)
            let db = dir + "/out.db"
            let text = """
            name: eos
            guarantee: exactly-once
            topics:
              input: { partitions: 3 }
              output: { partitions: 3 }
            sources:
              in: { type: topic, topic: input, fetch_bytes: 8KiB }
            transforms:
              p: { type: json, inputs: [in] }
              m: { type: map, inputs: [p], set: { twice: "seq * 2" } }
            sinks:
              t: { type: topic, inputs: [m], topic: output, key: key }
              s: { type: sqlite, inputs: [m], path: \(db), table: rows, columns: { id: id, key: key, twice: twice } }
            """
            try await PipelineRunner(pipeline: try load(text, "eos.yaml"), broker: broker, options: RunOptions(drain: true)).run()
            let out = try topicValues(broker, "output")
            #expect(out.count == 3000 && Set(out.map(\.value)).count == 3000)
            let queue = try DatabaseQueue(path: db)
            let (rows, distinct, offsets) = try await queue.read { db in
                (try Int.fetchOne(db, sql: "SELECT count(*) FROM rows")!, try Int.fetchOne(db, sql: "SELECT count(DISTINCT id) FROM rows")!,
                 try Row.fetchAll(db, sql: "SELECT topic, partition, next_offset FROM sluice_offsets WHERE pipeline = 'eos' ORDER BY partition"))
            }
            #expect(rows == 3000 && distinct == 3000)
            // The stored offsets are the partitions' ends: the sum is every record.
            #expect(offsets.count == 3 && offsets.map { $0["next_offset"] as Int64 }.reduce(0, +) == 3000)
            // The group's offsets were committed by the lanes' transactions.
            let lag = try await broker.lag(groupId: "eos")
            #expect(lag.count == 3 && lag.allSatisfy { $0.lag == 0 })
            // Each lane committed through its own transactional id.
            let ids = await broker.transactions.transactionalIds()
            #expect(Set(ids) == Set((0..<3).map { "eos/eos/input/\($0)" }))
        }
    }

    @Test func theOffsetStoredInSqliteTakesPrecedenceOverTheGroups() async throws {
        try await withBroker { broker, dir in
            try await input(broker, partitions: 2, count: 400)
            let db = dir + "/only.db"
            let text = """
            name: onlydb
            guarantee: exactly-once
            topics:
              input: { partitions: 2 }
            sources:
              in: { type: topic, topic: input }
            transforms:
              p: { type: json, inputs: [in] }
            sinks:
              s: { type: sqlite, inputs: [p], path: \(db), table: rows, columns: { id: id, seq: seq } }
            """
            let pipeline = try load(text, "onlydb.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            // Rewind the group: the database still knows how far each partition got.
            let tps = try (0..<2).map { TopicPartition(try TopicName("input"), Int32($0)) }
            try await broker.groups.resetOffsets(groupId: "onlydb", to: Dictionary(uniqueKeysWithValues: tps.map { ($0, CommittedOffset(offset: 0)) }))
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            let queue = try DatabaseQueue(path: db)
            let count = try await queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM rows")! }
            #expect(count == 400, "rows were written again after the group was rewound")
        }
    }

    @Test func upsertKeepsOneRowPerKey() async throws {
        try await withBroker { broker, dir in
            let db = dir + "/up.db"
            let text = """
            name: up
            sources:
              g: { type: generator, count: 50, template: '{"user": "u{{i % 5}}", "n": {{i}}}' }
            transforms:
              p: { type: json, inputs: [g] }
            sinks:
              s: { type: sqlite, inputs: [p], path: \(db), table: latest, columns: { user: user, n: n, raw: "to_string(n) + '!'" }, key: [user] }
            """
            try await PipelineRunner(pipeline: try load(text, "up.yaml"), broker: broker).run()
            let queue = try DatabaseQueue(path: db)
            let rows = try await queue.read { db in try Row.fetchAll(db, sql: "SELECT user, n, raw FROM latest ORDER BY user") }
            #expect(rows.map { $0["user"] as String } == ["u0", "u1", "u2", "u3", "u4"])
            #expect(rows.map { $0["n"] as Int } == [45, 46, 47, 48, 49])
            #expect(rows.map { $0["raw"] as String } == ["45!", "46!", "47!", "48!", "49!"])
        }
    }

    @Test func aLaneThatMovesKeepsItsOutputsExactlyOnce() async throws {
        try await withBroker { broker, _ in
            try await input(broker, partitions: 6, count: 12000, keys: 50)
            let text = """
            name: moving
            guarantee: exactly-once
            topics:
              input: { partitions: 6 }
              output: { partitions: 6 }
            sources:
              in: { type: topic, topic: input, fetch_bytes: 4KiB, batch_records: 50 }
            transforms:
              p: { type: json, inputs: [in] }
              slow: { type: throttle, inputs: [p], rate: 10000 }
            sinks:
              t: { type: topic, inputs: [slow], topic: output, key: key }
            """
            let pipeline = try load(text, "moving.yaml")
            let a = PipelineRunner(pipeline: pipeline, broker: broker)
            let b = PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true))
            let taskA = Task { try await a.run() }
            let shared = await eventually(timeout: .seconds(20)) { (a.counts["in"] ?? 0) > 0 }
            #expect(shared)
            let taskB = Task { try await b.run() }
            // Both own lanes, then A stops while lanes are busy; B drains the rest.
            _ = await eventually(timeout: .seconds(20)) {
                guard let d = await broker.groups.describe(groupId: "moving"), d.state == .stable else { return false }
                return d.members.count == 2
            }
            #expect((a.counts["in"] ?? 0) < 12000, "A stops while records are left")
            taskA.cancel()
            try? await taskA.value
            try await taskB.value
            #expect((b.counts["in"] ?? 0) > 0, "B took lanes over")
            let out = try topicValues(broker, "output")
            #expect(out.count == 12000, "read_committed sees each input once (got \(out.count))")
            #expect(Set(out.map(\.value)).count == 12000)
            var last: [String: Int] = [:]
            var ordered = true
            for r in out {
                let o = try JSONSerialization.jsonObject(with: Data(r.value.utf8)) as! [String: Any]
                let k = o["key"] as! String, s = o["seq"] as! Int
                if let l = last[k], s <= l { ordered = false }
                last[k] = s
            }
            #expect(ordered, "per-key order was kept")
        }
    }

    @Test func aFileSinkCutsWhatCameAfterItsLastCommitAndResumesFromItsManifest() async throws {
        try await withBroker { broker, dir in
            try await input(broker, partitions: 2, count: 200, perSend: 10)
            let out = dir + "/out/copy.jsonl"
            let text = """
            name: filed
            guarantee: exactly-once
            topics:
              input: { partitions: 2 }
            sources:
              in: { type: topic, topic: input, fetch_bytes: 2KiB }
            sinks:
              f: { type: file, inputs: [in], path: \(out), format: jsonl, rotate_bytes: 3KiB }
            """
            let pipeline = try load(text, "filed.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + ".manifest"))) as! [String: Any]
            #expect((manifest["offsets"] as! [String: Int]).values.reduce(0, +) == 200)
            // A killed run's uncommitted tail, and a rewound group: neither may duplicate output.
            let h = try #require(FileHandle(forWritingAtPath: out))
            h.seekToEndOfFile()
            h.write(Data("{\"id\": -1, \"torn\": tr".utf8))
            try h.close()
            let tps = try (0..<2).map { TopicPartition(try TopicName("input"), Int32($0)) }
            try await broker.groups.resetOffsets(groupId: "filed", to: Dictionary(uniqueKeysWithValues: tps.map { ($0, CommittedOffset(offset: 0)) }))
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/out").filter { $0.hasPrefix("copy") && $0.hasSuffix(".jsonl") }
            #expect(files.count > 1, "3 KiB files rotate: \(files)")
            var ids: [Int] = []
            for f in files {
                for line in try String(contentsOfFile: dir + "/out/" + f, encoding: .utf8).split(separator: "\n") {
                    let o = try #require(try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "a torn line survived: \(line)")
                    ids.append(o["id"] as! Int)
                }
            }
            #expect(ids.sorted() == Array(0..<200))
        }
    }
}

@Suite(.serialized) struct FileManifestTests {
    @Test func aFileShorterThanItsManifestOrABrokenManifestStopsWithAClearMessage() async throws {
        try await withBroker { broker, dir in
            let out = dir + "/m.jsonl"
            try "{}\n".write(toFile: out, atomically: true, encoding: .utf8)
            try #"{"offsets":{"input/0":5},"size":100}"#.write(toFile: out + ".manifest", atomically: true, encoding: .utf8)
            let text = """
            name: m
            guarantee: exactly-once
            topics:
              input: { partitions: 1 }
            sources:
              in: { type: topic, topic: input }
            sinks:
              f: { type: file, inputs: [in], path: \(out), format: jsonl }
            """
            let pipeline = try PipelineLoader(environment: [:]).load(text: text, file: "m.yaml")
            await #expect { try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run() } throws: { error in
                "\(error)".contains("\(out) has 3 bytes but its manifest committed 100; committed output is missing, refusing to continue")
            }
            try "not json".write(toFile: out + ".manifest", atomically: true, encoding: .utf8)
            await #expect { try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run() } throws: { error in
                "\(error)".contains("\(out).manifest is not a valid manifest")
            }
        }
    }
}

@Suite(.serialized) struct ExactlyOnceStateTests {
    @Test func dedupeStateSurvivesARestartThroughItsChangelog() async throws {
        try await withBroker { broker, _ in
            let input = try broker.createTopic("input", partitions: 2)
            let producer = try await Producer(broker: broker)
            func send(_ ids: [Int]) async throws {
                _ = try await producer.send(batch: ids.map { ProducerRecord(topic: input, key: Array("k\($0 % 4)".utf8), value: Array("{\"id\":\($0)}".utf8)) })
            }
            let text = """
            name: uniq
            guarantee: exactly-once
            topics:
              input: { partitions: 2 }
              output: {}
            sources:
              in: { type: topic, topic: input }
            transforms:
              p: { type: json, inputs: [in] }
              d: { type: dedupe, inputs: [p], key: id, window: 1h }
            sinks:
              t: { type: topic, inputs: [d], topic: output }
            """
            let pipeline = try PipelineLoader(environment: [:]).load(text: text, file: "uniq.yaml")
            try await send(Array(0..<20) + [3, 7])
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            #expect(try topicValues(broker, "output").count == 20)
            // A new runner (a restarted worker) remembers the keys through the changelog.
            try await send([5, 6, 20, 21, 5])
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            let ids = try topicValues(broker, "output").map { try JSONSerialization.jsonObject(with: Data($0.value.utf8)) as! [String: Int] }.map { $0["id"]! }
            #expect(ids.sorted() == Array(0..<22))
            #expect(try topicValues(broker, "uniq.d.changelog").count == 22)
        }
    }
}
