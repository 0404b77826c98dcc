// Sluice's own share-group client over a real loopback socket: against the listener it
// acquires, acknowledges (durably) and, when closed, gives back what it held; the share-group
// admin requests report lag; against a broker that answers garbage it fails with a sentence
// naming the broker instead of crashing or hanging.
import Foundation
import Logging
import NIOCore
import SluiceBroker
import SluiceKafkaWire
import SluiceLog
import Synchronization
import Testing

@Suite(.serialized) struct WireShareConsumerTests {
    /// Runs `body` with a listener on an embedded broker, and the port it is bound to.
    func withListener(_ body: (EmbeddedBroker, Int) async throws -> Void) async throws {
        try await withKafkaHandler { handler, broker in
            let listener = KafkaListener(handler: handler, host: "127.0.0.1", port: 0, idleTimeout: .seconds(60), logger: Logger(label: "test"))
            let bound = Mutex(0)
            let server = Task { try await listener.run { port in bound.withLock { $0 = port } } }
            defer { server.cancel() }
            while bound.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(10)) }
            handler.listening(on: bound.withLock { $0 })
            try await body(broker, bound.withLock { $0 })
        }
    }

    func produce(_ broker: EmbeddedBroker, _ topic: TopicName, _ n: Int) async throws {
        let producer = try await Producer(broker: broker)
        _ = try await producer.send(batch: (0..<n).map { ProducerRecord(topic: topic, key: nil, value: Array("job-\($0)".utf8)) })
    }

    @Test func acquiresAcknowledgesDurablyAndReleasesWhatItHeldOnClose() async throws {
        try await withListener { broker, port in
            let topic = try broker.createTopic("work", partitions: 2)
            try await produce(broker, topic, 100)
            let conn = try await KafkaClientConnection.connect(host: "127.0.0.1", port: port, clientId: "admin")
            try await WireShareAdmin.alterGroupConfigs(conn, group: "g", [("share.delivery.count.limit", "4"), ("share.auto.offset.reset", "earliest")])
            #expect(await broker.shares.settings(of: "g").maxDeliveries == 4)
            #expect(try await WireShareAdmin.settled(conn, group: "g", topic: topic) == false)

            var config = ShareConsumerConfig(groupId: "g")
            config.acknowledgement = .explicit
            config.maxRecords = 30
            let c = try await WireShareConsumer.connect(host: "127.0.0.1", port: port, config: config, topics: [topic])
            var seen = Set<String>()
            var rejected: String?
            // Accept everything but one record, which is rejected; keep the last batch unsettled.
            var held: ShareBatch?
            while seen.count < 100 {
                let batch = try await c.poll(maxWait: .seconds(2))
                try #require(!batch.isEmpty, "a poll came back empty with \(seen.count) of 100 seen")
                var acks = batch.acknowledgements(.accept)
                var values: [String] = []
                try batch.forEach { _, r in
                    let v = String(decoding: r.view.value ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self)
                    values.append(v)
                    #expect(r.deliveryCount == 1)
                    if rejected == nil { rejected = v; acks.set(r, .reject) }
                }
                #expect(values.allSatisfy { !seen.contains($0) }, "a record came twice")
                seen.formUnion(values)
                if seen.count == 100 { held = batch; break }
                let refused = try await c.acknowledge(acks)
                #expect(refused.isEmpty, "\(refused)")
            }
            let d = try #require(await broker.shares.describe("g"))
            let heldCount = held?.count ?? 0
            // Everything before the last batch is settled: only that batch is still acquired.
            #expect(heldCount > 0)
            #expect(d.partitions.reduce(0) { $0 + $1.acquired } == heldCount)
            #expect(d.members.count == 1)
            // Closing gives the held batch back (explicit mode: released) and leaves.
            await c.close()
            let after = try #require(await broker.shares.describe("g"))
            #expect(after.partitions.reduce(0) { $0 + $1.acquired } == 0)
            #expect(after.partitions.reduce(0) { $0 + $1.available } == heldCount)
            #expect(after.members.isEmpty)
            #expect(try await WireShareAdmin.settled(conn, group: "g", topic: topic) == false)

            // A second member takes what came back, with delivery count 2, and settles it all.
            let c2 = try await WireShareConsumer.connect(host: "127.0.0.1", port: port, config: config, topics: [topic])
            var again = 0
            while again < heldCount {
                let batch = try await c2.poll(maxWait: .seconds(2))
                try #require(!batch.isEmpty)
                try batch.forEach { _, r in
                    #expect(r.deliveryCount == 2)
                    again += 1
                }
                try await c2.acknowledge(batch.acknowledgements(.accept))
            }
            #expect(again == heldCount)
            #expect(try await WireShareAdmin.settled(conn, group: "g", topic: topic) == true)
            await c2.close()
            await conn.close()
        }
    }

    @Test func aBrokerThatAnswersGarbageGetsAnErrorNamingIt() async throws {
        // A TCP server that answers every request with a frame whose body is not a response.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        listen(fd, 4)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let server = Thread {
            let c = accept(fd, nil, nil)
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = read(c, &buf, buf.count)
            guard n >= 12 else { close(c); return }
            // Size 9: the request's correlation id, then five bytes of nonsense.
            let reply: [UInt8] = [0, 0, 0, 9] + buf[8..<12] + [0xff, 0xff, 0xff, 0xff, 0xff]
            _ = reply.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
            usleep(200_000)
            close(c)
        }
        server.start()
        defer { close(fd) }
        let c = try await WireShareConsumer.connect(host: "127.0.0.1", port: port, config: ShareConsumerConfig(groupId: "g"), topics: [try TopicName("t")])
        do {
            _ = try await c.poll(maxWait: .milliseconds(100))
            Issue.record("a garbage answer was taken")
        } catch let e as KafkaClientError {
            #expect(e.description.contains("broker 127.0.0.1:\(port)") && e.description.contains("malformed"), "\(e)")
        }
        await c.close()
    }
}
