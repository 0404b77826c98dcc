// swift-tools-version: 6.1
// The fan-out of docs/benchmarks.md's "Gateway on Hummingbird WebSocket?" comparison: just
// enough SocketCluster (handshake, #subscribe, #publish fanned out to subscribers) on
// HummingbirdWebSocket, each subscriber writing from its own task, in memory (no log). Not
// part of Sluice's build; run it and point `sluice bench gateway --url` at it.
import PackageDescription

let package = Package(
    name: "HBFanout",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
    ],
    targets: [
        .executableTarget(name: "HBFanout", dependencies: [
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
