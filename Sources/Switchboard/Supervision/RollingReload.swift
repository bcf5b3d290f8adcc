/// The plan of a rolling reload: replace the old workers one at a time, each gated on its replacement's readiness.
///
/// A plain value that does no I/O. For each old slot it asks for a replacement, and only once that replacement is
/// ready does it ask to drain the old worker, so capacity never drops below the configured count. A replacement that
/// fails (exits, or misses the ready deadline) aborts the reload: the workers not yet replaced keep serving.
package struct RollingReload: Equatable, Codable {
    /// What the master should do next.
    package enum Step: Equatable {
        /// Start a new worker to replace the one in `old`.
        case spawnReplacement(old: Int)
        /// The replacement in `new` is ready: drain the worker in `old`.
        case drain(old: Int)
        /// Every old worker was replaced.
        case finished
        /// A replacement failed; stop here and kill the replacement in `new` if it still runs.
        case aborted(new: Int?)
    }

    package private(set) var remaining: [Int]
    package private(set) var current: (old: Int, new: Int?)?
    package private(set) var replaced = 0

    package static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.remaining == rhs.remaining && lhs.current?.old == rhs.current?.old && lhs.current?.new == rhs.current?.new
            && lhs.replaced == rhs.replaced
    }

    private enum CodingKeys: String, CodingKey {
        case remaining, currentOld, currentNew, replaced
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        remaining = try container.decode([Int].self, forKey: .remaining)
        replaced = try container.decode(Int.self, forKey: .replaced)
        if let old = try container.decodeIfPresent(Int.self, forKey: .currentOld) {
            current = (old, try container.decodeIfPresent(Int.self, forKey: .currentNew))
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(remaining, forKey: .remaining)
        try container.encode(replaced, forKey: .replaced)
        try container.encodeIfPresent(current?.old, forKey: .currentOld)
        try container.encodeIfPresent(current?.new, forKey: .currentNew)
    }

    /// Creates a plan to replace the workers in `oldSlots`, in order.
    package init(oldSlots: [Int]) {
        remaining = oldSlots
    }

    /// The first step.
    package mutating func start() -> Step {
        next()
    }

    /// The master started the replacement for the current old slot in `new`.
    package mutating func replacementStarted(new: Int) {
        guard let current else { preconditionFailure("no replacement was asked for") }
        self.current = (current.old, new)
    }

    /// Whether `slot` is the replacement being waited for.
    package func isReplacement(_ slot: Int) -> Bool {
        current?.new == slot
    }

    /// The replacement in `slot` reported ready: drain the old worker, then go on.
    package mutating func replacementReady(_ slot: Int) -> [Step] {
        guard let current, current.new == slot else { return [] }
        replaced += 1
        self.current = nil
        return [.drain(old: current.old), next()]
    }

    /// The replacement in `slot` failed (exited, or missed its ready deadline), or could not be started (nil).
    package mutating func replacementFailed(_ slot: Int?) -> Step {
        guard let current, slot == nil || current.new == slot else { return .aborted(new: nil) }
        self.current = nil
        remaining = []
        return .aborted(new: current.new)
    }

    /// The old worker in `slot` left before it was replaced (it exited on its own, and the ordinary restart path
    /// refills it; or a scale-down took it): nothing to replace there any more.
    package mutating func oldWorkerLeft(_ slot: Int) {
        remaining.removeAll { $0 == slot }
    }

    private mutating func next() -> Step {
        guard !remaining.isEmpty else { return .finished }
        let old = remaining.removeFirst()
        current = (old, nil)
        return .spawnReplacement(old: old)
    }
}
