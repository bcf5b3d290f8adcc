import Testing

@testable import Switchboard

#if canImport(Glibc)
import Glibc
#endif

/// Recycling as a story, event by event: the machine's one-worker rolling reload, the policy's staggered limits and
/// memory verdicts, and the USS reader.
@Suite struct RecycleTests {
    typealias Machine = SupervisorMachine
    static let second = SupervisorMachineTests.second

    @Test func aRecycleStartsTheReplacementFirstAndDrainsTheOldWorkerOnceItIsReady() {
        var machine = SupervisorMachineTests.running(workers: 2)
        let now = 2 * Self.second
        let actions = machine.handle(.recycle(slot: 0, reason: .requests, now: now))
        #expect(actions == [.recycleStarted(slot: 0, reason: .requests), .spawn(slot: 2)])
        #expect(machine.recycling == Machine.Recycle(slot: 0, reason: .requests))
        #expect(machine.readyCount == 2, "the old worker serves until its replacement is ready")
        // Another recycle and a worker not ready are ignored while this one runs.
        #expect(machine.handle(.recycle(slot: 1, reason: .memory, now: now)).isEmpty)
        _ = machine.handle(.spawned(slot: 2, pid: 300, now: now))
        let ready = machine.handle(.ready(slot: 2, now: now + 100))
        #expect(ready.contains(.drain(slot: 0)))
        #expect(ready.contains(.recycleFinished(slot: 0, reason: .requests)))
        #expect(!ready.contains { if case .reloadFinished = $0 { true } else { false } }, "a recycle is not a reload")
        #expect(machine.recycling == nil && machine.reload == nil)
        #expect(machine.generation == 1, "the replacement is of the same generation")
        // Now the next one may run.
        #expect(machine.handle(.recycle(slot: 1, reason: .memory, now: now + 200)).first
            == .recycleStarted(slot: 1, reason: .memory))
    }

    @Test func aFailedReplacementAbortsTheRecycleAndTheWorkerKeepsServing() {
        var machine = SupervisorMachineTests.running(workers: 1)
        _ = machine.handle(.recycle(slot: 0, reason: .lifetime, now: 2 * Self.second))
        let failed = machine.handle(.spawnFailed(slot: 1, now: 2 * Self.second))
        #expect(failed.contains(.recycleAborted(slot: 0, reason: .lifetime, cause: .couldNotStart)))
        #expect(machine.workers[0].phase == .ready && !machine.workers[0].retired)
        #expect(machine.recycling == nil)
    }

    @Test func aReloadAskedForDuringARecycleWaitsForIt() {
        var machine = SupervisorMachineTests.running(workers: 2)
        _ = machine.handle(.recycle(slot: 1, reason: .requests, now: 2 * Self.second))
        #expect(machine.handle(.reload(now: 2 * Self.second)) == [.reloadQueued])
        _ = machine.handle(.spawned(slot: 2, pid: 300, now: 2 * Self.second))
        let ready = machine.handle(.ready(slot: 2, now: 3 * Self.second))
        #expect(ready.contains(.recycleFinished(slot: 1, reason: .requests)))
        #expect(ready.contains { if case .reloadStarted = $0 { true } else { false } }, "the queued reload starts")
    }

    @Test func limitsAreStaggeredBySlotAndARandomPart() {
        let policy = RecyclePolicy(maxRequests: 3200, maxLifetime: 32 * Self.second)
        #expect(policy.limits(slot: 0, random: 0).requests == 3200)
        #expect(policy.limits(slot: 1, random: 0).requests == 3300)
        #expect(policy.limits(slot: 7, random: 0.5).requests == 3200 + 700 + 50)
        #expect(policy.limits(slot: 8, random: 0).requests == 3200, "the stagger repeats every 8 slots")
        #expect(policy.limits(slot: 3, random: 0).lifetime == 35 * Self.second)
        #expect(RecyclePolicy().limits(slot: 5, random: 0.9) == .init(requests: 0, lifetime: 0), "off stays off")
        let limits = policy.limits(slot: 0, random: 0)
        #expect(policy.due(limits, handled: 3199, uptime: 0) == nil)
        #expect(policy.due(limits, handled: 3200, uptime: 0) == .requests)
        #expect(policy.due(limits, handled: 0, uptime: 32 * Self.second) == .lifetime)
    }

    @Test func memoryOverTheLimitSoonAfterTheStartIsBelowTheBaseline() {
        let policy = RecyclePolicy(maxMemory: 64 << 20, minUptime: 5 * Self.second)
        #expect(policy.memory(uniqueBytes: 60 << 20, uptime: 10 * Self.second) == .within)
        #expect(policy.memory(uniqueBytes: 70 << 20, uptime: 10 * Self.second) == .over)
        #expect(policy.memory(uniqueBytes: 70 << 20, uptime: 1 * Self.second) == .belowBaseline)
    }

    /// Two samples in a row over the limit recycle; one does not; a sample within resets the count.
    @Test func theRecyclerWantsTwoSamplesInARow() {
        var recycler = WorkerRecycler(policy: RecyclePolicy(maxMemory: 64 << 20, minUptime: 0))
        let machine = SupervisorMachineTests.running(workers: 1)
        recycler.started(slot: 0, pid: 100, random: 0)
        var bytes: UInt64 = 100 << 20
        var now = 10 * Self.second
        func check() -> [WorkerRecycler.Finding] {
            defer { now += WorkerRecycler.sampleInterval }
            return recycler.check(now: now, workers: machine.workers, handled: { _ in 0 }, sample: { _ in bytes })
        }
        #expect(check().isEmpty)
        bytes = 10 << 20
        #expect(check().isEmpty, "a sample within resets the count")
        bytes = 100 << 20
        #expect(check().isEmpty)
        #expect(check() == [.recycle(slot: 0, reason: .memory)])
        #expect(recycler.uniqueBytes(0) == 100 << 20)
    }

    /// A sample over the limit is confirmed half a second later, not at the next 2 s sample; a worker within the
    /// limit is sampled every 2 s.
    @Test func aSampleOverTheLimitIsConfirmedSooner() {
        var recycler = WorkerRecycler(policy: RecyclePolicy(maxMemory: 64 << 20, minUptime: 0))
        let machine = SupervisorMachineTests.running(workers: 1)
        recycler.started(slot: 0, pid: 100, random: 0)
        var bytes: UInt64 = 10 << 20
        var samples = 0
        func check(at now: UInt64) -> [WorkerRecycler.Finding] {
            recycler.check(now: now, workers: machine.workers, handled: { _ in 0 }, sample: { _ in samples += 1; return bytes })
        }
        let start = 10 * Self.second
        _ = check(at: start)
        _ = check(at: start + WorkerRecycler.confirmInterval)
        #expect(samples == 1, "within the limit: the next sample is 2 s later")
        bytes = 100 << 20
        #expect(check(at: start + WorkerRecycler.sampleInterval).isEmpty)
        #expect(samples == 2)
        let confirmed = check(at: start + WorkerRecycler.sampleInterval + WorkerRecycler.confirmInterval)
        #expect(confirmed == [.recycle(slot: 0, reason: .memory)], "confirmed 0.5 s after the first sample over")
    }

    @Test func uniqueMemoryIsPrivateCleanPlusPrivateDirty() {
        let text = """
            55d0c8a6b000-7ffd5a1f3000 ---p 00000000 00:00 0                          [rollup]
            Rss:               25600 kB
            Pss:               12000 kB
            Shared_Clean:      10000 kB
            Shared_Dirty:       1000 kB
            Private_Clean:      2048 kB
            Private_Dirty:     10240 kB
            Swap:                  0 kB
            """
        #expect(ProcessMemory.uniqueBytes(smapsRollup: text) == (2048 + 10240) * 1024)
        #expect(ProcessMemory.uniqueBytes(smapsRollup: "Rss: 1 kB") == nil)
        #expect(ProcessMemory.uniqueBytes(getpid()).map { $0 > 0 } == true, "this process has unique memory")
    }
}
