// batch (groups, periods, held offsets) and the file source and sink formats (csv, jsonl,
// rotation), on a real embedded broker and real files.
import Foundation
import SluiceBroker
import SluiceLog
import SluiceRuntime
import Testing

private func load(_ text: String, _ file: String, _ env: [String: String] = [:]) throws -> Pipeline {
    try PipelineLoader(environment: env).load(text: text, file: file)
}

private func committed(_ broker: EmbeddedBroker, _ group: String) async -> Int64 {
    await broker.groups.committedOffsets(groupId: group).values.reduce(0) { $0 + $1.offset }
}

@Suite(.serialized) struct BatchTransformTests {
    @Test func groupsOfCountBecomeJSONArraysAndTheRestIsReleasedAtTheEnd() async throws {
        try await withBroker { broker, _ in
            let text = """
            name: grouped
            topics:
              out: {}
            sources:
              g: { type: generator, count: 10, template: '{"n": {{i}}}', batch_records: 3 }
            transforms:
              b: { type: batch, inputs: [g], count: 4, as: array }
            sinks:
              t: { type: topic, inputs: [b], topic: out }
            """
            try await PipelineRunner(pipeline: try load(text, "grouped.yaml"), broker: broker).run()
            let groups = try topicValues(broker, "out").map { try JSONSerialization.jsonObject(with: Data($0.value.utf8)) as! [[String: Int]] }
            #expect(groups.map { $0.map { $0["n"]! } } == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
        }
    }

    @Test func byteLimitsCloseAGroupAndRecordsModePassesTheGroupOnUnchanged() async throws {
        try await withBroker { broker, _ in
            let text = """
            name: bytes
            topics:
              out: {}
            sources:
              g: { type: generator, count: 9, template: "abcdefghij", batch_records: 2 }
            transforms:
              b: { type: batch, inputs: [g], bytes: 30 }
            sinks:
              t: { type: topic, inputs: [b], topic: out }
            """
            let runner = PipelineRunner(pipeline: try load(text, "bytes.yaml"), broker: broker)
            try await runner.run()
            #expect(try topicValues(broker, "out").map(\.value) == Array(repeating: "abcdefghij", count: 9))
            #expect(runner.counts["t"] == 9)
        }
    }

    @Test func heldRecordsKeepTheCommitBelowThemAndAPeriodReleasesThem() async throws {
        try await withBroker { broker, _ in
            let input = try broker.createTopic("in", partitions: 2)
            let producer = try await Producer(broker: broker)
            _ = try await producer.send(batch: (0..<6).map { ProducerRecord(topic: input, partition: Int32($0 % 2), value: Array("{\"n\":\($0)}".utf8)) })
            func pipeline(_ batch: String) throws -> Pipeline {
                try load("""
                name: held
                topics:
                  in: { partitions: 2 }
                  out: {}
                sources:
                  s: { type: topic, topic: in, group: held }
                transforms:
                  b: { type: batch, inputs: [s], \(batch), as: array }
                sinks:
                  t: { type: topic, inputs: [b], topic: out }
                """, "held.yaml")
            }
            // A group that never fills: nothing reaches the sink and nothing is committed.
            let waiting = PipelineRunner(pipeline: try pipeline("count: 100"), broker: broker)
            let task = Task { try await waiting.run() }
            let read = await eventually { waiting.counts["s"] == 6 }
            #expect(read)
            try await Task.sleep(for: .milliseconds(600))
            task.cancel()
            try? await task.value
            #expect(try topicValues(broker, "out").isEmpty)
            #expect(await committed(broker, "held") == 0, "offsets of held records must not be committed")

            // The same records again, now released by a period: one array per partition.
            let timed = PipelineRunner(pipeline: try pipeline("count: 100, period: 300ms"), broker: broker)
            let task2 = Task { try await timed.run() }
            let released = await eventually { (try? topicValues(broker, "out").count) == 2 }
            #expect(released)
            let committedAll = await eventually { await committed(broker, "held") == 6 }
            #expect(committedAll, "offsets are committed once the group went through")
            task2.cancel()
            try? await task2.value
            let arrays = try topicValues(broker, "out").map { try JSONSerialization.jsonObject(with: Data($0.value.utf8)) as! [[String: Int]] }
            #expect(Set(arrays.map { $0.map { $0["n"]! } }) == [[0, 2, 4], [1, 3, 5]])
        }
    }

