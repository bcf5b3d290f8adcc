#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: its name and the `errno` it set.
public struct SystemCallError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The name of the call that failed, such as `"bind"`.
    public var call: String
    /// The `errno` value the call set.
    public var code: CInt

    /// Creates an error for `call` failing with `code`.
    /// - Parameters:
    ///   - call: The name of the failed call.
    ///   - code: The `errno` it set.
    public init(call: String, code: CInt) {
        self.call = call
        self.code = code
    }

    /// `strerror` for the code, such as "Address already in use".
    public var reason: String {
        guard let text = unsafe strerror(code) else { return "errno \(code)" }
        return unsafe String(cString: text)
    }

    public var description: String { "\(call): \(reason) (errno \(code))" }
}
