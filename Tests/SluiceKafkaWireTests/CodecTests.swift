// The Kafka codec against bytes written out by hand from Kafka's protocol guide, and the
// request handler answering requests built the same way, on a real embedded broker.
import Foundation
import Logging
import SluiceBroker
import SluiceKafkaWire
import Testing

@Suite struct WireCodecTests {
    @Test func unsignedVarintsAndCompactStringsMatchTheSpec() throws {
        var w = KafkaWriter(flexible: true)
        w.uvarint(300)
        w.string("ab")
        w.string(nil)
        w.bytes([UInt8]([1, 2, 3]))
        w.arrayCount(0)
        w.taggedFields()
        // 300 = 0xAC 0x02; compact lengths are length + 1; null is 0.
        #expect(w.bytes == [0xAC, 0x02, 0x03, 0x61, 0x62, 0x00, 0x04, 1, 2, 3, 0x01, 0x00])
        var r = KafkaReader(w.bytes, flexible: true)
        #expect(try r.uvarint() == 300)
        #expect(try r.string() == "ab")
        #expect(try r.nullableString() == nil)
        #expect(try r.nullableBytes().map(Array.init) == [1, 2, 3])
        #expect(try r.arrayCount() == 0)
        try r.taggedFields()
        #expect(r.remaining == 0)
    }

    @Test func classicEncodingsAreBigEndianWithInt16AndInt32Lengths() throws {
        var w = KafkaWriter()
        w.int16(-2)
        w.int32(0x01020304)
        w.int64(-1)
        w.string("k")
        w.string(nil)
        w.bytes([UInt8]([9]))
        w.nullBytes()
        #expect(w.bytes == [0xFF, 0xFE, 1, 2, 3, 4] + Array(repeating: 0xFF, count: 8) + [0, 1, 0x6B, 0xFF, 0xFF, 0, 0, 0, 1, 9, 0xFF, 0xFF, 0xFF, 0xFF])
    }

    @Test func hostileLengthsAreErrorsNotAllocations() {
        // An array claiming two billion elements in six bytes.
        var r = KafkaReader([0x7F, 0xFF, 0xFF, 0xFF, 0, 0])
        #expect(throws: WireError.self) { _ = try r.arrayCount() }
        var s = KafkaReader([0x00, 0x10, 0x61])  // a 16-byte string with one byte
        #expect(throws: WireError.self) { _ = try s.string() }
        var v = KafkaReader([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])  // a 6-byte varint
        #expect(throws: WireError.self) { _ = try v.uvarint() }
    }
}

@Suite(.serialized) struct RequestHandlerTests {
    /// A request frame body: header v1 (key, version, correlation id, client id) + body.
    func request(_ key: Int16, _ version: Int16, _ correlation: Int32, _ body: [UInt8]) -> [UInt8] {
        var w = KafkaWriter()
        w.int16(key); w.int16(version); w.int32(correlation); w.string("test")
        return w.bytes + body
    }

    @Test func apiVersionsV0AndV3AndAnUnsupportedVersion() async throws {
        try await withKafkaHandler { handler, _ in
            let v0 = try #require(try await handler.handle(request(18, 0, 41, [])))
            var r = KafkaReader(v0)
            #expect(try r.int32() == Int32(v0.count - 4))
            #expect(try r.int32() == 41)
            #expect(try r.int16() == 0)
            let n = try r.arrayCount()
            #expect(n == ApiKey.allCases.count)
            #expect(try r.int16() == 0 && r.int16() == 3 && r.int16() == 11, "Produce 3...11 first")
            // v3: flexible body (compact array, tagged fields) but a v0 response header.
            var body = KafkaWriter(flexible: true)
            body.string("kcat"); body.string("1.7"); body.taggedFields()
            var hv = KafkaWriter(); hv.int16(18); hv.int16(3); hv.int32(42); hv.string("test"); hv.bytes.append(0)
            let v3 = try #require(try await handler.handle(hv.bytes + body.bytes))
            #expect(Array(v3[4..<10]) == [0, 0, 0, 42, 0, 0])
            #expect(v3[10] == UInt8(ApiKey.allCases.count + 1), "compact array length")
            // Too new: error 35 in v0 form, so the client can retry lower.
            let v9 = try #require(try await handler.handle(request(18, 9, 43, [])))
            #expect(Array(v9[8..<10]) == [0, 35])
        }
    }

    @Test func metadataCreatesAskedTopicsAndBadRequestsCloseTheConnection() async throws {
        try await withKafkaHandler { handler, broker in
            var m = KafkaWriter()
            m.arrayCount(1); m.string("wire")
            m.bool(true)
            let meta = try #require(try await handler.handle(request(3, 4, 1, m.bytes)))
            #expect(broker.topics.exists(try TopicName("wire")))
            var r = KafkaReader(meta, at: 8)
            _ = try r.int32()  // throttle
            #expect(try r.arrayCount() == 1)
            #expect(try r.int32() == 0 && r.string() == "127.0.0.1" && r.int32() == 9092)
            // Unknown API keys and unsupported versions close the connection.
            await #expect(throws: ProtocolViolation.self) { _ = try await handler.handle(request(999, 0, 2, [])) }
            await #expect(throws: ProtocolViolation.self) { _ = try await handler.handle(request(3, 42, 3, [])) }
            await #expect(throws: ProtocolViolation.self) { _ = try await handler.handle([0, 3]) }
        }
    }
}
