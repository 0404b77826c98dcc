// sluice bench kafka: real Kafka clients against `sluice serve`'s listener (in this process),
// and Redis 7 Streams taking the same records in the same run.
//   produce: kcat -P (librdkafka) from a file of N lines, acks=1 and acks=all
//   consume: kcat -C from the beginning until it has read all N records (-c N); also timed with
//            -e (exit at the end of the log), which adds the client's end-of-log long poll
//            (fetch.wait.max.ms, 500 ms by default, as against any Kafka broker)
//   confluent: confluent-kafka (the newest from pip, in scripts/test's .build/interop-newest, or
//            --python) producing N records round-robin into 6 partitions, then a consumer
//            assigned to all 6 reading them back; each with the broker's CPU seconds per
//            million records (this process's CPU while the client ran: it serves the listener)
//   redis:   redis-cli --pipe of N pipelined XADDs, then XREADGROUP COUNT 10000 until read
import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import SluiceKafkaWire
import SluiceLog
import Synchronization

struct KafkaBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "kcat producing into and consuming from the Kafka listener, against Redis Streams (XADD/XREADGROUP) in the same run."
    )

    @Option(help: "Scratch directory (deleted afterwards).") var dir: String?
    @Option(help: "Records to produce.") var records: Int = 1_000_000
    @Option(help: "Bytes per record value.") var size: Int = 100
    @Option(help: "Partitions of the benchmark topics.") var partitions: Int32 = 2
    @Option(help: "Python with confluent-kafka for the confluent-kafka runs (default: .build/interop-newest/bin/python3, else python3).")
    var python: String?

    func run() async throws {
        LoggingBootstrap.once(level: .warning)
        let base = dir ?? ((ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/sluice-bench-kafka-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        #if DEBUG
        emit("note: this is a debug build; build with -c release for real figures")
        #endif
        guard Self.which("kcat") else { throw CLIError.user("kcat is not installed (apt-get install kcat)") }
        // The records: N lines of `size` bytes.
        let file = base + "/records.txt"
        var text: [UInt8] = []
        text.reserveCapacity(records * (size + 1))
        for i in 0..<records {
            var line = Array("{\"id\":\(i),\"note\":\"".utf8)
            while line.count < size - 2 { line.append(120) }
            line += Array("\"}".utf8)
            text += line.prefix(size)
            text.append(10)
        }
        FileManager.default.createFile(atPath: file, contents: Data(text))
        emit("sluice bench kafka: \(records) records of \(size) bytes, topics of \(partitions) partitions; clients: \(Self.output("kcat", ["-V"]).split(separator: "\n").first { $0.hasPrefix("Version") } ?? "kcat")")

        let broker = try await EmbeddedBroker.open(path: base + "/data", logger: Logger(label: "sluice.bench"))
        let port = Mutex<Int>(0)
        let handler = KafkaRequestHandler(broker: broker, config: KafkaListenerConfig(advertisedHost: "127.0.0.1", advertisedPort: 0), logger: Logger(label: "sluice.bench"))
        let listenerTask = Task {
            try await KafkaListener(handler: handler, host: "127.0.0.1", port: 0, logger: Logger(label: "sluice.bench")).run { p in port.withLock { $0 = p } }
        }
        while port.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(10)) }
        // Metadata must advertise the real port: a second handler config is not needed because
        // the bench listener is re-created with the port known.
        listenerTask.cancel()
        _ = await listenerTask.result
        let bound = port.withLock { $0 }
        let realHandler = KafkaRequestHandler(broker: broker, config: KafkaListenerConfig(advertisedHost: "127.0.0.1", advertisedPort: Int32(bound)), logger: Logger(label: "sluice.bench"))
        let server = Task { try await KafkaListener(handler: realHandler, host: "127.0.0.1", port: bound, logger: Logger(label: "sluice.bench")).run() }
        try await Task.sleep(for: .milliseconds(200))
        let b = "127.0.0.1:\(bound)"
        var produceRates: [String: Double] = [:]
        for acks in ["1", "all"] {
            let topic = "bench-acks-\(acks)"
            _ = try broker.createTopic(topic, partitions: partitions)
            let cpu0 = Self.processCPUSeconds()
            let seconds = try Self.time("kcat", ["-b", b, "-t", topic, "-P", "-l", file, "-X", "acks=\(acks == "all" ? "-1" : acks)", "-X", "linger.ms=5", "-X", "batch.num.messages=10000"])
            let cpu = Self.processCPUSeconds() - cpu0
            var stored: Int64 = 0
            for p in 0..<partitions { stored += try broker.partition(TopicPartition(try TopicName(topic), p)).highWatermark }
            guard stored == records else { throw CLIError.runtime("kcat -P acks=\(acks) stored \(stored) of \(records) records") }
            produceRates[acks] = Double(records) / seconds
            emit(String(format: "sluice  kcat -P acks=%@ → sluice serve: %.0f records/s (%.2f s); broker CPU %.2f s per million records",
                        acks, Double(records) / seconds, seconds, cpu / Double(records) * 1e6))
        }
        let fetchSettings = ["-X", "fetch.max.bytes=52428800", "-X", "max.partition.fetch.bytes=4194304"]
        let consumeCPU0 = Self.processCPUSeconds()
        let consumeSeconds = try Self.time("kcat", ["-b", b, "-t", "bench-acks-1", "-C", "-c", "\(records)", "-q", "-o", "beginning"] + fetchSettings)
        let consumeCPU = Self.processCPUSeconds() - consumeCPU0
        let consumeRate = Double(records) / consumeSeconds
        emit(String(format: "sluice  kcat -C -c %d sluice serve → /dev/null: %.0f records/s (%.2f s); broker CPU %.2f s per million records",
                    records, consumeRate, consumeSeconds, consumeCPU / Double(records) * 1e6))
        let toEndSeconds = try Self.time("kcat", ["-b", b, "-t", "bench-acks-1", "-C", "-e", "-q", "-o", "beginning"] + fetchSettings)
        emit(String(format: "sluice  kcat -C -e (to the end, incl. the 500 ms end-of-log long poll): %.0f records/s (%.2f s)", Double(records) / toEndSeconds, toEndSeconds))
        try await confluentRuns(broker: broker, bootstrap: b)
        server.cancel()
        _ = await server.result
        await broker.close()

        // Redis Streams, same records, same machine, same run.
        guard Self.which("redis-server"), Self.which("redis-cli") else {
            emit("redis skipped: redis-server / redis-cli not installed (apt-get install redis-server)")
            return
        }
        let redisPort = Int.random(in: 20000..<40000)
        let redis = Process()
        redis.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        redis.arguments = ["redis-server", "--port", "\(redisPort)", "--bind", "127.0.0.1", "--dir", base, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
        redis.standardOutput = FileHandle.nullDevice
        try redis.run()
        defer { kill(redis.processIdentifier, SIGKILL); redis.waitUntilExit() }
        var up = false
        for _ in 0..<100 where !up {
            up = Self.output("redis-cli", ["-p", "\(redisPort)", "PING"]).hasPrefix("PONG")
            if !up { try await Task.sleep(for: .milliseconds(50)) }
        }
        guard up else { throw CLIError.runtime("redis-server did not start on port \(redisPort)") }
        emit("redis   \(Self.output("redis-server", ["--version"]).trimmingCharacters(in: .whitespacesAndNewlines)), appendonly yes, appendfsync everysec")
        // N XADDs as one pipelined stream of RESP commands.
        var resp: [UInt8] = []
        resp.reserveCapacity(records * (size + 64))
        var start = 0
        for i in 0..<records {
            let end = text[start...].firstIndex(of: 10)!
            let value = text[start..<end]
            start = end + 1
            resp += Array("*5\r\n$4\r\nXADD\r\n$6\r\nbench1\r\n$1\r\n*\r\n$1\r\nv\r\n$\(value.count)\r\n".utf8)
            resp += value
            resp += [13, 10]
            _ = i
        }
        FileManager.default.createFile(atPath: base + "/xadd.resp", contents: Data(resp))
        let xaddSeconds = try Self.time("sh", ["-c", "redis-cli -p \(redisPort) --pipe < \(base)/xadd.resp > /dev/null"])
        let xlen = Self.output("redis-cli", ["-p", "\(redisPort)", "XLEN", "bench1"]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard xlen == "\(records)" else { throw CLIError.runtime("redis XLEN is \(xlen), not \(records)") }
        let xaddRate = Double(records) / xaddSeconds
        emit(String(format: "redis   pipelined XADD (redis-cli --pipe): %.0f records/s (%.2f s)", xaddRate, xaddSeconds))
        _ = Self.output("redis-cli", ["-p", "\(redisPort)", "XGROUP", "CREATE", "bench1", "g", "0"])
        let reads = (records + 9999) / 10000
        var readResp: [UInt8] = []
        for _ in 0..<reads {
            readResp += Array("*9\r\n$10\r\nXREADGROUP\r\n$5\r\nGROUP\r\n$1\r\ng\r\n$1\r\nc\r\n$5\r\nCOUNT\r\n$5\r\n10000\r\n$7\r\nSTREAMS\r\n$6\r\nbench1\r\n$1\r\n>\r\n".utf8)
        }
        FileManager.default.createFile(atPath: base + "/xread.resp", contents: Data(readResp))
        let readSeconds = try Self.time("sh", ["-c", "redis-cli -p \(redisPort) --pipe < \(base)/xread.resp > /dev/null"])
        let pending = Self.output("redis-cli", ["-p", "\(redisPort)", "XPENDING", "bench1", "g"]).split(separator: "\n").first.map(String.init) ?? ""
        guard pending == "\(records)" else { throw CLIError.runtime("redis XPENDING counts \(pending) delivered records, not \(records)") }
        let readRate = Double(records) / readSeconds
        emit(String(format: "redis   pipelined XREADGROUP COUNT 10000 (redis-cli --pipe): %.0f records/s (%.2f s)", readRate, readSeconds))
        emit(String(format: "ratio   produce sluice (acks=1) / redis XADD: %.2f×; produce sluice (acks=all) / redis XADD: %.2f×; consume sluice / redis XREADGROUP: %.2f×",
                    produceRates["1"]! / xaddRate, produceRates["all"]! / xaddRate, consumeRate / readRate))
    }

    /// confluent-kafka producing into and consuming (by assignment) from 6 partitions.
    private func confluentRuns(broker: EmbeddedBroker, bootstrap: String) async throws {
        let script = Self.repository + "/scripts/bench/confluent_bench.py"
        let newest = FileManager.default.currentDirectoryPath + "/.build/interop-newest/bin/python3"
        let py = python ?? (FileManager.default.isExecutableFile(atPath: newest) ? newest : "python3")
        guard FileManager.default.fileExists(atPath: script), Self.output(py, ["-c", "import confluent_kafka; print('ok')"]).hasPrefix("ok") else {
            emit("confluent-kafka skipped: \(py) cannot import confluent_kafka, or \(script) is missing (run from the repository after scripts/test)")
            return
        }
        let topic = "bench-confluent"
        _ = try broker.createTopic(topic, partitions: 6)
        // The consumer with librdkafka's defaults, then with fetch.queue.backoff.ms lowered:
        // librdkafka pauses a partition's fetches for that long (1000 ms by default) whenever
        // its local queue holds queued.min.messages (100,000), which any broker that answers
        // faster than the application drains will cause.
        let runs: [(mode: String, extra: [String], what: String)] = [
            ("produce", [], "produce (acks=1, 6 partitions) → sluice serve"),
            ("consume", [], "consume by assignment (6 partitions, client defaults) sluice serve →"),
            ("consume", ["fetch.queue.backoff.ms=10"], "consume by assignment (6 partitions, fetch.queue.backoff.ms=10) sluice serve →"),
        ]
        for run in runs {
            let cpu0 = Self.processCPUSeconds()
            let t0 = DispatchTime.now().uptimeNanoseconds
            let out = Self.output(py, [script, run.mode, bootstrap, topic, "6", "\(records)", "\(size)"] + run.extra)
            let wall = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let cpu = Self.processCPUSeconds() - cpu0
            guard let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
                  let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let seconds = json["seconds"] as? Double, let client = json["client"] as? String else {
                throw CLIError.runtime("confluent_bench.py \(run.mode) failed (\(String(format: "%.1f", wall)) s): \(out.suffix(300))")
            }
            emit(String(format: "sluice  %@ %@: %.0f records/s (%.2f s); broker CPU %.2f s per million records",
                        client, run.what, Double(records) / seconds, seconds, cpu / Double(records) * 1e6))
        }
    }

    /// The repository this binary was built in (…/.build/<config>/sluice), or the working directory.
    static var repository: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        if let r = exe.range(of: "/.build/") { return String(exe[..<r.lowerBound]) }
        return FileManager.default.currentDirectoryPath
    }

    /// User + system CPU seconds this process has used.
    static func processCPUSeconds() -> Double {
        var u = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &u)
        return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
    }

    static func which(_ tool: String) -> Bool {
        ProcessInfo.processInfo.environment["PATH", default: "/usr/bin:/bin"].split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") }
    }

    /// Wall-clock seconds of running `tool` to completion (its stdout discarded).
    static func time(_ tool: String, _ args: [String]) throws -> Double {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [tool] + args
        p.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        p.standardError = err
        let t0 = DispatchTime.now().uptimeNanoseconds
        try p.run()
        let errText = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        guard p.terminationStatus == 0 else {
            throw CLIError.runtime("\(tool) \(args.joined(separator: " ")) exited \(p.terminationStatus): \(String(decoding: errText, as: UTF8.self).split(separator: "\n").last ?? "")")
        }
        return seconds
    }

    static func output(_ tool: String, _ args: [String]) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [tool] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return "" }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
