import Switchboard

/// Unbuffered output for the ready line and fatal messages.
enum Output {
    /// Writes one line to standard output.
    static func line(_ text: String) {
        Syscalls.writeAll(1, text + "\n")
    }

    /// Writes `switchboard: <text>` to standard error.
    static func error(_ text: String) {
        Syscalls.writeAll(2, "switchboard: " + text + "\n")
    }
}
