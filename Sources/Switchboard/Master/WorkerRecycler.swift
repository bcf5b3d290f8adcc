/// The master's side of recycling (``RecyclePolicy``): each worker's limits, fixed when it starts, its memory
/// samples, and which limit comes due. It reads each worker's unique memory through `sample` (every 2 s, only with a
/// memory limit; 0.5 s after a sample over the limit, to confirm it) and names at most one worker to recycle per
/// check; the machine runs one recycle at a time.
struct WorkerRecycler {
    let policy: RecyclePolicy
    /// How often memory is sampled.
    static let sampleInterval: UInt64 = 2_000_000_000
    /// How soon a sample over the limit is confirmed by the next: a leaking worker is replaced within about 3 s of
    /// crossing the limit, and one spike that is freed at once still does not recycle it.
    static let confirmInterval: UInt64 = 500_000_000

    fileprivate struct Slot: Codable {
        var limits = RecyclePolicy.Limits(requests: 0, lifetime: 0)
        var pid: Int32 = 0
        /// Consecutive samples over the memory limit.
        var over = 0
        /// A limit below the baseline was said for this worker.
        var belowBaselineSaid = false
        var uniqueBytes: UInt64?
    }

    private var slots: [Slot] = []
    private var nextSample: UInt64 = 0
    /// The last recycle begun: its reason and the worker's id, for status.
    private(set) var last: String?

    init(policy: RecyclePolicy) {
        self.policy = policy
    }

    /// What the recycler holds, for a master's upgrade (``Handover``): each worker's limits stay as they were fixed.
    struct Snapshot: Codable {
        fileprivate var slots: [Slot]
        fileprivate var nextSample: UInt64
        fileprivate var last: String?
    }

    var snapshot: Snapshot { Snapshot(slots: slots, nextSample: nextSample, last: last) }

    mutating func restore(_ snapshot: Snapshot) {
        slots = snapshot.slots
        nextSample = snapshot.nextSample
        last = snapshot.last
    }

    /// A worker started in `slot` as `pid`: its own limits.
    mutating func started(slot: Int, pid: Int32, random: Double) {
        while slots.count <= slot { slots.append(Slot()) }
        slots[slot] = Slot(limits: policy.limits(slot: slot, random: random), pid: pid)
    }

    /// The unique memory last sampled for the worker in `slot`.
    func uniqueBytes(_ slot: Int) -> UInt64? {
        slot < slots.count ? slots[slot].uniqueBytes : nil
    }

    /// What a check found.
    enum Finding: Equatable {
        case recycle(slot: Int, reason: SupervisorMachine.RecycleReason)
        /// The worker in `slot` is over the memory limit within `--min-uptime` of its start (said once per worker).
        case belowBaseline(slot: Int, uniqueBytes: UInt64)
    }

    /// Looks at every ready worker: requests served (`handled`), age, and, every ``sampleInterval``, unique memory.
    /// - Returns: What to say and at most one recycle (the first due, in slot order).
    mutating func check(
        now: UInt64, workers: [SupervisorMachine.Worker], handled: (Int) -> UInt64, sample: (Int32) -> UInt64?
    ) -> [Finding] {
        guard policy.isEnabled else { return [] }
        var findings: [Finding] = []
        var due: Finding?
        let sampling = policy.maxMemory > 0 && now >= nextSample
        if sampling { nextSample = now &+ Self.sampleInterval }
        for (slot, worker) in workers.enumerated() where slot < slots.count && worker.phase == .ready && !worker.retired {
            guard slots[slot].pid == worker.pid else { continue }
            let uptime = now &- worker.startedAt
            if due == nil, let reason = policy.due(slots[slot].limits, handled: handled(slot), uptime: uptime) {
                due = .recycle(slot: slot, reason: reason)
            }
            guard sampling, let bytes = sample(worker.pid) else { continue }
            slots[slot].uniqueBytes = bytes
            switch policy.memory(uniqueBytes: bytes, uptime: uptime) {
            case .within:
                slots[slot].over = 0
            case .over:
                slots[slot].over += 1
                if slots[slot].over >= 2 && due == nil { due = .recycle(slot: slot, reason: .memory) }
                if slots[slot].over == 1 { nextSample = min(nextSample, now &+ Self.confirmInterval) }
            case .belowBaseline:
                slots[slot].over = 0
                if !slots[slot].belowBaselineSaid {
                    slots[slot].belowBaselineSaid = true
                    findings.append(.belowBaseline(slot: slot, uniqueBytes: bytes))
                }
            }
        }
        if let due { findings.append(due) }
        return findings
    }

    /// A recycle began for the worker `id`.
    mutating func began(_ reason: SupervisorMachine.RecycleReason, workerID: Int) {
        last = "\(reason.rawValue) (worker \(workerID))"
    }
}