    @Test func aDrainedRunReleasesWhatIsHeldAndCommitsIt() async throws {
        try await withBroker { broker, _ in
            let input = try broker.createTopic("in", partitions: 1)
            let producer = try await Producer(broker: broker)
            _ = try await producer.send(batch: (0..<5).map { ProducerRecord(topic: input, value: Array("r\($0)".utf8)) })
            let text = """
            name: drained
            sources:
              s: { type: topic, topic: in }
            transforms:
              b: { type: batch, inputs: [s], count: 1000 }
            sinks:
              t: { type: topic, inputs: [b], topic: out }
            topics:
              in: { partitions: 1 }
              out: {}
            """
            try await PipelineRunner(pipeline: try load(text, "drained.yaml"), broker: broker, options: RunOptions(drain: true)).run()
            #expect(try topicValues(broker, "out").map(\.value) == ["r0", "r1", "r2", "r3", "r4"])
            #expect(await committed(broker, "drained") == 5)
        }
    }

    @Test func aBatchWithoutALimitIsRefused() async throws {
        try await withBroker { broker, _ in
            let text = """
            name: nolimit
            sources:
              g: { type: generator, count: 1, template: "x" }
            transforms:
              b: { type: batch, inputs: [g] }
            sinks:
              d: { type: drop, inputs: [b] }
            """
            await #expect { try await PipelineRunner(pipeline: try load(text, "nolimit.yaml"), broker: broker).run() } throws: { error in
                "\(error)".contains("batch needs a count, bytes or a period")
            }
        }
    }
}

@Suite(.serialized) struct FileFormatTests {
    @Test func csvInCsvOutWithRotation() async throws {
        try await withBroker { broker, dir in
            let input = dir + "/people.csv"
            let rows = ["name,age,city,note"] + (0..<20).map { "p\($0),\(20 + $0),\($0 % 2 == 0 ? "Hanoi" : "\"Da Nang, VN\""),\($0 == 3 ? "\"says \"\"hi\"\"\"" : "")" }
            try (rows.joined(separator: "\r\n") + "\r\n").write(toFile: input, atomically: true, encoding: .utf8)
            let out = dir + "/out/adults.csv"
            let text = """
            name: people
            sources:
              f: { type: file, path: ${IN}, format: csv, batch_records: 4 }
            transforms:
              old: { type: filter, inputs: [f], where: "age >= 25" }
            sinks:
              w: { type: file, inputs: [old], path: ${OUT}, format: csv, columns: [name, city, note, missing], rotate_bytes: 100 }
            """
            let runner = PipelineRunner(pipeline: try load(text, "people.yaml", ["IN": input, "OUT": out]), broker: broker)
            try await runner.run()
            let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/out").sorted { a, b in
                func n(_ s: String) -> Int { s == "adults.csv" ? Int.max : Int(s.dropFirst("adults-".count).dropLast(4))! }
                return n(a) < n(b)
            }
            #expect(files.count > 1, "100-byte files rotate: \(files)")
            #expect(files.last == "adults.csv" && files.dropLast().allSatisfy { $0.hasPrefix("adults-") })
            var dataRows: [String] = []
            for f in files {
                let lines = try String(contentsOfFile: dir + "/out/" + f, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
                #expect(lines.first == "name,city,note,missing", "every file starts with the header")
                dataRows += lines.dropFirst().map(String.init)
            }
            #expect(dataRows.count == 15)
            #expect(dataRows.first == "p5,\"Da Nang, VN\",,")
            #expect(dataRows[1] == "p6,Hanoi,,")
            #expect(dataRows.last == "p19,\"Da Nang, VN\",,")
            #expect(runner.fractionDone == 1.0)
        }
    }

    @Test func csvQuotesAndTypedCells() async throws {
        try await withBroker { broker, dir in
            let input = dir + "/q.csv"
            try "id,name,ok,score\n1,\"Le, An\",true,2.5\n2,\"He said \"\"yo\"\"\",false,\n".write(toFile: input, atomically: true, encoding: .utf8)
            let text = """
            name: q
            topics:
              out: {}
            sources:
              f: { type: file, path: \(input), format: csv }
            sinks:
              t: { type: topic, inputs: [f], topic: out }
            """
            try await PipelineRunner(pipeline: try load(text, "q.yaml"), broker: broker).run()
            let objects = try topicValues(broker, "out").map { try JSONSerialization.jsonObject(with: Data($0.value.utf8)) as! [String: Any] }
            #expect(objects.count == 2)
            #expect(objects[0]["id"] as? Int == 1 && objects[0]["name"] as? String == "Le, An" && objects[0]["ok"] as? Bool == true && objects[0]["score"] as? Double == 2.5)
            #expect(objects[1]["name"] as? String == "He said \"yo\"" && objects[1]["ok"] as? Bool == false && objects[1]["score"] is NSNull)
        }
    }

