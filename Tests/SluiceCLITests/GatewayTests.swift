// The SocketCluster gateway (`sluice serve --ws`) with real clients in their own processes:
// PyPI's socketclusterclient, and a raw WebSocket client (websockets) for protocol edge
// cases, hostile input and resuming from the log — each with the versions scripts/test pins
// and with the newest pip serves.
import Foundation
import Testing

/// The Python environments scripts/test makes for the gateway's clients.
enum GatewayClients: String, CaseIterable, Sendable {
    case pinned, newest

    func python() throws -> String {
        let variable = self == .pinned ? "SLUICE_SC_PINNED_PYTHON" : "SLUICE_SC_NEWEST_PYTHON"
        let path = ProcessInfo.processInfo.environment[variable] ?? PipelineCLITests.repo + "/.build/sc-\(rawValue)/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw InteropSetupError(description: "no Python with the gateway's clients at \(path); scripts/test creates it (a venv with socketclusterclient and websockets)")
        }
        return path
    }
}

/// Starts `sluice serve` with a gateway on a free port; returns the process and the ws:// URL.
func startGateway(data: String, _ extra: [String] = []) throws -> (LiveProcess, String, Int) {
    let p = try LiveProcess(["serve", "--kafka", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--data", data, "--log-level", "info"] + extra)
    let deadline = Date().addingTimeInterval(20)
    // The parts start together: wait for both lines, in whichever order they come.
    while !(p.stderrText.contains("WebSocket gateway on") && p.stderrText.contains("Kafka listener on")), Date() < deadline { usleep(20_000) }
    let port = p.stderrText.firstMatch(of: /WebSocket gateway on ws:\/\/127\.0\.0\.1:(\d+)/).flatMap { Int($0.1) }
    #expect(port != nil, "\(p.stderrText)")
    return (p, "ws://127.0.0.1:\(port ?? 0)/socketcluster/", port ?? 0)
}

@Suite(.serialized) struct GatewayTests {
    let scratch = Scratch()

    @discardableResult
    func sh(_ command: String) throws -> (status: Int32, output: String) {
        let r = try Sluice.run(["-c", command + " 2>&1"], binary: "/bin/sh")
        return (r.status, r.stdout)
    }

    func stop(_ p: LiveProcess, sourceLocation: SourceLocation = #_sourceLocation) {
        kill(p.process.processIdentifier, SIGTERM)
        p.process.waitUntilExit()
        #expect(p.process.terminationStatus == 0, "exit \(p.process.terminationStatus): \(p.stderrText.suffix(2000))", sourceLocation: sourceLocation)
    }

    func script(_ name: String) -> String { PipelineCLITests.repo + "/scripts/gateway/" + name }

    @Test(arguments: GatewayClients.allCases)
    func socketclusterclientSubscribesPublishesAndReceivesOnlyItsRoom(clients: GatewayClients) throws {
        let (server, url, _) = try startGateway(data: scratch.path + "/data-\(clients)")
        defer { stop(server) }
        let r = try sh("timeout 60 \(try clients.python()) \(script("sc_client_check.py")) \(url)")
        #expect(r.status == 0, "\(r.output)\n\(server.stderrText.suffix(2000))")
        for line in ["ok handshake and subscribe acknowledged for both sockets", "ok publish acknowledged without an error",
                     "ok each socket received only its own room's message, once", "ok an unhandled custom invoke gets InvalidActionError"] {
            #expect(r.output.contains(line), "\(r.output)")
        }
    }

    @Test(arguments: GatewayClients.allCases)
    func hostileInputGetsAnErrorOrACloseCodeAndOtherSocketsCarryOn(clients: GatewayClients) throws {
        let key = scratch.path + "/hs256-\(clients).key"
        try "a-test-key-\(UUID().uuidString)\n".write(toFile: key, atomically: true, encoding: .utf8)
        let login = HTTPSourceTests.freePort()
        let (server, url, port) = try startGateway(data: scratch.path + "/data-\(clients)", [
            "--ws-auth-key", key, "--ws-login", "http://127.0.0.1:\(login)/login",
            "--ws-rule", "private.* subscribe=claim:role=admin publish=claim:role=admin",
            "--ws-rule", "readonly.* publish=nobody",
            "--ws-max-frame", "64KiB", "--ws-max-message", "8KiB", "--ws-rate", "200",
            "--ws-ping-interval", "1s", "--ws-ping-timeout", "3s", "--ws-handshake-timeout", "2s",
        ])
        defer { stop(server) }
        let r = try sh("timeout 120 \(try clients.python()) \(script("ws_edge_check.py")) \(url) \(key) \(login)")
        #expect(r.status == 0, "\(r.output)\n\(server.stderrText.suffix(2000))")
        for line in ["ok an unknown invoke: InvalidActionError", "ok a forged token: handshake unauthenticated with AuthTokenInvalidError",
                     "ok an expired token: AuthTokenExpiredError", "ok #authenticate with a good token opens the claim-guarded channel",
                     "ok the login hook: refused credentials get LoginError; accepted ones a signed token",
                     "ok malformed JSON: closed with 1007", "ok a 100 KiB frame: closed with 1009", "closed with 4001",
                     "then closed with 4429", "ok the bystander received every message through all of it"] {
            #expect(r.output.contains(line), "\(r.output)")
        }
        #expect(r.output.contains("ok presence over HTTP"), "\(r.output)")
        // The server logged each peer it closed, by address.
        #expect(server.stderrText.contains("gateway: closing 127.0.0.1") && server.stderrText.contains("invalid JSON"), "\(server.stderrText.suffix(2000))")
        _ = port
    }

    @Test func aMessagePublishedThroughOneGatewayProcessReachesSubscribersOfAnother() throws {
        let (a, urlA, _) = try startGateway(data: scratch.path + "/owner")
        defer { stop(a) }
        let kafka = a.stderrText.firstMatch(of: /Kafka listener on 127\.0\.0\.1:(\d+)/).flatMap { Int($0.1) } ?? 0
        let b = try LiveProcess(["serve", "--broker", "kafka://127.0.0.1:\(kafka)", "--ws", "127.0.0.1:0", "--log-level", "info"])
        defer { stop(b) }
        let deadline = Date().addingTimeInterval(30)
        while !b.stderrText.contains("WebSocket gateway on"), Date() < deadline { usleep(20_000) }
        let portB = b.stderrText.firstMatch(of: /WebSocket gateway on ws:\/\/127\.0\.0\.1:(\d+)/).flatMap { Int($0.1) }
        #expect(portB != nil && b.stderrText.contains("on kafka://127.0.0.1:\(kafka)"), "\(b.stderrText)")
        let r = try sh("timeout 180 \(try GatewayClients.newest.python()) \(script("cross_process_check.py")) \(urlA) ws://127.0.0.1:\(portB ?? 0)/socketcluster/")
        #expect(r.status == 0, "\(r.output)\nA: \(a.stderrText.suffix(1500))\nB: \(b.stderrText.suffix(1500))")
        for line in ["ok published through B, subscribed on A: 100 messages in order", "ok published through A, subscribed on B: 100 messages in order",
                     "ok a subscriber of B resumed the 200 messages published through A while it was away, then live"] {
            #expect(r.output.contains(line), "\(r.output)")
        }
    }

    @Test func aGatewayOnAKafkaBrokerRefusesWhatOnlyTheEmbeddedBrokerServes() throws {
        let noWs = try Sluice.run(["serve", "--broker", "kafka://127.0.0.1:1"])
        #expect(noWs.status == 1 && noWs.stderr.contains("needs --ws HOST:PORT"), "\(noWs.stderr)")
        let rule = try Sluice.run(["serve", "--ws", "127.0.0.1:0", "--ws-rule", "room.* publish=sometimes", "--data", scratch.path + "/refused"])
        #expect(rule.status == 1 && rule.stderr.contains("'sometimes' is not anyone, authenticated, nobody or claim:NAME=VALUE"), "\(rule.stderr)")
    }

    @Test func theChatExampleKeepsRoomsApartInARealBrowser() throws {
        let repo = PipelineCLITests.repo
        let (server, _, port) = try startGateway(data: scratch.path + "/chat", [
            "--ws-static", repo + "/pipelines/chat-web",
            "--ws-rule", "room.* subscribe=anyone publish=nobody", "--ws-rule", "inbox.* subscribe=nobody publish=anyone",
            repo + "/pipelines/chat.yaml",
        ])
        defer { stop(server) }
        let shot = scratch.path + "/chat.png"
        let r = try sh("timeout 120 \(try GatewayClients.newest.python()) \(script("browser_check.py")) http://127.0.0.1:\(port) \(shot)")
        #expect(r.status == 0, "\(r.output)\n\(server.stderrText.suffix(2000))")
        #expect(r.output.contains(#"ok messages appear only in their own room: {"ann": ["ann: hello-red", "cat: hi-from-cat"], "bob": ["bob: hello-blue"], "cat": ["ann: hello-red", "cat: hi-from-cat"]}"#), "\(r.output)")
        let png = FileManager.default.contents(atPath: shot) ?? Data()
        #expect(png.count > 5_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "screenshot of \(png.count) bytes")
    }

    @Test func underDropOldestASlowSubscriberStaysAndGetsTheNewestMessages() throws {
        let (server, url, _) = try startGateway(data: scratch.path + "/drop", ["--ws-slow", "drop-oldest", "--ws-buffer", "64KiB", "--ws-rate", "5000"])
        defer { stop(server) }
        let r = try sh("timeout 120 \(try GatewayClients.newest.python()) \(script("drop_oldest_check.py")) \(url)")
        #expect(r.status == 0 && r.output.contains("ok drop-oldest: the slow subscriber stayed connected"), "\(r.output)\n\(server.stderrText.suffix(2000))")
    }

    @Test func sigtermStopsPipelinesThenTheGatewayThenTheListenerThenTheBroker() throws {
        let (server, url, _) = try startGateway(data: scratch.path + "/lifecycle", [PipelineCLITests.repo + "/pipelines/chat.yaml"])
        let out = scratch.path + "/holder.out"
        let holder = try LiveProcess(["-c", "exec \(try GatewayClients.newest.python()) \(script("hold_socket.py")) \(url) > \(out) 2>&1"], executable: "/bin/sh")
        var deadline = Date().addingTimeInterval(20)
        func held() -> String { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
        while !(server.stderrText.contains("group chat is stable") && held().contains("holding")), Date() < deadline { usleep(20_000) }
        #expect(held().contains("holding"), "\(held())")
        kill(server.process.processIdentifier, SIGTERM)
        server.process.waitUntilExit()
        #expect(server.process.terminationStatus == 0, "\(server.stderrText.suffix(2000))")
        deadline = Date().addingTimeInterval(10)
        while holder.process.isRunning, Date() < deadline { usleep(20_000) }
        let log = server.stderrText
        let order = ["serve: the pipelines stopped", "gateway: closed 1 socket with 1001", "serve: the gateway closed its sockets and its port",
                     "serve: the Kafka listener stopped", "serve: the broker closed its logs"]
        let positions = order.map { log.range(of: $0)?.lowerBound }
        #expect(positions.allSatisfy { $0 != nil } && zip(positions, positions.dropFirst()).allSatisfy { $0! < $1! }, "\(log.suffix(2000))")
        // The client read its close frame: 1001, with the reason.
        #expect(holder.process.terminationStatus == 0 && held().contains("closed 1001 the server is shutting down"), "\(held())")
    }

    @Test func aSubscriberResumesFromItsLastOffsetWithoutGapsOrDuplicates() throws {
        let (server, url, _) = try startGateway(data: scratch.path + "/data", ["--ws-buffer", "64KiB", "--ws-rate", "5000"])
        defer { stop(server) }
        let r = try sh("timeout 180 \(try GatewayClients.newest.python()) \(script("resume_check.py")) \(url)")
        #expect(r.status == 0, "\(r.output)\n\(server.stderrText.suffix(2000))")
        #expect(r.output.contains("ok resumed: exactly the 1,000 messages published while away, in order, then the live one"), "\(r.output)")
        #expect(r.output.contains("3,002 messages, each once, in order"), "\(r.output)")
        #expect(r.output.contains("was closed with 4100 after"), "\(r.output)")
    }
}
