// The SocketCluster wire format, frame by frame, with the packets real clients send
// (socketcluster-client 15–20, the v14 client, and the PyPI clients) and the frames they
// expect back (docs/socketcluster-protocol.md).
import SluiceComponents
import SluiceGateway
import Testing

@Suite struct SocketClusterCodecTests {
    func decode(_ text: String) -> [SCPacket] { SCDecoder.decode(Array(text.utf8)) }
    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func pingsAndPongsInBothProtocolStyles() {
        #expect(decode("") == [.pong], "protocol 2: an empty frame")
        #expect(decode("#2") == [.pong], "protocol 1")
        #expect(decode("#1") == [.ping])
        #expect(SCPingStyle.v2.ping == "" && SCPingStyle.v1.ping == "#1")
    }

    @Test func eventsAreInvokesWithACidAndTransmitsWithout() {
        #expect(decode(##"{"event":"#handshake","data":{"authToken":null},"cid":7}"##)
            == [.event(SCEvent(name: "#handshake", data: bytes(##"{"authToken":null}"##), cid: 7))])
        #expect(decode(##"{"event":"#unsubscribe","data":"room-1"}"##) == [.event(SCEvent(name: "#unsubscribe", data: bytes(##""room-1""##), cid: nil))])
        // Keys in any order, whitespace kept out of the data's text, no data at all.
        #expect(decode(##" { "cid" : 3 , "event" : "ping-me" } "##) == [.event(SCEvent(name: "ping-me", data: nil, cid: 3))])
        #expect(decode(##"{"event":"#removeAuthToken"}"##) == [.event(SCEvent(name: "#removeAuthToken", data: nil, cid: nil))])
        // A cid that is not a whole number is no cid.
        #expect(decode(##"{"event":"e","cid":"1"}"##) == [.event(SCEvent(name: "e", data: nil, cid: nil))])
        #expect(decode(##"{"event":"e","cid":2.0}"##) == [.event(SCEvent(name: "e", data: nil, cid: 2))])
    }

    @Test func responsesCarryDataOrAnError() {
        #expect(decode(##"{"rid":4,"data":{"ok":true}}"##) == [.response(rid: 4, data: bytes(##"{"ok":true}"##), error: nil)])
        #expect(decode(##"{"rid":5,"error":{"name":"E","message":"no"}}"##) == [.response(rid: 5, data: nil, error: bytes(##"{"name":"E","message":"no"}"##))])
        // The Python client acknowledges with "error":null: that is no error.
        #expect(decode(##"{"rid":6,"error":null}"##) == [.response(rid: 6, data: nil, error: nil)])
    }

    @Test func anythingElseIsRaw() {
        for text in ["hello", "{not json", ##"{"foo":1}"##, ##"{"event":5}"##, "42", ##""str""##, ##"{"rid":"x"}"##] {
            #expect(decode(text) == [.raw(bytes(text))], "\(text)")
        }
    }

    @Test func aBatchIsAnArrayOfPackets() {
        let frame = ##"[{"event":"#publish","data":{"channel":"a","data":[1,{"x":"],"}]}}, {"rid":2} ,"text",[]]"##
        #expect(decode(frame) == [
            .event(SCEvent(name: "#publish", data: bytes(##"{"channel":"a","data":[1,{"x":"],"}]}"##), cid: nil)),
            .response(rid: 2, data: nil, error: nil),
            .raw(bytes(##""text""##)),
            .raw(bytes("[]")),
        ])
        #expect(decode("[]") == [])
        #expect(decode("[1,2") == [.raw(bytes("[1,2"))], "an unterminated array is not JSON")
    }

    @Test func reservedEventDataIsReadFromTheBytesSent() {
        #expect(SCData.handshakeToken(bytes(##"{"authToken":"abc.def.ghi"}"##)) == "abc.def.ghi")
        #expect(SCData.handshakeToken(bytes(##"{"authToken":null}"##)) == nil)
        #expect(SCData.string(bytes(##""room\u002d1""##)) == "room-1")
        #expect(SCData.string(bytes(##"{"channel":"x"}"##)) == nil)
        #expect(SCData.subscription(bytes(##"{"channel":"room","waitForAuth":true,"data":{"from":3}}"##))! == ("room", true))
        #expect(SCData.subscription(bytes(##"{"channel":"room"}"##))! == ("room", false))
        #expect(SCData.subscription(bytes(##"{"channel":5}"##)) == nil)
        // A publication keeps the message's own text, spaces and all.
        let p = SCData.publication(bytes(##"{"channel":"room","data":{ "text" : "hi \"you\"", "n": 1e3 }}"##))
        #expect(p?.channel == "room" && p?.message == bytes(##"{ "text" : "hi \"you\"", "n": 1e3 }"##))
        #expect(SCData.publication(bytes(##"{"channel":"room"}"##))?.message == bytes("null"))
        #expect(SCData.publication(bytes(##"{"data":1}"##)) == nil)
    }

    @Test func serverFramesAreWhatClientsParse() throws {
        let handshake = SCEncoder.handshake(rid: 1, socketId: "s-1", pingTimeoutMs: 20_000, isAuthenticated: false)
        #expect(String(decoding: handshake, as: UTF8.self) == ##"{"rid":1,"data":{"id":"s-1","pingTimeout":20000,"isAuthenticated":false}}"##)
        let withError = SCEncoder.handshake(rid: 2, socketId: "s", pingTimeoutMs: 5, isAuthenticated: false,
                                            authError: SCError(name: "AuthTokenExpiredError", message: "jwt expired", extra: [("isBadToken", bytes("true"))]))
        let parsed = try JSON.parse(withError)
        #expect(parsed["data"]?["authError"]?["name"] == .string("AuthTokenExpiredError"))
        #expect(parsed["data"]?["authError"]?["isBadToken"] == .bool(true))
        #expect(String(decoding: SCEncoder.response(rid: 9), as: UTF8.self) == ##"{"rid":9}"##)
        let rejected = SCEncoder.error(rid: 3, SCError(name: "HandshakeError", message: "no \"entry\"", extra: [("statusCode", bytes("4008"))]), data: bytes(##"{"code":4008}"##))
        #expect(try JSON.parse(rejected) == JSON.parse(##"{"rid":3,"error":{"name":"HandshakeError","message":"no \"entry\"","statusCode":4008},"data":{"code":4008}}"##))
        // A delivery splices the message's own bytes in.
        let delivery = SCEncoder.publish(channel: "room \"1\"", message: bytes(##"{ "text":"hi" }"##))
        #expect(String(decoding: delivery, as: UTF8.self) == ##"{"event":"#publish","data":{"channel":"room \"1\"","data":{ "text":"hi" }}}"##)
        #expect(SCDecoder.decode(delivery) == [.event(SCEvent(name: "#publish", data: bytes(##"{"channel":"room \"1\"","data":{ "text":"hi" }}"##), cid: nil))])
        #expect(try JSON.parse(SCEncoder.kickOut(channel: "c", message: "bye")) == JSON.parse(##"{"event":"#kickOut","data":{"channel":"c","message":"bye"}}"##))
        #expect(try JSON.parse(SCEncoder.setAuthToken("t.o.k")) == JSON.parse(##"{"event":"#setAuthToken","data":{"token":"t.o.k"}}"##))
        #expect(String(decoding: SCEncoder.removeAuthToken, as: UTF8.self) == ##"{"event":"#removeAuthToken"}"##)
        #expect(String(decoding: SCEncoder.event("custom", data: bytes("[1]"), cid: 4), as: UTF8.self) == ##"{"event":"custom","data":[1],"cid":4}"##)
    }
}
