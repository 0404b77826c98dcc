// The generated message types (Sources/SluiceKafkaWire/Messages, from Kafka's message
// definitions) against the captured client requests: each decodes to its last field, and
// encoding the decoded value gives back the client's exact bytes.
import Foundation
import SluiceKafkaWire
import Testing

@Suite struct GeneratedCodecTests {
    /// Decodes `body` as `T` at `version`; returns the bytes read and the value encoded again.
    static func roundTrip<T: KafkaMessage>(_: T.Type, _ body: KafkaReader, _ version: Int16) throws -> (read: Int, again: [UInt8]) {
        var r = body
        let start = r.position
        let value = try T(from: &r, version: version)
        var w = KafkaWriter()
        value.encode(to: &w, version: version)
        return (r.position - start, w.bytes)
    }

    static func roundTrip(_ api: ApiKey, _ body: KafkaReader, _ version: Int16) throws -> (read: Int, again: [UInt8]) {
        switch api {
        case .produce: try roundTrip(ProduceRequest.self, body, version)
        case .fetch: try roundTrip(FetchRequest.self, body, version)
        case .listOffsets: try roundTrip(ListOffsetsRequest.self, body, version)
        case .metadata: try roundTrip(MetadataRequest.self, body, version)
        case .offsetCommit: try roundTrip(OffsetCommitRequest.self, body, version)
        case .offsetFetch: try roundTrip(OffsetFetchRequest.self, body, version)
        case .findCoordinator: try roundTrip(FindCoordinatorRequest.self, body, version)
        case .joinGroup: try roundTrip(JoinGroupRequest.self, body, version)
        case .heartbeat: try roundTrip(HeartbeatRequest.self, body, version)
        case .leaveGroup: try roundTrip(LeaveGroupRequest.self, body, version)
        case .syncGroup: try roundTrip(SyncGroupRequest.self, body, version)
        case .describeGroups: try roundTrip(DescribeGroupsRequest.self, body, version)
        case .listGroups: try roundTrip(ListGroupsRequest.self, body, version)
        case .saslHandshake: try roundTrip(SaslHandshakeRequest.self, body, version)
        case .apiVersions: try roundTrip(ApiVersionsRequest.self, body, version)
        case .createTopics: try roundTrip(CreateTopicsRequest.self, body, version)
        case .deleteTopics: try roundTrip(DeleteTopicsRequest.self, body, version)
        case .initProducerId: try roundTrip(InitProducerIdRequest.self, body, version)
        case .addPartitionsToTxn: try roundTrip(AddPartitionsToTxnRequest.self, body, version)
        case .addOffsetsToTxn: try roundTrip(AddOffsetsToTxnRequest.self, body, version)
        case .endTxn: try roundTrip(EndTxnRequest.self, body, version)
        case .txnOffsetCommit: try roundTrip(TxnOffsetCommitRequest.self, body, version)
        case .describeConfigs: try roundTrip(DescribeConfigsRequest.self, body, version)
        case .saslAuthenticate: try roundTrip(SaslAuthenticateRequest.self, body, version)
        case .createPartitions: try roundTrip(CreatePartitionsRequest.self, body, version)
        case .deleteGroups: try roundTrip(DeleteGroupsRequest.self, body, version)
        }
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
