// swift-tools-version: 6.2
import PackageDescription

let strictSwift: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "switchboard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "switchboard", targets: ["SwitchboardCLI"]),
        .library(name: "Switchboard", targets: ["Switchboard"]),
        .library(name: "SwitchboardNIO", targets: ["SwitchboardNIO"]),
        .executable(name: "switchboard-nio-example", targets: ["NIOExample"]),
        .library(name: "SwitchboardHummingbird", targets: ["SwitchboardHummingbird"]),
        .executable(name: "switchboard-hummingbird-example", targets: ["HummingbirdExample"]),
        .library(name: "SwitchboardVapor", targets: ["SwitchboardVapor"]),
        .executable(name: "switchboard-vapor-example", targets: ["VaporExample"]),
    ],
    traits: [
        .trait(
            name: "Hummingbird",
            description: "Builds SwitchboardHummingbird, switchboard-hummingbird-example and their tests."),
        .trait(
            name: "Vapor",
            description: "Builds SwitchboardVapor, switchboard-vapor-example and their tests."),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/vapor/vapor.git", from: "4.122.3"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
    ],
    targets: [
        .target(
            name: "CSwitchboardLinux",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .systemLibrary(
            name: "CSwitchboardSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .target(
            name: "Switchboard",
            dependencies: [
                "CSwitchboardLinux",
                "CSwitchboardSystemd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSwift + [.strictMemorySafety()]
        ),
        .target(
            name: "SwitchboardNIO",
            dependencies: [
                "Switchboard",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SwitchboardHTTP1",
            dependencies: [
                "Switchboard",
                "CSwitchboardLinux",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "SwitchboardCLI",
            dependencies: [
                "Switchboard",
                "SwitchboardHTTP1",
                "SwitchboardNIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "NIOExample",
            dependencies: [
                "Switchboard",
                "SwitchboardNIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SwitchboardTests",
            dependencies: ["Switchboard", "CSwitchboardLinux", "SwitchboardTestSupport", "SwitchboardSimulation"],
            swiftSettings: strictSwift
        ),
        // The deterministic simulation of the core, and its release-built runner (`Scripts/test.sh` runs 100,000
        // schedules with it, `Scripts/simulate.sh` millions). Not products: nothing outside this package uses them.
        .target(
            name: "SwitchboardSimulation",
            dependencies: ["Switchboard"],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "SwitchboardSimulator",
            dependencies: ["SwitchboardSimulation"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SwitchboardSimulationTests",
            dependencies: ["Switchboard", "SwitchboardSimulation", "SwitchboardTestSupport"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SwitchboardHTTP1Tests",
            dependencies: ["SwitchboardHTTP1", "Switchboard", "SwitchboardSimulation"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SwitchboardNIOTests",
            dependencies: [
                "Switchboard",
                "SwitchboardNIO",
                "CSwitchboardLinux",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SwitchboardAPITests",
            dependencies: [
                "Switchboard",
                "SwitchboardNIO",
                "SwitchboardTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SwitchboardTestSupport",
            dependencies: ["CSwitchboardLinux"],
            path: "Tests/SwitchboardTestSupport",
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SwitchboardEndToEndTests",
            dependencies: ["Switchboard", "SwitchboardTestSupport"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SwitchboardHummingbird",
            dependencies: [
                "Switchboard",
                "SwitchboardNIO",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "HummingbirdCore", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "HummingbirdExample",
            dependencies: [
                "SwitchboardHummingbird",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "HummingbirdHTTP2", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "HummingbirdCore", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SwitchboardHummingbirdTests",
            dependencies: [
                "SwitchboardHummingbird", "CSwitchboardLinux", "SwitchboardTestSupport",
                .product(name: "HummingbirdCore", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "HummingbirdTLS", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "HummingbirdHTTP2", package: "hummingbird", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["Hummingbird"])),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSwift
        ),
        // Vapor (the `Vapor` trait): every target below compiles to nothing without it (`#if Vapor`).
        .target(
            name: "SwitchboardVapor",
            dependencies: [
                "Switchboard",
                "SwitchboardNIO",
                .product(name: "Vapor", package: "vapor", condition: .when(traits: ["Vapor"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio", condition: .when(traits: ["Vapor"])),
                .product(name: "NIOHTTP2", package: "swift-nio-http2", condition: .when(traits: ["Vapor"])),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["Vapor"])),
                .product(name: "NIOTLS", package: "swift-nio", condition: .when(traits: ["Vapor"])),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "VaporExample",
            dependencies: [
                "SwitchboardVapor",
                .product(name: "Vapor", package: "vapor", condition: .when(traits: ["Vapor"])),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: .when(traits: ["Vapor"])),
            ],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SwitchboardVaporTests",
            dependencies: [
                "SwitchboardVapor", "CSwitchboardLinux", "SwitchboardTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSwift
        ),
    ]
)
