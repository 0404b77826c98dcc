// `sluice serve --kafka` with real Kafka clients on loopback: kcat (librdkafka 2.0 from
// Debian), confluent-kafka (its bundled librdkafka), kafka-python, a pipeline sharing a group
// with a librdkafka consumer, and hostile frames. The clients and the server are real
// processes started here.
import Foundation
import Testing

@Suite(.serialized) struct KafkaInteropTests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }

    /// Runs a shell command; returns its status and output (stdout and stderr together).
    @discardableResult
    func sh(_ command: String) throws -> (status: Int32, output: String) {
        let r = try Sluice.run(["-c", command + " 2>&1"], binary: "/bin/sh")
        return (r.status, r.stdout)
    }

    /// Starts `sluice serve --kafka 127.0.0.1:PORT` on `dataDir` (the suite's by default) and
    /// waits until its listener is up.
    func launchServe(port: Int, dataDir: String? = nil, _ extra: [String] = []) throws -> LiveProcess {
        let p = try LiveProcess(["serve", "--kafka", "127.0.0.1:\(port)", "--data", dataDir ?? data, "--log-level", "info"] + extra)
        let deadline = Date().addingTimeInterval(20)
        while !p.stderrText.contains("Kafka listener on"), Date() < deadline { usleep(20_000) }
        #expect(p.stderrText.contains("Kafka listener on 127.0.0.1:" + String(port)), "\(p.stderrText)")
        return p
    }

    /// Starts `sluice serve` on a free port.
    func serve(_ extra: [String] = []) throws -> (LiveProcess, Int) {
        let port = HTTPSourceTests.freePort()
        return (try launchServe(port: port, extra), port)
    }

    /// Starts `sluice serve` behind scripts/interop/wire_capture.py: the server advertises the
    /// relay's port, so every connection the clients make passes through it and each request
    /// and response lands in `capture`. `port` is the relay's.
    func serveRecorded() throws -> (server: LiveProcess, relay: LiveProcess, port: Int, capture: String) {
        let upstream = HTTPSourceTests.freePort()
        var relayPort = HTTPSourceTests.freePort()
        while relayPort == upstream { relayPort = HTTPSourceTests.freePort() }
        let capture = scratch.path + "/capture-\(relayPort).jsonl"
        let server = try launchServe(port: upstream, ["--advertise", "127.0.0.1:\(relayPort)"])
        let relay = try LiveProcess(["python3", "\(PipelineCLITests.repo)/scripts/interop/wire_capture.py", "--listen", "\(relayPort)", "--upstream", "127.0.0.1:\(upstream)", "--out", capture], executable: "/usr/bin/env")
        let deadline = Date().addingTimeInterval(20)
        while !relay.stderrText.contains("listening"), Date() < deadline { usleep(20_000) }
        #expect(relay.stderrText.contains("listening"), "\(relay.stderrText)")
        return (server, relay, relayPort, capture)
    }

    /// Decodes every recorded request and response with kafka-python's classes (generated from
    /// Kafka's message definitions; each response must re-encode to Sluice's exact bytes) and
    /// checks the highest version each client used per API.
    func checkCapture(_ capture: String, expect: [String]) throws {
        let r = try sh("python3 \(PipelineCLITests.repo)/scripts/interop/check_capture.py \(capture) --expect \(expect.joined(separator: " "))")
        print(r.output)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("ok decoded"), "\(r.output)")
        for e in expect {
            let parts = e.split(separator: ":")[1].split(separator: "=")
            #expect(r.output.contains("ok \(e.split(separator: ":")[0]) \(parts[0]) v\(parts[1])"), "\(e)")
        }
    }

    func stop(_ p: LiveProcess) -> Int32 {
        kill(p.process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(15)
        while p.process.isRunning, Date() < deadline { usleep(20_000) }
        if p.process.isRunning { p.kill9(); return -1 }
        return p.process.terminationStatus
    }

    @Test func kcatProducesAndConsumesKeysHeadersAndEveryCompression() throws {
        let (server, relay, port, capture) = try serveRecorded()
        defer { relay.kill9() }
        let b = "127.0.0.1:\(port)"
        var r = try sh("printf 'k1:hello\\nk2:world\\nk1:again\\n' | kcat -b \(b) -t plain -P -K: -H origin=kcat")
        #expect(r.status == 0, "\(r.output)")
        r = try sh("kcat -b \(b) -t plain -C -e -q -f '%k=%s %h p%p o%o\\n'")
        #expect(r.output == "k1=hello origin=kcat p0 o0\nk2=world origin=kcat p0 o1\nk1=again origin=kcat p0 o2\n", "\(r.output)")
        for codec in ["gzip", "snappy", "lz4", "zstd"] {
            r = try sh("seq 1 200 | sed 's/^/\(codec)-/' | kcat -b \(b) -t packed -P -z \(codec)")
            #expect(r.status == 0, "\(codec): \(r.output)")
        }
        r = try sh("kcat -b \(b) -t packed -C -e -q")
        let lines = r.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 800)
        for codec in ["gzip", "snappy", "lz4", "zstd"] {
            #expect(lines.filter { $0.hasPrefix(codec + "-") } == (1...200).map { "\(codec)-\($0)" }, "\(codec) records came back in order")
        }
        r = try sh("kcat -b \(b) -L")
        #expect(r.output.contains("topic \"packed\" with 1 partitions") && r.output.contains("broker 0 at 127.0.0.1:\(port)"), "\(r.output)")
        // A balanced consumer group: kcat -G commits what it read.
        r = try sh("timeout 30 kcat -b \(b) -G readers -X auto.offset.reset=earliest -e -q -f '%s\\n' plain")
        #expect(r.output.split(separator: "\n").count == 3, "\(r.output)")
        // librdkafka 2.0 (Debian's, under kcat) used the highest versions it knows.
        try checkCapture(capture, expect: ["rdkafka:ApiVersions=3", "rdkafka:Metadata=4", "rdkafka:Produce=7", "rdkafka:Fetch=11", "rdkafka:ListOffsets=2",
                                           "rdkafka:FindCoordinator=2", "rdkafka:JoinGroup=5", "rdkafka:SyncGroup=3", "rdkafka:Heartbeat=3",
                                           "rdkafka:OffsetCommit=7", "rdkafka:OffsetFetch=7", "rdkafka:LeaveGroup=1"])
        #expect(stop(server) == 0, "sluice serve exits 0 on SIGTERM: \(server.stderrText)")
        // In-process readers decompress what the clients compressed.
        let local = try Sluice.run(["consume", "packed"], data: data)
        #expect(local.status == 0, "\(local.stderr)")
        for codec in ["gzip", "snappy", "lz4", "zstd"] {
            #expect(local.stdoutLines.filter { $0.hasPrefix(codec + "-") } == (1...200).map { "\(codec)-\($0)" }, "\(codec) decoded in process")
        }
        let d = try Sluice.run(["group", "describe", "readers"], data: data)
        #expect(d.stdoutLines.contains { $0.hasPrefix("plain") && $0.split(separator: " ", omittingEmptySubsequences: true).prefix(4) == ["plain", "0", "3", "3"] }, "\(d.stdout)")
    }

    @Test(arguments: PythonClients.both)
    func confluentKafkaAdminIdempotenceGroupsAndTransactions(clients: PythonClients) throws {
        let python = try clients.python()
        let (server, relay, port, capture) = try serveRecorded()
        defer { relay.kill9() }
        let keys = scratch.path + "/keys.txt"
        let r = try sh("timeout 240 \(python) \(PipelineCLITests.repo)/scripts/interop/confluent_check.py --bootstrap 127.0.0.1:\(port) --keys-out \(keys) | grep -v '^%'")
        print(r.output)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("client confluent-kafka"), "\(r.output)")
        for line in ["ok admin: create_topics and list_topics", "ok idempotent", "ok groups: three members own two partitions each", "ok groups: a member left, its partitions moved, all 600 records were read", "ok groups: committed offsets fetched back", "ok transactions"] {
            #expect(r.output.contains(line), "missing '\(line)'")
        }
        // The librdkafka bundled with confluent-kafka (2.6, and 2.16 as the newest in 2026-12)
        // used the highest versions it knows, Fetch by topic id (v13+) included.
        try checkCapture(capture, expect: ["rdkafka:ApiVersions=3", "rdkafka:Metadata=12", "rdkafka:Produce=10", "rdkafka:Fetch=16", "rdkafka:ListOffsets=7",
                                           "rdkafka:FindCoordinator=2", "rdkafka:JoinGroup=5", "rdkafka:SyncGroup=3", "rdkafka:Heartbeat=3", "rdkafka:LeaveGroup=1",
                                           "rdkafka:OffsetCommit=9", "rdkafka:OffsetFetch=9", "rdkafka:CreateTopics=4", "rdkafka:InitProducerId=4",
                                           "rdkafka:AddPartitionsToTxn=0", "rdkafka:AddOffsetsToTxn=0", "rdkafka:EndTxn=1", "rdkafka:TxnOffsetCommit=3"])
        #expect(stop(server) == 0)
        // librdkafka's murmur2 partitioner put each key where Sluice's own (Java's) partitioner does.
        let placed = try String(contentsOfFile: keys, encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(placed.count == 37)
        try Sluice.run(["topic", "create", "placement", "--partitions", "4"], data: data)
        let lines = placed.map { "{\"k\":\"\($0[0])\"}" }.joined(separator: "\n") + "\n"
        try Sluice.run(["produce", "placement", "--key-field", "k"], data: data, stdin: lines)
        let c = try Sluice.run(["consume", "placement", "--format", "json"], data: data)
        var ours: [String: Int] = [:]
        for l in c.stdoutLines {
            let o = try JSONSerialization.jsonObject(with: Data(l.utf8)) as! [String: Any]
            ours[o["key"] as! String] = o["partition"] as? Int
        }
        #expect(placed.allSatisfy { ours[$0[0]] == Int($0[1]) }, "partitions differ: \(placed.filter { ours[$0[0]] != Int($0[1]) })")
    }

    @Test func confluentKafkaConsumerProtocolGroupsRevokeOnlyMovedPartitions() throws {
        // librdkafka 2.16 (the newest confluent-kafka) speaks KIP-848 v1. The pinned 2.6's
        // early-access client joins (v0, the broker names the member), but its rebalance
        // callbacks do not report partial revocations, so the checks below cannot follow it.
        let python = try PythonClients.newest.python()
        let port = HTTPSourceTests.freePort()
        let server = try launchServe(port: port, ["--group-heartbeat-interval", "300ms"])
        let r = try sh("timeout -s KILL 120 \(python) \(PipelineCLITests.repo)/scripts/interop/consumer_protocol_check.py --bootstrap 127.0.0.1:\(port) rebalance | grep -v '^%'")
        print(r.output)
        #expect(r.status == 0, "\(r.output)\n\(server.stderrText.suffix(3000))")
        for line in ["OK rebalance: three consumer-protocol members own two partitions each", "the other two took its partitions and revoked none of their own",
                     "OK rebalance: a fourth member joined; exactly the partitions that moved to it were revoked", "OK rebalance: all 600 records read"] {
            #expect(r.output.contains(line), "missing '\(line)'")
        }
        #expect(stop(server) == 0)
        // The group as its last member left it: on the consumer protocol, empty.
        let listed = try Sluice.run(["group", "list"], data: data)
        #expect(listed.stdoutLines.contains { $0.hasPrefix("kip848-") && $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first == "consumer" }, "\(listed.stdout)")
    }

    @Test func classicAndConsumerProtocolMembersShareOneGroupAsKafkaMigratesIt() throws {
        // Kafka's online migration (group.consumer.migration.policy=bidirectional): classic
        // confluent-kafka consumers, then a group.protocol=consumer one joins and leaves.
        let python = try PythonClients.newest.python()
        let port = HTTPSourceTests.freePort()
        let server = try launchServe(port: port, ["--group-heartbeat-interval", "300ms"])
        let r = try sh("timeout -s KILL 180 \(python) \(PipelineCLITests.repo)/scripts/interop/consumer_protocol_check.py --bootstrap 127.0.0.1:\(port) migrate | grep -v '^%'")
        print(r.output)
        #expect(r.status == 0, "\(r.output)\n\(server.stderrText.suffix(3000))")
        for line in ["OK migrate: two classic members own three partitions each", "OK migrate: a consumer-protocol member joined the classic group; the three share it and only the partitions it took moved",
                     "OK migrate: the consumer-protocol member left; the classic members own all six again", "OK migrate: all 600 records read"] {
            #expect(r.output.contains(line), "missing '\(line)'")
        }
        // The server says what happened to the group.
        #expect(server.stderrText.contains("upgraded from the classic protocol to the consumer protocol"), "\(server.stderrText.suffix(3000))")
        #expect(server.stderrText.contains("downgraded from the consumer protocol to the classic protocol"), "\(server.stderrText.suffix(3000))")
        #expect(stop(server) == 0)
    }

    @Test func aMigrationPolicyThatIsNotOneOfKafkasIsRefused() throws {
        let r = try Sluice.run(["serve", "--kafka", "127.0.0.1:0", "--group-migration-policy", "sideways"], data: data)
        #expect(r.status != 0 && r.stderr.contains("--group-migration-policy 'sideways' is not one of bidirectional, upgrade, downgrade, disabled"), "\(r.stderr)")
        let h = try Sluice.run(["serve", "--kafka", "127.0.0.1:0", "--group-heartbeat-interval", "5ms"], data: data)
        #expect(h.status != 0 && h.stderr.contains("--group-heartbeat-interval '5ms' is not a duration of at least 10ms"), "\(h.stderr)")
        let s = try Sluice.run(["serve", "--kafka", "127.0.0.1:0", "--group-heartbeat-interval", "5s", "--group-session-timeout", "2s"], data: data)
        #expect(s.status != 0 && s.stderr.contains("--group-session-timeout '2s' must be a duration longer than --group-heartbeat-interval"), "\(s.stderr)")
    }

    @Test(arguments: PythonClients.both)
    func kafkaPythonAdminProduceConsumeGroups(clients: PythonClients) throws {
        let python = try clients.python()
        let (server, relay, port, capture) = try serveRecorded()
        defer { relay.kill9() }
        let r = try sh("timeout 120 \(python) \(PipelineCLITests.repo)/scripts/interop/kafka_python_check.py 127.0.0.1:\(port)")
        print(r.output)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("ok produce/consume/groups: 90 records with headers"))
        for line in ["ok admin: described the topic's configs", "ok admin: grew the topic to 5 partitions", "ok admin: described the group, listed it by state",
                     "ok admin: deleted the consumer group", "ok admin: deleted kp-"] {
            #expect(r.output.contains(line), "missing '\(line)'")
        }
        // kafka-python 3.0 (its classes follow Kafka 4.x's definitions; the versions below are
        // what it picks, capped where its own code caps them).
        try checkCapture(capture, expect: ["kafka:ApiVersions=4", "kafka:Metadata=12", "kafka:Produce=9", "kafka:Fetch=12", "kafka:ListOffsets=9",
                                           "kafka:FindCoordinator=5", "kafka:JoinGroup=7", "kafka:SyncGroup=5", "kafka:Heartbeat=4", "kafka:LeaveGroup=5",
                                           "kafka:OffsetCommit=8", "kafka:OffsetFetch=8", "kafka:DescribeGroups=5", "kafka:ListGroups=5", "kafka:DeleteGroups=2",
                                           "kafka:CreateTopics=7", "kafka:DeleteTopics=6", "kafka:CreatePartitions=3", "kafka:DescribeConfigs=4", "kafka:InitProducerId=4"])
        #expect(stop(server) == 0)
    }

    @Test func aPipelineInTheServerSharesItsGroupWithALibrdkafkaConsumer() throws {
        let file = scratch.path + "/shared.yaml"
        try """
        name: shared
        topics:
          work: { partitions: 4 }
        sources:
          in: { type: topic, topic: work, group: workers }
        sinks:
          out: { type: drop, inputs: [in] }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let (server, port) = try serve([file])
        let script = """
        import time
        from confluent_kafka import Consumer
        c = Consumer({"bootstrap.servers": "127.0.0.1:\(port)", "group.id": "workers", "partition.assignment.strategy": "range", "session.timeout.ms": 6000})
        c.subscribe(["work"])
        deadline = time.time() + 30
        while time.time() < deadline:
            c.poll(0.2)
            if len(c.assignment()) == 2:
                time.sleep(1); c.poll(0.2)
                break
        print("assigned", sorted(tp.partition for tp in c.assignment()))
        c.close()
        """
        try script.write(toFile: scratch.path + "/member.py", atomically: true, encoding: .utf8)
        let r = try sh("timeout 60 python3 \(scratch.path)/member.py | grep -v '^%'")
        #expect(r.output.contains("assigned [0, 1]") || r.output.contains("assigned [2, 3]"), "the outside member should own half of the partitions: \(r.output)")
        #expect(server.stderrText.contains("group workers generation") && server.stderrText.contains("2 members"), "\(server.stderrText)")
        #expect(stop(server) == 0)
    }

    @Test func hostileFramesAreRefusedAndTheListenerKeepsServing() throws {
        let (server, port) = try serve(["--max-request", "1MiB"])
        // Random frames, then real client frames (the golden fixtures) mutated.
        let r = try sh("timeout 180 python3 \(PipelineCLITests.repo)/scripts/interop/fuzz_frames.py 127.0.0.1 \(port) 300 \(PipelineCLITests.repo)/Tests/SluiceKafkaWireTests/Fixtures")
        print(r.output)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("ok fuzz: 300 hostile frames"))
        #expect(r.output.contains("ok mutated: "), "\(r.output)")
        // Memory stays bounded: the resident size after 300 attacks.
        let rss = try String(contentsOfFile: "/proc/\(server.process.processIdentifier)/status", encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("VmRSS:") }.flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[1]) } ?? 0
        #expect(rss > 0 && rss < 300_000, "resident size \(rss) kB")
        // Each closed connection is logged with its peer and the reason.
        #expect(server.stderrText.contains("closing the connection from [IPv4]127.0.0.1/127.0.0.1:"))
        #expect(server.stderrText.contains("is over the 1048576-byte limit"))
        let ok = try sh("kcat -b 127.0.0.1:\(port) -L")
        #expect(ok.status == 0 && ok.output.contains("1 brokers"))
        #expect(stop(server) == 0)
    }

    @Test func saslPlainAndScramAuthenticateAndEverythingElseIsRefused() throws {
        let users = scratch.path + "/users.txt"
        try "# user:password\nalice:s3cret\nbob:hunter2\n".write(toFile: users, atomically: true, encoding: .utf8)
        let (server, port) = try serve(["--sasl-users", users])
        let b = "127.0.0.1:\(port)"
        // PLAIN and SCRAM-SHA-256 with librdkafka (kcat): produce, then consume back.
        var r = try sh("printf 'one\\ntwo\\n' | kcat -b \(b) -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=PLAIN -X sasl.username=alice -X sasl.password=s3cret -t secure -P")
        #expect(r.status == 0, "\(r.output)")
        r = try sh("kcat -b \(b) -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=SCRAM-SHA-256 -X sasl.username=bob -X sasl.password=hunter2 -t secure -C -e -q")
        #expect(r.output == "one\ntwo\n", "\(r.output)")
        // With confluent-kafka too.
        let script = """
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": "\(b)", "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice", "sasl.password": "s3cret"})
        p.produce("secure", value=b"three"); print("unflushed", p.flush(20))
        """
        try script.write(toFile: scratch.path + "/scram.py", atomically: true, encoding: .utf8)
        r = try sh("timeout 60 python3 \(scratch.path)/scram.py | grep -v '^%'")
        #expect(r.output.contains("unflushed 0"), "\(r.output)")
        // kafka-python: SaslHandshake v1 and the flexible SaslAuthenticate v2, both mechanisms.
        r = try sh("timeout 90 python3 \(PipelineCLITests.repo)/scripts/interop/kafka_python_sasl.py \(b) bob hunter2 secure")
        #expect(r.status == 0, "\(r.output)")
        for line in ["ok kafka-python SCRAM-SHA-256: produced and read back", "ok kafka-python PLAIN: produced and read back", "ok kafka-python wrong password refused"] {
            #expect(r.output.contains(line), "missing '\(line)': \(r.output)")
        }
        // A wrong password and a client without SASL are refused; the server names why.
        r = try sh("timeout 20 kcat -b \(b) -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=SCRAM-SHA-256 -X sasl.username=bob -X sasl.password=wrong -L -m 5")
        #expect(r.status != 0, "\(r.output)")
        r = try sh("timeout 20 kcat -b \(b) -L -m 5")
        #expect(r.status != 0, "\(r.output)")
        #expect(server.stderrText.contains("authentication failed for user 'bob'"))
        #expect(server.stderrText.contains("before authenticating; this listener requires SASL"))
        #expect(stop(server) == 0)
    }

    @Test func tlsWithAndWithoutSasl() throws {
        let cert = scratch.path + "/cert.pem", key = scratch.path + "/key.pem"
        var r = try sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout \(key) -out \(cert) -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1")
        #expect(r.status == 0, "\(r.output)")
        let users = scratch.path + "/users.txt"
        try "carol:pa55\n".write(toFile: users, atomically: true, encoding: .utf8)
        let (server, port) = try serve(["--tls-cert", cert, "--tls-key", key, "--sasl-users", users])
        let b = "127.0.0.1:\(port)"
        let tls = "-X security.protocol=SASL_SSL -X ssl.ca.location=\(cert) -X sasl.mechanism=SCRAM-SHA-256 -X sasl.username=carol -X sasl.password=pa55"
        r = try sh("printf 'over\\ntls\\n' | kcat -b \(b) \(tls) -t sealed -P")
        #expect(r.status == 0, "\(r.output)")
        r = try sh("kcat -b \(b) \(tls) -t sealed -C -e -q")
        #expect(r.output == "over\ntls\n", "\(r.output)")
        // A plaintext client cannot talk to a TLS listener; a client that does not trust the
        // certificate refuses it.
        r = try sh("timeout 20 kcat -b \(b) -L -m 3")
        #expect(r.status != 0)
        r = try sh("timeout 20 kcat -b \(b) -X security.protocol=SSL -L -m 3")
        #expect(r.status != 0)
        #expect(stop(server) == 0)
    }

    /// SIGKILL `sluice serve` while a librdkafka producer (acks=all, idempotent) is writing:
    /// after a restart on the same data directory every acknowledged record is there, once,
    /// in the order produced.
    @Test func acknowledgedProducesSurviveAKilledServer() throws {
        let port = HTTPSourceTests.freePort()
        var server = try launchServe(port: port)
        let acked = scratch.path + "/acked.txt"
        let producer = try LiveProcess(["python3", "\(PipelineCLITests.repo)/scripts/interop/acked_producer.py", "127.0.0.1:\(port)", "killed", "60000", acked], executable: "/usr/bin/env")
        var deadline = Date().addingTimeInterval(60)
        func ackedLines() -> [String] { ((try? String(contentsOfFile: acked, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        while ackedLines().count < 5_000, Date() < deadline, producer.process.isRunning { usleep(10_000) }
        server.kill9()
        let atKill = ackedLines().count
        #expect(atKill >= 5_000, "the producer was acknowledged \(atKill) records before the kill: \(producer.stderrText.suffix(300))")
        deadline = Date().addingTimeInterval(60)
        while producer.process.isRunning, Date() < deadline { usleep(50_000) }
        if producer.process.isRunning { producer.kill9() }
        let confirmed = ackedLines()
        #expect(confirmed.count < 60_000, "the kill landed mid-stream (\(confirmed.count) acknowledged)")
        server = try launchServe(port: port)
        let stored = try sh("kcat -b 127.0.0.1:\(port) -t killed -C -e -q").output.split(separator: "\n").map(String.init)
        print("killed sluice serve with \(atKill) records acknowledged; \(confirmed.count) acknowledged in all; \(stored.count) stored after the restart")
        let storedSet = Set(stored)
        let lost = confirmed.filter { !storedSet.contains($0) }
        #expect(lost.isEmpty, "\(lost.count) acknowledged records are missing, e.g. \(lost.prefix(3))")
        #expect(stored.count == storedSet.count, "no record is stored twice")
        #expect(stored == stored.sorted(), "records are stored in the order produced")
        #expect(stop(server) == 0)
    }

    /// SIGTERM while requests are held open (a ten-minute fetch long poll, a JoinGroup waiting
    /// for a rebalance): the server stops at once instead of waiting for them.
    @Test func shutdownDoesNotWaitForHeldRequests() throws {
        let (server, port) = try serve()
        let holder = try LiveProcess(["python3", "\(PipelineCLITests.repo)/scripts/interop/hold_requests.py", "127.0.0.1", "\(port)"], executable: "/usr/bin/env")
        defer { holder.kill9() }
        let deadline = Date().addingTimeInterval(20)
        while !server.stderrText.contains("group held-group is rebalancing"), Date() < deadline { usleep(20_000) }
        usleep(300_000)
        #expect(server.stderrText.contains("group held-group is rebalancing"), "\(server.stderrText)")
        let asked = Date()
        #expect(stop(server) == 0, "sluice serve exits 0 on SIGTERM: \(server.stderrText.suffix(500))")
        #expect(Date().timeIntervalSince(asked) < 5, "stopped in \(Date().timeIntervalSince(asked)) s")
    }

    /// A full disk under `sluice serve`: produces are refused with KAFKA_STORAGE_ERROR (which
    /// librdkafka retries until its message timeout), the server names the file, everything
    /// acknowledged reads back in order, and metadata and reads keep being served.
    @Test func aFullDiskRefusesProducesAndKeepsServingReads() throws {
        let mountPoint = scratch.path + "/tiny"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mounted = try sh("mount -t tmpfs -o size=512k tmpfs \(mountPoint)")
        try #require(mounted.status == 0, "mounting a tmpfs needs root: \(mounted.output)")
        defer { _ = try? sh("umount \(mountPoint)") }
        let port = HTTPSourceTests.freePort()
        let server = try launchServe(port: port, dataDir: mountPoint + "/data")
        let b = "127.0.0.1:\(port)"
        let lines = (1...12_000).map { String(format: "rec-%08d-%@", $0, String(repeating: "x", count: 50)) }
        let file = scratch.path + "/full.txt"
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let produced = try sh("timeout 90 kcat -b \(b) -t full -P -l \(file) -X acks=all -X enable.idempotence=true -X message.timeout.ms=6000 -X linger.ms=5 -X batch.num.messages=100")
        #expect(produced.status != 0, "the producer hears that not everything was stored")
        let failed = produced.output.split(separator: "\n").filter { $0.contains("Delivery failed") }.count
        // KAFKA_STORAGE_ERROR is retriable: librdkafka retries until its timeout (a CORRUPT_MESSAGE
        // answer would fail at once with "Broker: Corrupt message").
        #expect(produced.output.contains("Local: Message timed out") && !produced.output.contains("Corrupt message"), "\(produced.output.suffix(400))")
        #expect(server.stderrText.contains("produce to full/0 failed: cannot write \(mountPoint)/data/topics/full/0/"), "\(server.stderrText.suffix(600))")
        #expect(server.stderrText.contains("the disk is full (No space left on device)"))
        // Everything acknowledged is there, in order; nothing else.
        let back = try sh("kcat -b \(b) -t full -C -e -q").output.split(separator: "\n").map(String.init)
        #expect(!back.isEmpty && failed > 0, "some records fit, some did not (\(back.count) stored, \(failed) failed)")
        #expect(back == Array(lines.prefix(back.count)), "the stored records are the first ones sent, in order")
        #expect(back.count + failed == lines.count, "\(back.count) stored + \(failed) reported failed = every record sent")
        let meta = try sh("kcat -b \(b) -L")
        #expect(meta.output.contains("topic \"full\" with 1 partitions"), "\(meta.output)")
        _ = stop(server)
    }

    @Test func badServeOptionsAreOneLineErrors() throws {
        let bad = scratch.path + "/bad-users.txt"
        try "alice:ok\nno-colon-here\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let cases: [([String], String)] = [
            (["serve", "--kafka", "localhost"], "error: --kafka 'localhost' is not host:port\n"),
            (["serve", "--max-request", "lots"], "error: --max-request 'lots' is not a size such as 100MiB\n"),
            (["serve", "--kafka", "127.0.0.1:0", "--sasl-users", scratch.path + "/missing.txt"], "error: --sasl-users: cannot read \(scratch.path)/missing.txt\n"),
            (["serve", "--kafka", "127.0.0.1:0", "--sasl-users", bad], "error: \(bad):2: expected user:password\n"),
            (["serve", "--kafka", "127.0.0.1:0", "--tls-cert", bad], "error: --tls-cert and --tls-key go together\n"),
        ]
        for (args, message) in cases {
            let r = try Sluice.run(args, data: data)
            #expect(r.status == 1, "\(args): \(r.stderr)")
            #expect(r.stderr == message, "\(args)")
        }
        let r = try Sluice.run(["serve", "--kafka", "127.0.0.1:0", "--tls-cert", bad, "--tls-key", bad], data: data)
        #expect(r.status == 1 && r.stderr.hasPrefix("error: cannot use --tls-cert \(bad) / --tls-key \(bad): "), "\(r.stderr)")
    }
}

/// The Python Kafka clients an interop test runs: the versions scripts/test pins (python3's
/// site packages; reproducible) and the newest that pip serves (a virtual environment that
/// scripts/test creates and upgrades in .build/interop-newest), so a client release that breaks
/// Sluice shows in our own CI first.
enum PythonClients: String, CustomTestStringConvertible, CaseIterable, Sendable {
    case pinned, newest

    static let both = allCases
    var testDescription: String { rawValue }

    func python() throws -> String {
        switch self {
        case .pinned: return "python3"
        case .newest:
            let path = ProcessInfo.processInfo.environment["SLUICE_NEWEST_PYTHON"]
                ?? PipelineCLITests.repo + "/.build/interop-newest/bin/python3"
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw InteropSetupError(description: "no Python with the newest Kafka clients at \(path); scripts/test creates it (python3 -m venv, pip install --upgrade confluent-kafka kafka-python)")
            }
            return path
        }
    }
}

struct InteropSetupError: Error, CustomStringConvertible {
    var description: String
}
