import Testing

@testable import Switchboard

#if canImport(Glibc)
import Glibc
#endif

/// The worker count is declarative both ways: missing workers are started, surplus workers drained, whatever caused
/// them (issue 19, bug 1: scaling down during a rolling reload).
@Suite struct ConvergenceTests {
    typealias Machine = SupervisorMachine
    static let second = SupervisorMachineTests.second

    /// The workers that count toward the target: running, not draining, not retired.
    static func serving(_ machine: Machine) -> [Int] {
        machine.workers.indices.filter {
            let worker = machine.workers[$0]
            return worker.hasProcess && worker.phase != .draining && worker.phase != .exiting && !worker.retired
        }
    }

    /// Bug 1 as reported: 2 workers, a reload whose new worker never becomes ready, then `scale 1`. On main the
    /// scale-down drained the replacement, its exit aborted the reload, and both old workers ran on with a target of 1.
    @Test func scalingDownDuringAReloadNeverTakesTheReplacementAndEndsAtTheTarget() {
        var machine = SupervisorMachineTests.running()
        var now = 2 * Self.second
        let reload = machine.handle(.reload(now: now))
        #expect(reload == [.reloadStarted(generation: 2, workers: 2), .spawn(slot: 2)])
        SupervisorMachineTests.spawnAll(reload, in: &machine, now: now)
        let scaled = machine.handle(.scaleTo(count: 1, now: now))
        #expect(!scaled.contains(.drain(slot: 2)), "the replacement is not what scaling takes: \(scaled)")
        #expect(scaled.contains(.drain(slot: 1)), "the old worker not yet replaced goes: \(scaled)")
        // The replacement never becomes ready: killed at its deadline, the reload aborts.
        now += 3 * Self.second
        #expect(machine.handle(.tick(now: now)).contains(.kill(slot: 2, reason: .notReady)))
        _ = machine.handle(.exited(slot: 2, exit: .signal(SIGKILL), now: now, random: 0))
        _ = machine.handle(.exited(slot: 1, exit: .code(0), now: now, random: 0))
        for _ in 0..<4 {
            now += Self.second
            SupervisorMachineTests.spawnAll(machine.handle(.tick(now: now)), in: &machine, now: now)
        }
        #expect(machine.target == 1)
        #expect(Self.serving(machine) == [0], "one worker, as asked")
    }

    /// The same scale-down during a reload whose new workers do become ready: the reload ends with one new worker.
    @Test func scalingDownDuringAHealthyReloadEndsWithTheTargetOnTheNewGeneration() {
        var machine = SupervisorMachineTests.running()
        let now = 2 * Self.second
        let reload = machine.handle(.reload(now: now))
        SupervisorMachineTests.spawnAll(reload, in: &machine, now: now)
        _ = machine.handle(.scaleTo(count: 1, now: now))
        let ready = machine.handle(.ready(slot: 2, now: now))
        #expect(ready.contains(.drain(slot: 0)))
        #expect(ready.contains(.reloadFinished(generation: 2, replaced: 1)), "\(ready)")
        #expect(Self.serving(machine) == [2])
        #expect(machine.workers[2].generation == 2)
    }

    /// Scaling up and down in the middle of a reload: every choice leaves the replacement being waited for alone,
    /// and the reload ends with the target, all on the new generation.
    @Test func scalingUpAndDownDuringAReloadEndsWithTheTargetOnTheNewGeneration() {
        var machine = SupervisorMachineTests.running()
        var now = 2 * Self.second
        SupervisorMachineTests.spawnAll(machine.handle(.reload(now: now)), in: &machine, now: now)
        var next = machine.handle(.ready(slot: 2, now: now))  // slot 0 drains, slot 1's replacement starts
        SupervisorMachineTests.spawnAll(next, in: &machine, now: now)
        SupervisorMachineTests.spawnAll(machine.handle(.scaleTo(count: 3, now: now)), in: &machine, now: now)
        let down = machine.handle(.scaleTo(count: 1, now: now))
        let replacement = machine.reload?.current?.new
        #expect(replacement != nil)
        #expect(!down.contains(.drain(slot: replacement ?? -1)), "\(down)")
        next = machine.handle(.ready(slot: replacement ?? -1, now: now))
        #expect(next.contains { if case .reloadFinished = $0 { true } else { false } }, "\(next)")
        for slot in machine.workers.indices where machine.workers[slot].phase == .draining {
            _ = machine.handle(.exited(slot: slot, exit: .code(0), now: now, random: 0))
        }
        for _ in 0..<3 {
            now += Self.second
            let tick = machine.handle(.tick(now: now))
            SupervisorMachineTests.spawnAll(tick, in: &machine, now: now)
            for case .spawn(let slot) in tick { _ = machine.handle(.ready(slot: slot, now: now)) }
        }
        #expect(Self.serving(machine).count == 1, "\(machine.workers.map(\.phase))")
        #expect(Self.serving(machine).allSatisfy { machine.workers[$0].generation == 2 })
    }

    /// Surplus from whatever cause is drained at the next check, outside a reload: the count converges down too.
    @Test func surplusWorkersAreDrainedAtTheNextCheck() {
        var machine = SupervisorMachineTests.running(workers: 3)
        let now = 2 * Self.second
        machine.target = 1  // however it came about
        let tick = machine.handle(.tick(now: now))
        let drained = tick.compactMap { if case .drain(let slot) = $0 { slot } else { nil } }
        #expect(drained.count == 2, "\(tick)")
        #expect(tick.contains(.surplus(count: 2)))
        #expect(Self.serving(machine).count == 1)
        #expect(machine.handle(.tick(now: now + Self.second)).allSatisfy { if case .drain = $0 { false } else { true } })
    }
}
