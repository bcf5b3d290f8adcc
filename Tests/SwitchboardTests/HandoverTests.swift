import CSwitchboardLinux
import Foundation
import Logging
import Testing

@testable import Switchboard

/// The parts of a master's upgrade that need no exec: each owner's state through the hand-over's JSON and back.
@Suite struct HandoverTests {
    typealias Machine = SupervisorMachine

    static func roundTrip<T: Codable>(_ value: T) throws -> T {
        try JSONDecoder().decode(T.self, from: try JSONEncoder().encode(value))
    }

    /// A machine in the middle of a rolling reload, with a restart's backoff remembered, comes back as it was, and
    /// goes on deciding exactly as the original does.
    @Test func aMachineMidReloadComesBackAndDecidesAsTheOriginal() throws {
        var machine = SupervisorMachineTests.running(workers: 2, now: SupervisorMachineTests.second)
        let now = 2 * SupervisorMachineTests.second
        // An early exit (remembered by the restart policy), its replacement, then a reload half done.
        _ = machine.handle(.exited(slot: 1, exit: .code(1), now: now, random: 0))
        _ = machine.handle(.tick(now: now + 500_000_000))
        let reload = machine.handle(.reload(now: now + 600_000_000))
        SupervisorMachineTests.spawnAll(reload, in: &machine, now: now + 600_000_000)
        #expect(machine.reload != nil)

        let handed = try Self.roundTrip(machine.snapshot)
        #expect(handed == machine.snapshot)
        var adopted = Machine(settings: SupervisorMachineTests.settings(), restoring: handed)
        #expect(adopted.snapshot == machine.snapshot)
        #expect(adopted.nextDeadline == machine.nextDeadline)
        // The same events from here: the same actions.
        let later = now + SupervisorMachineTests.second
        let replacement = try #require(machine.reload?.current?.new)
        let events: [Machine.Event] = [
            .ready(slot: replacement, now: later), .tick(now: later + 1), .exited(slot: 0, exit: .code(0), now: later + 2, random: 0.5),
            .tick(now: later + 3 * SupervisorMachineTests.second), .scaleUp(now: later + 4 * SupervisorMachineTests.second),
        ]
        for event in events {
            #expect(adopted.handle(event) == machine.handle(event), "\(event)")
        }
        #expect(adopted.snapshot == machine.snapshot)
    }

    /// The dispatcher's hand-over: a queue the worker has not received, connections waiting in `pending`, and the
    /// counters. The new dispatcher takes the worker's acknowledgement of what the old one sent (the sequence goes on),
    /// sends `pending`, and every connection reaches the worker exactly once.
    @Test func aHandedOverDispatcherGoesOnWhereTheOldOneStopped() throws {
        let rig = try ConnectionDispatcherTests.Rig(lanes: 2)
        let ids = try rig.connect(6)
        rig.dispatcher.pump(accepting: true)
        #expect(rig.dispatcher.lanes[0].queued == 3 && rig.dispatcher.lanes[1].queued == 3)
        rig.dispatcher.disconnect(1)
        #expect(rig.dispatcher.detach(1) == 3)  // lane 1's queue is back in pending
        #expect(rig.dispatcher.pendingCount == 3)

        var snapshot = try Self.roundTrip(rig.dispatcher.snapshot)
        #expect(snapshot.pending.count == 3 && snapshot.lanes.count == 2)
        #expect(snapshot.lanes[1].channel == nil && snapshot.lanes[1].kept == nil)
        #expect(snapshot.lanes[0].frames.map(\.count) == [3] && snapshot.lanes[0].nextSequence == 4)
        #expect(Set(snapshot.descriptors).count == snapshot.descriptors.count)
        // Another image would see the same numbers; here the old dispatcher still owns them, so the new one gets
        // copies (closing the old copies later closes nothing a client could see).
        func copy(_ fd: CInt?) -> CInt? { fd.map { dup($0) } }
        snapshot.listener = dup(snapshot.listener)
        snapshot.pending = snapshot.pending.map { dup($0) }
        for lane in snapshot.lanes.indices {
            snapshot.lanes[lane].channel = copy(snapshot.lanes[lane].channel)
            snapshot.lanes[lane].kept = copy(snapshot.lanes[lane].kept)
        }
        let epoll = try Syscalls.epollCreate()
        defer { close(epoll) }
        var logger = Logger(label: "handover-test")
        logger.logLevel = .critical
        var adopted = ConnectionDispatcher(
            settings: rig.dispatcher.settings, epoll: epoll, listenerToken: 1, logger: logger)
        try adopted.restore(snapshot, token: { UInt64($0) << 8 | 3 }, metadata: { _ in [:] })
        #expect(adopted.counters == rig.dispatcher.counters)
        #expect(adopted.pendingCount == 3 && adopted.lanes[0].queued == 3 && adopted.lanes[0].ready)
        var got = try rig.receive(0).ids
        #expect(got.count == 3)
        try adopted.acknowledge(0, upTo: 3, open: 3)  // the old image's sequence numbers go on
        #expect(adopted.lanes[0].queued == 0)
        adopted.pump(accepting: true)
        #expect(adopted.pendingCount == 0)
        got += try rig.receive(0).ids
        #expect(got.sorted() == ids, "each connection exactly once")
        #expect(throws: QueuedFrames.AckError.self) { try adopted.acknowledge(0, upTo: 7, open: 0) }
        try adopted.acknowledge(0, upTo: 6, open: 6)
        // The old one goes away as an exec takes it (its copies close); then the new one stops.
        _ = rig.dispatcher.closeAll()
        _ = adopted.closeAll()
        #expect(ids.allSatisfy(rig.clientSeesEnd), "a copy of a connection stayed open")
    }

    @Test func upgradeIsAControlCommand() throws {
        #expect(try ControlCommand(line: "upgrade") == .upgrade(masterOnly: false))
        #expect(try ControlCommand(line: "upgrade --master-only") == .upgrade(masterOnly: true))
        #expect(ControlCommand.upgrade(masterOnly: true).line == "upgrade --master-only")
        #expect(throws: SwitchboardError.self) { try ControlCommand(line: "upgrade now") }
    }

    /// The pre-check's answer names this build and the versions a master compares.
    @Test func thePreCheckAnswerNamesTheBuildAndTheVersions() {
        #expect(Handover.checkAnswer == "switchboard-upgrade-check build=\(Cluster.build) wire=\(WireCodec.version) handover=\(Handover.format)")
        let environment = Handover.environment(
            ["PATH=/bin", "SWITCHBOARD_HANDOVER_FD=7", "SWITCHBOARD_UPGRADE_CHECK=1"], adding: ["A": "1"])
        #expect(environment == ["PATH=/bin", "A=1"])
    }
}
