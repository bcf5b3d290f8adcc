/// A connection's machine and the events epoll watches for it. Outside the generic server: nested in it, its metadata
/// would depend on `Responder`, and every copy of a table entry in the (unspecialized) loop would look it up at run
/// time (`swift_getGenericMetadata` was 5 % of a worker's keep-alive profile).
struct HTTP1ServerEntry {
    var machine: HTTP1Connection
    /// The events epoll watches for it; `nil` while it is not in the epoll set (a connection joins only once it has
    /// to wait, see ``HTTP1Connections``'s `service`).
    var watching: UInt32?
}

/// The built-in worker's connections by descriptor number, each worked on in place.
///
/// An entry holds a ``HTTP1Connection`` with its buffers: copying one out of the table and back costs a retain and a
/// release per buffer and a value-witness copy. Under the close load those copies were about 5 % of a worker's time
/// (`perf record`, issue 23). So the table gives no copies out: ``withEntry(_:_:)`` runs its body on the slot itself,
/// and the few facts the loop needs without changing anything (``contains(_:)``) are read in place too.
///
/// The body must not touch the table (it is being modified): it does the I/O and returns what the loop does next,
/// for instance ``AfterIO/close``.
struct ConnectionTable {
    private var slots: [HTTP1ServerEntry?] = []
    /// Connections in the table.
    private(set) var count = 0

    /// Whether `fd` is in the table (a pattern match on the slot, which reads it in place).
    func contains(_ fd: CInt) -> Bool {
        let index = Int(fd)
        guard index >= 0 && index < slots.count else { return false }
        if case .none = slots[index] { return false }
        return true
    }

    /// Puts a new connection in its slot, growing the table (to at least twice its size) when `fd` is beyond it.
    /// The entry is moved in (`consuming`): passed borrowed, it was copied into the slot (a retain per buffer) and the
    /// caller's destroyed; `insert` ran 403 instructions a connection that way, 266 now (callgrind, issue 23).
    /// - Precondition: `fd` is not in the table.
    mutating func insert(_ fd: CInt, _ entry: consuming HTTP1ServerEntry) {
        let index = Int(fd)
        precondition(index >= 0, "a negative descriptor")
        if index >= slots.count {
            slots.append(contentsOf: repeatElement(nil, count: max(index + 1 - slots.count, slots.count)))
        }
        if case .some = slots[index] { preconditionFailure("descriptor \(fd) is in the table twice") }
        slots[index] = consume entry
        count += 1
    }

    /// Takes `fd` out of the table (moved out of its slot, not copied).
    /// - Returns: The entry, or nil when `fd` was not in the table.
    @discardableResult
    mutating func remove(_ fd: CInt) -> HTTP1ServerEntry? {
        guard contains(fd), let entry = slots[Int(fd)].take() else { return nil }
        count -= 1
        return entry
    }

    /// Runs `body` on the entry of `fd` in place, without copying it out.
    /// - Returns: What `body` returned, or nil when `fd` is not in the table.
    mutating func withEntry<Result>(_ fd: CInt, _ body: (inout HTTP1ServerEntry) throws -> Result) rethrows -> Result? {
        guard contains(fd) else { return nil }
        return try body(&slots[Int(fd)]!)
    }

    /// One past the highest descriptor the table has room for: every descriptor in it is in `0..<end`.
    var end: CInt { CInt(slots.count) }
}

/// What the loop does with a connection once a body run through ``ConnectionTable/withEntry(_:_:)`` has read or
/// written: the closing happens after the body, which may not touch the table.
enum AfterIO {
    case keep
    case close
}
