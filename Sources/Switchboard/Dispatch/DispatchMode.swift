/// How connections reach workers.
public struct DispatchMode: Hashable, Sendable, CustomStringConvertible {
    package enum Kind: Hashable, Sendable {
        case roundRobin, leastConnections, reusePort, shared
    }
    package let kind: Kind
    private init(_ kind: Kind) { self.kind = kind }

    /// The master accepts and passes each connection to the next worker in strict rotation (Node's `SCHED_RR`).
    public static let roundRobin = DispatchMode(.roundRobin)
    /// The master accepts and passes each connection to the worker with the fewest open connections.
    public static let leastConnections = DispatchMode(.leastConnections)
    /// Each worker binds its own `SO_REUSEPORT` listener; the kernel spreads connections; the master only supervises.
    public static let reusePort = DispatchMode(.reusePort)
    /// The master binds one listener and every worker accepts on it (Node's `SCHED_NONE`).
    public static let shared = DispatchMode(.shared)

    /// Every mode, in the order the CLI lists them.
    public static let allCases: [DispatchMode] = [.roundRobin, .leastConnections, .reusePort, .shared]

    /// The name used on the command line and in the ready line, such as `round-robin`.
    public var name: String {
        switch kind {
        case .roundRobin: "round-robin"
        case .leastConnections: "least-connections"
        case .reusePort: "reuseport"
        case .shared: "shared"
        }
    }

    /// Parses a command-line name.
    /// - Parameter name: One of `round-robin`, `least-connections`, `reuseport`, `shared`.
    public init?(name: String) {
        guard let mode = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = mode
    }

    /// Whether the master accepts and passes descriptors in this mode.
    public var passesDescriptors: Bool { strategy.passesDescriptors }

    public var description: String { name }
}
