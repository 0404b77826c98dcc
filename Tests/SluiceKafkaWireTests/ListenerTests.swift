// The listener over a real loopback socket: a request held open (a fetch long poll) ends when
// its connection is closed (here by the idle timeout), instead of waiting out its time.
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

    @Test func aLongPollEndsWhenItsConnectionIsClosed() async throws {
        try await withKafkaHandler { handler, broker in
            let topic = try broker.createTopic("polled", partitions: 1)
            let log = try broker.partition(TopicPartition(topic, 0)).log
            let baseline = log.appendListenerCount  // the partition handle's own listener
            let listener = KafkaListener(handler: handler, host: "127.0.0.1", port: 0, idleTimeout: .seconds(1), logger: Logger(label: "test"))
            let bound = Mutex(0)
            let server = Task { try await listener.run { port in bound.withLock { $0 = port } } }
            defer { server.cancel() }
            while bound.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(10)) }
            let port = bound.withLock { $0 }

            // Fetch v4 at the end of the empty topic, willing to wait ten minutes (held 30 s at most).
            var body = KafkaWriter()
            body.int32(-1); body.int32(600_000); body.int32(1); body.int32(1 << 20); body.int8(0)
            body.arrayCount(1); body.string("polled"); body.arrayCount(1)
            body.int32(0); body.int64(0); body.int32(1 << 20)
            var frame = KafkaWriter()
            frame.int16(1); frame.int16(4); frame.int32(9); frame.string("test")
            let payload = frame.bytes + body.bytes
            var sized = KafkaWriter()
            sized.int32(Int32(payload.count))
            let bytes = sized.bytes + payload
            let fd = try connect(port)
            #expect(bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == bytes.count)
            var deadline = ContinuousClock.now + .seconds(5)
            while log.appendListenerCount == baseline, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(log.appendListenerCount == baseline + 1, "the fetch is waiting for records")
            // The client sends nothing more: after a second the idle timeout closes the
            // connection, and the poll it held ends with it.
            deadline = ContinuousClock.now + .seconds(8)
            while log.appendListenerCount > baseline, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(log.appendListenerCount == baseline, "the long poll ended with its connection")
            var byte: UInt8 = 0
            #expect(recv(fd, &byte, 1, 0) == 0, "the server closed the connection (EOF, no answer)")
            close(fd)
        }
    }

    @Test func aLongPollEndsWhenItsClientDisconnects() async throws {
        try await withKafkaHandler { handler, broker in
            let topic = try broker.createTopic("polled", partitions: 1)
            let log = try broker.partition(TopicPartition(topic, 0)).log
            let baseline = log.appendListenerCount  // the partition handle's own listener
            let listener = KafkaListener(handler: handler, host: "127.0.0.1", port: 0, idleTimeout: .minutes(10), logger: Logger(label: "test"))
            let bound = Mutex(0)
            let server = Task { try await listener.run { port in bound.withLock { $0 = port } } }
            defer { server.cancel() }
            while bound.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(10)) }
            let port = bound.withLock { $0 }

            // Fetch v4 at the end of the empty topic, willing to wait ten minutes (held 30 s at most).
            var body = KafkaWriter()
            body.int32(-1); body.int32(600_000); body.int32(1); body.int32(1 << 20); body.int8(0)
            body.arrayCount(1); body.string("polled"); body.arrayCount(1)
            body.int32(0); body.int64(0); body.int32(1 << 20)
            var frame = KafkaWriter()
            frame.int16(1); frame.int16(4); frame.int32(9); frame.string("test")
            let payload = frame.bytes + body.bytes
            var sized = KafkaWriter()
            sized.int32(Int32(payload.count))
            let bytes = sized.bytes + payload
            let fd = try connect(port)
            #expect(bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == bytes.count)
            var deadline = ContinuousClock.now + .seconds(5)
            while log.appendListenerCount == baseline, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(log.appendListenerCount == baseline + 1, "the fetch is waiting for records")
            // The client goes away.
            close(fd)
            deadline = ContinuousClock.now + .seconds(8)
            while log.appendListenerCount > baseline, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(log.appendListenerCount == baseline, "the long poll ended with its connection")

        }
    }
}
