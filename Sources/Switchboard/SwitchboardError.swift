/// An error that says what went wrong and how to fix it, in one line.
public struct SwitchboardError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of error; each maps to a process exit code.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: Hashable, Sendable {
            case usage, config, portInUse, permissionDenied, crashLoop, system
        }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// A flag or value the user passed is wrong. Exit code 64.
        public static let usage = Code(.usage)
        /// A configuration file or setting cannot be used. Exit code 78.
        public static let config = Code(.config)
        /// The port is taken by another process. Exit code 69.
        public static let portInUse = Code(.portInUse)
        /// The process may not bind the port or use a resource. Exit code 77.
        public static let permissionDenied = Code(.permissionDenied)
        /// Workers kept exiting early; the master halted. Exit code 70.
        public static let crashLoop = Code(.crashLoop)
        /// Any other failure of the operating system. Exit code 1.
        public static let system = Code(.system)

        /// The process exit code for this kind of error (sysexits.h where one fits).
        public var exitCode: Int32 {
            switch kind {
            case .usage: 64
            case .config: 78
            case .portInUse: 69
            case .permissionDenied: 77
            case .crashLoop: 70
            case .system: 1
            }
        }

        public var description: String { "\(kind)" }
    }

    /// What kind of error this is.
    public var code: Code
    /// One line: what is wrong and how to fix it.
    public var message: String

    /// Creates an error.
    /// - Parameters:
    ///   - code: The kind of error.
    ///   - message: One line that says what is wrong and how to fix it.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
