// The generated message types (Sources/SluiceKafkaWire/Messages, from Kafka's message
// definitions) against the captured client requests: each decodes to its last field, and
// encoding the decoded value gives back the client's exact bytes.
import Foundation
import SluiceKafkaWire
import Testing

@Suite struct GeneratedCodecTests {
    static func roundTrip(_ api: ApiKey, _ body: KafkaReader, _ version: Int16) throws -> (read: Int, again: [UInt8]) {
        var r = body
        let start = r.position
        let value = try api.decodeRequest(&r, version: version)
        var w = KafkaWriter()
        value.encode(to: &w, version: version)
        return (r.position - start, w.bytes)
    }

    static var fixtures: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: VersionTests.fixtures)) ?? []).filter { $0.hasSuffix(".hex") }.sorted()
    }

    @Test func everyCapturedRequestDecodesAndReencodesToTheClientsBytes() throws {
        let files = Self.fixtures
        #expect(files.count >= 60, "the fixtures of four client versions are present")
        #expect(files.contains { $0.hasPrefix("rdkafka2.16-") }, "librdkafka 2.16 fixtures are present")
        for file in files {
            let hex = try String(contentsOfFile: VersionTests.fixtures + "/" + file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            let frame = try #require(VersionTests.bytes(hex))
            let (header, body) = try KafkaRequestHandler.header(Array(frame.dropFirst(4)))
            let api = try #require(ApiKey(rawValue: header.apiKey))
            let (read, again) = try Self.roundTrip(api, body, header.apiVersion)
            let sent = Array(body.bytes[body.position...])
            if file.hasPrefix("rdkafka2.16alltopics-") {
                // librdkafka's all-topics Metadata v9+: a 4-byte placeholder where the 1-byte
                // null count belongs. Kafka reads the first byte as "all topics" and ignores the
                // three bytes left at the end; the decoded request is exactly that.
                #expect(sent.count - read == 3, "\(file): three stray bytes")
                var r = body
                let m = try MetadataRequest(from: &r, version: header.apiVersion)
                #expect(m.topics == nil, "\(file): all topics")
                #expect(Array(sent.prefix(read)) == again, "\(file): the read part re-encodes exactly")
            } else {
                #expect(read == sent.count, "\(file): \(sent.count - read) bytes not read")
                #expect(again == sent, "\(file): re-encoded bytes differ")
            }
        }
    }

    @Test func truncatedRequestsAreErrorsAtEveryLength() throws {
        // Every prefix of every captured body either decodes (a shorter valid message) or
        // throws; none traps. Exercised with the typed decoders directly.
        var refused = 0
        for file in Self.fixtures {
            let hex = try String(contentsOfFile: VersionTests.fixtures + "/" + file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            let frame = try #require(VersionTests.bytes(hex))
            let (header, body) = try KafkaRequestHandler.header(Array(frame.dropFirst(4)))
            let api = try #require(ApiKey(rawValue: header.apiKey))
            let sent = Array(body.bytes[body.position...])
            for cut in stride(from: 0, to: sent.count, by: max(1, sent.count / 64)) {
                let short = KafkaReader(Array(sent.prefix(cut)))
                do { _ = try Self.roundTrip(api, short, header.apiVersion) } catch { refused += 1 }
            }
        }
        #expect(refused > 500, "cut requests are refused (\(refused))")
    }
}
