// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "chatsync",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ChatSync", targets: ["ChatSync"]),
        .library(name: "GitKit", targets: ["GitKit"]),
        .executable(name: "chatsync", targets: ["chatsync"]),
        .executable(name: "chatsync-bench", targets: ["chatsync-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Debian's libgit2 (apt: libgit2-dev, pkg-config: libgit2).
        .systemLibrary(
            name: "CLibgit2",
            pkgConfig: "libgit2",
            providers: [.apt(["libgit2-dev"])]
        ),
        // A thin, safe Swift wrapper over libgit2. Knows nothing of chats.
        .target(name: "GitKit", dependencies: ["CLibgit2"]),
        // Documents, the store (documents in git) and the apps' services.
        .target(name: "ChatSync", dependencies: ["GitKit"]),
        .executableTarget(
            name: "chatsync",
            dependencies: [
                "ChatSync", "GitKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "chatsync-bench", dependencies: ["ChatSync", "GitKit"]),
        .testTarget(name: "GitKitTests", dependencies: ["GitKit"]),
        .testTarget(name: "ChatSyncTests", dependencies: ["ChatSync", "GitKit"]),
        // Depends on the executable so that `swift test` builds it; the tests run the binary.
        .testTarget(name: "CLITests", dependencies: ["ChatSync", "chatsync"]),
    ]
)
