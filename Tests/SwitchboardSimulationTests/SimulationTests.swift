import Testing

@testable import Switchboard

/// The supervisor machine driven through seeded random schedules of faults and commands (``Simulation``), with
/// every invariant checked after every step. A failure prints its seed and the shrunk schedule, which goes below as a
/// replayed unit test.
@Suite struct SimulationTests {
    /// How many schedules a run tries: `SWITCHBOARD_SIMULATION_SCHEDULES` (`Scripts/simulate.sh` sets millions), or
    /// the CI budget.
    static var budget: Int {
        if let text = Syscalls.environment("SWITCHBOARD_SIMULATION_SCHEDULES"), let count = Int(text) { return count }
        return 30_000
    }

    static var firstSeed: UInt64 {
        if let text = Syscalls.environment("SWITCHBOARD_SIMULATION_SEED"), let seed = UInt64(text) { return seed }
        return 1
    }

    @Test func randomSchedulesKeepEveryInvariant() {
        let first = Self.firstSeed
        for seed in first..<(first + UInt64(Self.budget)) {
            let workers = 1 + Int(seed % 3)
            let schedule = Simulation.schedule(seed: seed)
            do {
                try Simulation.run(schedule, workers: workers)
            } catch {
                let shrunk = Simulation.shrink(schedule, workers: workers)
                let reason = Self.failure(shrunk, workers)
                Issue.record(
                    """
                    seed \(seed) (\(seed - first + 1) schedules in), \(workers) workers: \(error)
                    shrunk to \(shrunk.count) commands (\(reason)):
                    \(shrunk)
                    """)
                return
            }
        }
    }

    static func failure(_ schedule: [Simulation.Command], _ workers: Int) -> String {
        do {
            try Simulation.run(schedule, workers: workers)
            return "no failure"
        } catch {
            return error.description
        }
    }

    /// Found by the simulator with issue 19's bug 1 fix reverted, at seed 33 (the 33rd schedule), shrunk from 26
    /// commands: a scale-down during a reload took the reload's replacement, and the cluster stayed one over target.
    @Test func aScaleDownDuringAReloadReplays() throws {
        try Simulation.run([.scaleUp, .reload, .scaleDown], workers: 1)
        try Simulation.run([.reload, .scaleTo(1)], workers: 2)
    }
}
