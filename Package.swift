// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "chatsync",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ChatSync", targets: ["ChatSync"]),
        .library(name: "GitKit", targets: ["GitKit"]),
        .library(name: "ChatSyncServer", targets: ["ChatSyncServer"]),
        .executable(name: "chatsync", targets: ["chatsync"]),
        .executable(name: "chatsync-bench", targets: ["chatsync-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
    ],
    targets: [
        // Debian's libgit2 (apt: libgit2-dev, pkg-config: libgit2).
        .systemLibrary(
            name: "CLibgit2",
            pkgConfig: "libgit2",
            providers: [.apt(["libgit2-dev"])]
        ),
        // SHA-1 with the processor's SHA instructions where it has them, else plain C.
        .target(name: "CSHA1"),
        // A thin, safe Swift wrapper over libgit2. Knows nothing of chats.
        .target(name: "GitKit", dependencies: ["CLibgit2", "CSHA1"]),
        // Documents, the store (documents in git) and the apps' services.
        .target(name: "ChatSync", dependencies: ["GitKit"]),
        // The HTTP server (Hummingbird 2): routes by resource over the same library, change feed.
        .target(
            name: "ChatSyncServer",
            dependencies: [
                "ChatSync",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "chatsync",
            dependencies: [
                "ChatSync", "GitKit", "ChatSyncServer",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // SQLite, only as the benchmark's baseline (apt: libsqlite3-dev).
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .executableTarget(name: "chatsync-bench", dependencies: ["ChatSync", "GitKit", "ChatSyncServer", "CSQLite"]),
        .testTarget(name: "GitKitTests", dependencies: ["GitKit", "CSHA1"]),
        .testTarget(name: "ChatSyncTests", dependencies: ["ChatSync", "GitKit"]),
        // Depends on the executable so that `swift test` builds it; the tests run the binary.
        .testTarget(name: "CLITests", dependencies: ["ChatSync", "chatsync"]),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "ChatSyncServer", "ChatSync", "chatsync",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdWSTesting", package: "hummingbird-websocket"),
            ]
        ),
    ]
)
