import Testing

@testable import Switchboard

/// Scaling stops at the limit `--workers` has (1024): a TTIN or a `scale` past it changes nothing.
@Suite struct WorkerLimitTests {
    static let limit = 1024
    static let second = SupervisorMachineTests.second

    static func spawns(_ actions: [SupervisorMachine.Action]) -> Int {
        actions.filter { if case .spawn = $0 { true } else { false } }.count
    }

    @Test func aTTINAtTheLimitIsRefusedAndChangesNothing() {
        var machine = SupervisorMachineTests.running(workers: Self.limit - 1)
        let up = machine.handle(.scaleUp(now: Self.second))
        #expect(up == [.scaled(target: Self.limit), .spawn(slot: Self.limit - 1)])
        SupervisorMachineTests.spawnAll(up, in: &machine, now: Self.second)
        let refused = machine.handle(.scaleUp(now: Self.second))
        #expect(refused == [.scaleUpRefused(limit: Self.limit)])
        #expect(machine.target == Self.limit)
        #expect(machine.workers.count == Self.limit)
    }

    @Test func scalingToMoreThanTheLimitIsRefusedAndChangesNothing() {
        var machine = SupervisorMachineTests.running(workers: 2)
        let refused = machine.handle(.scaleTo(count: Self.limit + 1, now: Self.second))
        #expect(refused == [.scaleUpRefused(limit: Self.limit)], "\(refused.prefix(3))")
        #expect(machine.target == 2)
        #expect(machine.workers.count == 2)
        let toTheLimit = machine.handle(.scaleTo(count: Self.limit, now: Self.second))
        #expect(Self.spawns(toTheLimit) == Self.limit - 2)
        #expect(machine.target == Self.limit)
    }
}
