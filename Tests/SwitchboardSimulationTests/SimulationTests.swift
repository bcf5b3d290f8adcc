import Testing

@testable import Switchboard
import SwitchboardSimulation

/// The supervisor machine driven through seeded random schedules of faults and commands (``Simulation``), with
/// every invariant checked after every step. A failure prints its seed and the shrunk schedule, which goes below as a
/// replayed unit test.
@Suite struct SimulationTests {
    /// How many schedules this debug-built test tries: `SWITCHBOARD_SIMULATION_SCHEDULES`, or a smoke of 5,000. The
    /// test command runs 100,000 more with the release-built runner (`SwitchboardSimulator`), `Scripts/simulate.sh`
    /// ten million.
    static var budget: Int {
        if let text = Syscalls.environment("SWITCHBOARD_SIMULATION_SCHEDULES"), let count = Int(text) { return count }
        return 5_000
    }

    static var firstSeed: UInt64 {
        if let text = Syscalls.environment("SWITCHBOARD_SIMULATION_SEED"), let seed = UInt64(text) { return seed }
        return 1
    }

    @Test func randomSchedulesKeepEveryInvariant() {
        if let failure = Simulation.explore(from: Self.firstSeed, count: Self.budget) {
            Issue.record("\(failure)")
        }
        if let failure = Simulation.explore(from: Self.firstSeed, count: Self.budget / 2, recycles: true) {
            Issue.record("with recycles: \(failure)")
        }
        if let failure = Simulation.explore(
            from: Self.firstSeed, count: Self.budget / 2, recycles: true, upgrades: true)
        {
            Issue.record("with master upgrades: \(failure)")
        }
    }

    /// Found by the simulator with issue 19's bug 1 fix reverted, at seed 33 (the 33rd schedule), shrunk from 26
    /// commands: a scale-down during a reload took the reload's replacement, and the cluster stayed one over target.
    @Test func aScaleDownDuringAReloadReplays() throws {
        try Simulation.run([.scaleUp, .reload, .scaleDown], workers: 1)
        try Simulation.run([.reload, .scaleTo(1)], workers: 2)
    }

    /// A recycle on a settled cluster keeps every worker ready (the replacement first), and converges after.
    @Test func aRecycleReplays() throws {
        try Simulation.run([.advance(milliseconds: 9_000), .recycle(0), .advance(milliseconds: 50), .recycle(1)], workers: 2)
        try Simulation.run([.recycle(0), .reload, .crash(0), .recycle(0)], workers: 1)
    }
}
