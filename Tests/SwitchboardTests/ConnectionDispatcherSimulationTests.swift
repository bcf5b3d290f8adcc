import CSwitchboardLinux
import Foundation
import SwitchboardSimulation
import Testing

@testable import Switchboard

/// The dispatcher driven through seeded random schedules on real sockets in one process: clients connect, workers
/// receive some of their queue or none, die and are reaped, are replaced, drain, stall and have their queues stolen
/// (in some schedules by a master with room for only a few descriptors, so only in part), have their channels fail,
/// report; then a stop. After every step and at the end it checks the exactly-once rule from outside the dispatcher:
/// - no connection reaches a worker twice, and none reaches a worker after that worker's `drain` frame;
/// - at the end every accepted connection was received by exactly one worker or closed by the dispatcher (counted by
///   ``ConnectionDispatcher/stop()``), and every client sees its connection closed, so no copy stayed open anywhere.
/// (The supervisor machine's own simulation is ``Simulation``; this one is the dispatcher's, which it leaves out.)
@Suite struct ConnectionDispatcherSimulationTests {
    typealias Rig = ConnectionDispatcherTests.Rig

    struct Violation: Error, CustomStringConvertible {
        var description: String
    }

    /// How many schedules: `SWITCHBOARD_DISPATCH_SCHEDULES`, or 3,000 (each opens real TCP connections).
    static var budget: Int {
        if let text = Syscalls.environment("SWITCHBOARD_DISPATCH_SCHEDULES"), let count = Int(text) { return count }
        return 3_000
    }

    @Test func randomSchedulesHandEachConnectionOnExactlyOnce() throws {
        for seed in 1...UInt64(Self.budget) {
            do {
                try Self.run(seed: seed)
            } catch {
                Issue.record("dispatcher schedule with seed \(seed): \(error)")
                return
            }
        }
    }

    static func run(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let lanes = 1 + Int(seed % 3)
        let bound = [1, 2, 8][Int(seed / 3 % 3)]
        // Every fourth schedule the master is short of descriptors: before each timer step it has room for 0 to 6
        // more, so a steal takes back only part of a queue and leaves the rest to a later one.
        let short = seed % 4 == 0
        let limit = 1_000
        var room = 0
        let rig = try Rig(
            lanes: lanes, bound: bound, stealAfter: seed % 2 == 0 ? 1_000_000 : nil,
            descriptorLimit: short ? limit : .max)
        if short { rig.dispatcher.openDescriptorCount = { limit - ConnectionDispatcher.descriptorReserve - room } }
        var served: [Int: Int] = [:]  // id → the lane whose worker received it
        var drained = Array(repeating: false, count: lanes)
        var killed = Array(repeating: false, count: lanes)  // disconnected, not yet reaped
        var gone = Array(repeating: false, count: lanes)  // reaped, not yet replaced
        var clock = Syscalls.monotonicNanoseconds()

        func receive(_ lane: Int, frames: Int) throws {
            guard !gone[lane] else { return }
            var late = false
            let got = try rig.receive(lane, frames: frames) { late = true }
            if drained[lane] && !got.ids.isEmpty || late {
                throw Violation(description: "worker \(lane) received connections after its drain frame")
            }
            if got.messages.contains(where: { if case .drain = $0 { true } else { false } }) { drained[lane] = true }
            for id in got.ids {
                if let earlier = served[id] {
                    throw Violation(description: "connection \(id) reached worker \(earlier) and worker \(lane)")
                }
                served[id] = lane
            }
        }

        func actOnTroubles() {
            for trouble in rig.dispatcher.takeTroubles() {
                // The master kills a worker whose channel failed; SIGTERM for an undelivered drain changes nothing
                // here (the worker is told another way).
                if case .channelFailed(let lane, _) = trouble, !killed[lane], !gone[lane] {
                    rig.dispatcher.disconnect(lane)
                    killed[lane] = true
                }
            }
        }

        for _ in 0..<40 {
            let lane = Int.random(in: 0..<lanes, using: &random)
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<25:
                try rig.connect(Int.random(in: 1...4, using: &random))
            case 25..<45:
                rig.dispatcher.pump(accepting: true)
            case 45..<65:
                try receive(lane, frames: Int.random(in: 0...3, using: &random))
            case 65..<70 where !killed[lane] && !gone[lane]:
                rig.dispatcher.disconnect(lane)
                killed[lane] = true
            case 70..<76 where killed[lane]:
                rig.dispatcher.detach(lane)
                killed[lane] = false
                gone[lane] = true
            case 76..<82 where gone[lane]:
                try rig.attach(lane)
                gone[lane] = false
                drained[lane] = false
            case 82..<85 where !killed[lane] && !gone[lane] && !drained[lane]:
                _ = rig.dispatcher.drain(lane, deadlineMilliseconds: 100)
            case 85..<88 where !killed[lane] && !gone[lane]:
                shutdown(rig.dispatcher.channel(lane)!.fd, Int32(SHUT_RDWR))
            case 88..<94 where rig.dispatcher.channel(lane) != nil:
                rig.dispatcher.report(lane, open: 0)
            default:
                clock = max(clock, Syscalls.monotonicNanoseconds()) + 2_000_000
                room = Int.random(in: 0...6, using: &random)
                rig.dispatcher.runTimers(now: clock)
            }
            actOnTroubles()
        }

        // The stop: what waits goes to workers that still take connections, the rest is closed and counted; then
        // the workers that run receive what is queued for them, and the others are reaped.
        rig.dispatcher.pump(accepting: true)
        actOnTroubles()
        let accepted = Int(rig.dispatcher.counters.accepted)
        var closed = rig.dispatcher.stop()
        for lane in 0..<lanes where rig.dispatcher.channel(lane) != nil { try receive(lane, frames: .max) }
        for lane in 0..<lanes { rig.dispatcher.detach(lane) }
        closed += rig.dispatcher.closeAll()
        guard served.count + closed == accepted else {
            throw Violation(
                description: "\(accepted) accepted, \(served.count) received by workers, \(closed) closed by the master")
        }
        for id in rig.clients.keys.sorted() where !rig.clientSeesEnd(id) {
            throw Violation(description: "client \(id) still sees its connection open: a copy was leaked")
        }
    }
}
