/// A descriptor with exactly one owner, checked by the compiler: it cannot be copied, so it is closed once — when its
/// owner calls ``close()``, or when the owner goes away (its deinit) — or handed on with ``release()``.
///
/// The master's own descriptors (its epoll set, signalfd, eventfd) are held this way. Client connections stay plain
/// `CInt` on the hot path, in fixed arrays (Swift's `Array` cannot hold noncopyable elements); that each is closed or
/// handed on exactly once is what the tests that count `/proc/<pid>/fd` check.
package struct Descriptor: ~Copyable, Sendable {
    /// The descriptor number; -1 for none (nothing to close).
    package let raw: CInt

    /// Takes ownership of `raw` (or of nothing, for -1).
    package init(_ raw: CInt) {
        self.raw = raw
    }

    /// Whether it holds a descriptor.
    package var isValid: Bool { raw >= 0 }

    /// Closes it now.
    package consuming func close() {
        if raw >= 0 { Syscalls.close(raw) }
        discard self
    }

    /// Gives up ownership without closing: the caller owns the number now.
    package consuming func release() -> CInt {
        let raw = self.raw
        discard self
        return raw
    }

    deinit {
        if raw >= 0 { Syscalls.close(raw) }
    }
}