    @Test func aBrokenCsvRowNamesFileAndLine() async throws {
        try await withBroker { broker, dir in
            let input = dir + "/bad.csv"
            try "a,b\n1,2\n3,\"open\n".write(toFile: input, atomically: true, encoding: .utf8)
            let text = """
            name: bad
            sources:
              f: { type: file, path: \(input), format: csv }
            sinks:
              d: { type: drop, inputs: [f] }
            """
            await #expect { try await PipelineRunner(pipeline: try load(text, "bad.yaml"), broker: broker).run() } throws: { error in
                "\(error)".contains("\(input):3: a quoted field is not closed")
            }
        }
    }

    @Test func jsonlSinkKeepsJSONAndQuotesText() async throws {
        try await withBroker { broker, dir in
            let input = dir + "/mixed.txt", out = dir + "/o.jsonl"
            try "{\"i\": 0}\nplain \"1\"\n[2]\n\n".write(toFile: input, atomically: true, encoding: .utf8)
            let text = """
            name: jl
            sources:
              f: { type: file, path: \(input) }
            sinks:
              w: { type: file, inputs: [f], path: \(out), format: jsonl }
            """
            try await PipelineRunner(pipeline: try load(text, "jl.yaml"), broker: broker).run()
            let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(lines == [#"{"i": 0}"#, #""plain \"1\"""#, "[2]", #""""#, ""])
        }
    }

    /// A process killed mid-write leaves a partial last line; the next run cuts it off and
    /// appends whole lines after what was complete (never over it).
    @Test func aPartialLastLineLeftByAKilledWriterIsCutOff() async throws {
        try await withBroker { broker, dir in
            let input = dir + "/in.txt", out = dir + "/o.jsonl"
            try "{\"i\": 1}\n{\"i\": 2}\n".write(toFile: input, atomically: true, encoding: .utf8)
            let text = """
            name: torn
            sources:
              f: { type: file, path: \(input) }
            sinks:
              w: { type: file, inputs: [f], path: \(out), format: jsonl }
            """
            try "{\"old\": 0}\n{\"old\": 1, \"cut".write(toFile: out, atomically: true, encoding: .utf8)
            try await PipelineRunner(pipeline: try load(text, "torn.yaml"), broker: broker).run()
            #expect(try String(contentsOfFile: out, encoding: .utf8) == "{\"old\": 0}\n{\"i\": 1}\n{\"i\": 2}\n")
            // A file that ends with a whole line is appended to as it is.
            try "{\"i\": 3}\n".write(toFile: input, atomically: true, encoding: .utf8)
            let again = text.replacingOccurrences(of: "name: torn", with: "name: torn2")
            try await PipelineRunner(pipeline: try load(again, "torn2.yaml"), broker: broker).run()
            #expect(try String(contentsOfFile: out, encoding: .utf8) == "{\"old\": 0}\n{\"i\": 1}\n{\"i\": 2}\n{\"i\": 3}\n")
        }
    }

    @Test func rotationByAgeStartsANewFile() async throws {
        try await withBroker { broker, dir in
            let out = dir + "/aged.log"
            let text = """
            name: aged
            sources:
              g: { type: generator, count: 6, rate: 10, template: "line {{i}}", batch_records: 1 }
            sinks:
              w: { type: file, inputs: [g], path: \(out), rotate_interval: 200ms }
            """
            try await PipelineRunner(pipeline: try load(text, "aged.yaml"), broker: broker).run()
            let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("aged") }
            #expect(files.count >= 2, "\(files)")
            var all: [String] = []
            for f in files.sorted(by: { ($0 == "aged.log" ? 1_000 : Int($0.dropFirst(5).dropLast(4)) ?? 0) < ($1 == "aged.log" ? 1_000 : Int($1.dropFirst(5).dropLast(4)) ?? 0) }) {
                all += try String(contentsOfFile: dir + "/" + f, encoding: .utf8).split(separator: "\n").map(String.init)
            }
            #expect(all == (0..<6).map { "line \($0)" })
        }
    }
}
