// swift-tools-version: 6.1
// Sluice: an embedded partitioned broker, pipeline runtime and realtime gateway in one binary.
import PackageDescription

let package = Package(
    name: "Sluice",
    // Linux only: the log and the CLI call Glibc directly (fdatasync, pread, posix_spawn) and
    // read /proc; Sources/SluiceLog/Platform.swift stops a build elsewhere with that sentence.
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "SluiceLog", targets: ["SluiceLog"]),
        .library(name: "SluiceBroker", targets: ["SluiceBroker"]),
    ],
    // RdKafka: the librdkafka broker client (`broker: kafka://…`), which needs Debian's
    // librdkafka-dev. Off by default, so the embedded broker builds without it; scripts/test
    // builds with `--traits RdKafka`.
    traits: [
        .trait(name: "RdKafka", description: "Run pipelines against Kafka clusters through librdkafka (needs librdkafka-dev)."),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swiftwasm/WasmKit.git", exact: "0.4.2"),
    ],
    targets: [
        // CRC32C (Castagnoli) with the SSE4.2 / ARMv8 CRC instructions when the CPU has them.
        .target(name: "CSluiceCRC"),
        // The executable's malloc/calloc/realloc, counted, for allocations per record in
        // `sluice bench`. Only the executable links it.
        .target(name: "CSluiceAllocCount"),
        .target(
            name: "SluiceLog",
            dependencies: [
                "CSluiceCRC",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "SluiceBroker",
            dependencies: [
                "SluiceLog",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The component API: records and batches, the Source/Transform/Sink protocols, field
        // specs, the registry, values and the expression language. No broker, no NIO.
        .target(
            name: "SluiceComponents",
            dependencies: ["SluiceLog"]
        ),
        .target(
            name: "SluiceRuntime",
            dependencies: [
                "SluiceComponents",
                "SluiceBroker",
                "SluiceLog",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "WasmKit", package: "WasmKit"),
                .product(name: "WAT", package: "WasmKit"),
            ]
        ),
        // librdkafka's header (when installed) and a helper for its variadic produce call.
        .target(
            name: "CRdKafka",
            linkerSettings: [.linkedLibrary("rdkafka", .when(traits: ["RdKafka"]))]
        ),
        // The BrokerClient over librdkafka; empty unless built with the RdKafka trait.
        .target(
            name: "SluiceRdKafka",
            dependencies: [
                "CRdKafka",
                "SluiceComponents",
                "SluiceRuntime",
                "SluiceGateway",
                "SluiceKafkaWire",
                "SluiceBroker",
                "SluiceLog",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "SluiceKafkaWire",
            dependencies: [
                "SluiceBroker",
                "SluiceLog",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // The realtime channel gateway: the SocketCluster protocol over WebSocket, channels on
        // the log (docs/socketcluster-protocol.md).
        .target(
            name: "SluiceGateway",
            dependencies: [
                "SluiceComponents",
                "SluiceBroker",
                "SluiceLog",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "CSluiceAllocCount",
                "SluiceLog",
                "SluiceBroker",
                "SluiceRuntime",
                "SluiceKafkaWire",
                "SluiceGateway",
                .target(name: "SluiceRdKafka", condition: .when(traits: ["RdKafka"])),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .testTarget(
            name: "SluiceLogTests",
            dependencies: [
                "SluiceLog",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "SluiceRuntimeTests",
            dependencies: [
                "SluiceRuntime",
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "SluiceBrokerTests",
            dependencies: ["SluiceBroker", "SluiceLog", .product(name: "PropertyBased", package: "swift-property-based")]
        ),
        .testTarget(
            name: "SluiceKafkaWireTests",
            dependencies: ["SluiceKafkaWire", "SluiceBroker", "SluiceLog", .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio")],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "SluiceGatewayTests",
            dependencies: ["SluiceGateway", "SluiceComponents", .product(name: "_CryptoExtras", package: "swift-crypto")]
        ),
        .testTarget(
            name: "SluiceCLITests",
            dependencies: ["SluiceLog", "SluiceBroker"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
