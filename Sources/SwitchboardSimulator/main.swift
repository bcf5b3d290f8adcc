import SwitchboardSimulation

#if canImport(Glibc)
import Glibc
#endif

// SwitchboardSimulator [schedules, default 100000] [first seed, default 1]
//
// Runs the supervisor simulation (``Simulation``) through that many seeded schedules, built for release so that
// the test command runs 100,000 in seconds and `Scripts/simulate.sh` ten million. A failure prints its seed and the
// shrunk schedule (replay it as a unit test in Tests/SwitchboardSimulationTests) and exits 1.

let arguments = CommandLine.arguments.dropFirst()
guard arguments.count <= 2, let count = Int(arguments.first ?? "100000"), count > 0,
    let first = UInt64(arguments.dropFirst().first ?? "1")
else {
    print("usage: SwitchboardSimulator [schedules, default 100000] [first seed, default 1]")
    exit(2)
}

func seconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

let start = seconds()
let every = max(count / 10, 1)
// The schedules as earlier runs drew them, then as many again with recycles among the commands.
var failure = Simulation.explore(from: first, count: count, progressEvery: count >= 1_000_000 ? every : 0) { done in
    print("simulate: \(done) schedules, \(Int(seconds() - start)) s")
}
if failure == nil {
    failure = Simulation.explore(
        from: first, count: count, recycles: true, progressEvery: count >= 1_000_000 ? every : 0
    ) { done in
        print("simulate: \(done) schedules with recycles, \(Int(seconds() - start)) s")
    }
}
if failure == nil {
    failure = Simulation.explore(
        from: first, count: count, recycles: true, upgrades: true, progressEvery: count >= 1_000_000 ? every : 0
    ) { done in
        print("simulate: \(done) schedules with recycles and master upgrades, \(Int(seconds() - start)) s")
    }
}
let elapsed = seconds() - start
if let failure {
    print("simulate: FAILED after \((elapsed * 10).rounded() / 10) s: \(failure)")
    exit(1)
}
print(
    "simulate: \(count) schedules from seed \(first), \(count) with recycles and \(count) with master upgrades too, kept every invariant in \((elapsed * 10).rounded() / 10) s")
