// The listener over a real loopback socket: a request held open (a fetch long poll) ends when
// its connection closes — the client goes away, or the idle timeout closes it — instead of
// waiting out the time the client asked for.
import Foundation
import Logging
import NIOCore
import SluiceBroker
import SluiceKafkaWire
import SluiceLog
import Synchronization
import Testing

@Suite(.serialized) struct ListenerTests {
    /// A connected loopback TCP socket.
    func connect(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(ok == 0, "connect to 127.0.0.1:\(port)")
        return fd
    }

    /// Starts a listener, sends a Fetch v4 that may wait ten minutes at the end of an empty
    /// topic, checks that it waits (an append listener more on the partition), runs `end` on
    /// the client socket, and checks that the wait stops within `within`.
    func heldFetch(idleTimeout: TimeAmount, within: Duration, end: (Int32) throws -> Void) async throws {
        try await withKafkaHandler { handler, broker in
            let topic = try broker.createTopic("polled", partitions: 1)
            let log = try broker.partition(TopicPartition(topic, 0)).log
            let baseline = log.appendListenerCount  // the partition handle's own listener
            let listener = KafkaListener(handler: handler, host: "127.0.0.1", port: 0, idleTimeout: idleTimeout, logger: Logger(label: "test"))
            let bound = Mutex(0)
            let server = Task { try await listener.run { port in bound.withLock { $0 = port } } }
            defer { server.cancel() }
            while bound.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(10)) }

            var body = KafkaWriter()
            body.int32(-1); body.int32(600_000); body.int32(1); body.int32(1 << 20); body.int8(0)
            body.arrayCount(1); body.string("polled"); body.arrayCount(1)
            body.int32(0); body.int64(0); body.int32(1 << 20)
            var header = KafkaWriter()
            header.int16(1); header.int16(4); header.int32(9); header.string("test")
            var frame = KafkaWriter()
            frame.int32(Int32(header.bytes.count + body.bytes.count))
            let bytes = frame.bytes + header.bytes + body.bytes
            let fd = try connect(bound.withLock { $0 })
            #expect(bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == bytes.count)
            var deadline = ContinuousClock.now + .seconds(5)
            while log.appendListenerCount == baseline, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(log.appendListenerCount == baseline + 1, "the fetch is waiting for records")
            try end(fd)
            deadline = ContinuousClock.now + within
            while log.appendListenerCount > baseline, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(log.appendListenerCount == baseline, "the long poll ended with its connection")
        }
    }

    @Test func aLongPollEndsWhenItsClientDisconnects() async throws {
        try await heldFetch(idleTimeout: .minutes(10), within: .seconds(5)) { fd in close(fd) }
    }

    @Test func aLongPollEndsWhenTheIdleTimeoutClosesItsConnection() async throws {
        var closedByServer = false
        try await heldFetch(idleTimeout: .seconds(1), within: .seconds(8)) { fd in
            // The client sends nothing more and keeps the socket open; the server closes it
            // after a second (EOF, no answer).
            var byte: UInt8 = 0
            closedByServer = recv(fd, &byte, 1, 0) == 0
            close(fd)
        }
        #expect(closedByServer)
    }
}
