/// What a worker allows each client connection: the protections that Node, nginx and Puma ship by default.
///
/// The master hands these to every worker (built-in, SwiftNIO or Hummingbird) through its environment, so one
/// ``Configuration`` sets them for all; a worker reads them from ``WorkerRuntime/limits``.
public struct ConnectionLimits: Sendable, Equatable {
    /// From a connection's arrival (or the end of the previous response) to the end of the request head. Past it
    /// the worker answers 408 when part of a request arrived, and closes quietly otherwise. The same time without
    /// progress ends a request body. Default 30 s: Puma's `first_data_timeout`, half of Node's `headersTimeout` and
    /// nginx's `client_header_timeout` (60 s); a head that takes longer on a working network is an attack or a dead
    /// client, and each one holds a descriptor.
    public var headerTimeout: Duration = .seconds(30)
    /// An idle keep-alive connection is closed after this. Default 75 s (nginx): longer than the 60 s idle timeout
    /// of common load balancers, so a balancer never reuses a connection the worker is closing (the race behind
    /// Node's 5 s default and its 502s).
    public var keepAliveTimeout: Duration = .seconds(75)
    /// A client that takes no byte of its response for this long is cut. Default 60 s (nginx's `send_timeout`).
    public var sendTimeout: Duration = .seconds(60)
    /// The most connections one worker holds at once; nil, or more than its descriptors allow: the worker's
    /// descriptor limit less ``reservedDescriptors``, so a worker never runs out of descriptors for the connections
    /// it is given. A worker at its cap takes no new connections: the master skips it, and when every worker is full
    /// the kernel's backlog holds the rest.
    public var maxConnections: Int?

    /// Descriptors a worker keeps for itself (its channel, epoll, logs, files) when ``maxConnections`` is nil.
    public static let reservedDescriptors = 64

    /// Creates the default limits.
    public init() {}

    /// The connection cap in effect for a worker whose soft descriptor limit is `descriptorLimit`.
    /// - Parameter descriptorLimit: The soft `RLIMIT_NOFILE` (`UInt64.max` for unlimited).
    /// - Returns: The descriptor limit less ``reservedDescriptors`` (at least 1), or ``maxConnections`` when set
    ///   and lower.
    public func effectiveMaxConnections(descriptorLimit: UInt64) -> Int {
        let available = descriptorLimit > UInt64(Int.max) ? Int.max : Int(descriptorLimit)
        let fits = max(1, available - Self.reservedDescriptors)
        return min(maxConnections ?? fits, fits)
    }

    /// Checks every value.
    /// - Throws: ``SwitchboardError`` with code `.usage` naming the flag to fix.
    public func validate() throws(SwitchboardError) {
        for (flag, value) in [
            ("--header-timeout", headerTimeout), ("--keepalive-timeout", keepAliveTimeout),
            ("--send-timeout", sendTimeout),
        ] where value < .milliseconds(1) {
            throw SwitchboardError(.usage, "\(flag) must be more than 0 seconds")
        }
        if let maxConnections, maxConnections < 1 {
            throw SwitchboardError(
                .usage, "--max-connections must be at least 1 (got \(maxConnections)), or 0 for the descriptor limit")
        }
    }

    /// The environment entries that carry these limits to a worker.
    package var environment: [String] {
        [
            "SWITCHBOARD_HEADER_TIMEOUT_MS=\(headerTimeout.milliseconds)",
            "SWITCHBOARD_KEEPALIVE_TIMEOUT_MS=\(keepAliveTimeout.milliseconds)",
            "SWITCHBOARD_SEND_TIMEOUT_MS=\(sendTimeout.milliseconds)",
            "SWITCHBOARD_MAX_CONNECTIONS=\(maxConnections ?? 0)",
        ]
    }

    package static let environmentNames = [
        "SWITCHBOARD_HEADER_TIMEOUT_MS", "SWITCHBOARD_KEEPALIVE_TIMEOUT_MS", "SWITCHBOARD_SEND_TIMEOUT_MS",
        "SWITCHBOARD_MAX_CONNECTIONS",
    ]

    /// The limits a worker's environment carries (defaults for what is missing).
    package static func fromEnvironment() -> ConnectionLimits {
        var limits = ConnectionLimits()
        func milliseconds(_ name: String) -> Duration? {
            Syscalls.environment(name).flatMap { Int64($0) }.flatMap { $0 > 0 ? .milliseconds($0) : nil }
        }
        if let value = milliseconds("SWITCHBOARD_HEADER_TIMEOUT_MS") { limits.headerTimeout = value }
        if let value = milliseconds("SWITCHBOARD_KEEPALIVE_TIMEOUT_MS") { limits.keepAliveTimeout = value }
        if let value = milliseconds("SWITCHBOARD_SEND_TIMEOUT_MS") { limits.sendTimeout = value }
        if let value = Syscalls.environment("SWITCHBOARD_MAX_CONNECTIONS").flatMap({ Int($0) }), value > 0 {
            limits.maxConnections = value
        }
        return limits
    }
}
