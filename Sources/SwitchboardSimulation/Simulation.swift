

import Switchboard

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// A deterministic simulation of the supervisor: the machine under test, a small dumb model of the world around it
/// (worker processes that start, become ready, heartbeat, hang, crash, drain and exit; spawns that fail; time), a
/// schedule of commands and faults, and invariants checked after every step. The approach of FoundationDB's
/// simulation testing and TigerBeetle's VOPR, at the size of this machine.
///
/// A schedule is a plain list of ``Command``s; the world's answers to the machine are a function of the schedule
/// alone (no clock, no randomness of its own), so a failing schedule replays exactly and can be shrunk.
package struct Simulation {
    /// What the schedule does to the world, one step at a time.
    package enum Command: Equatable, CustomStringConvertible, Sendable {
        /// Time passes, in steps of ``Simulation/step``.
        case advance(milliseconds: Int)
        /// The `index`-th live worker (mod their count) exits with code 1.
        case crash(Int)
        /// The `index`-th live worker stops: no heartbeat, no ready, no exit until it is killed.
        case hang(Int)
        /// The `index`-th live worker is SIGKILLed by someone else.
        case killFromOutside(Int)
        /// Workers spawned from now on never become ready (a broken build), or do again.
        case brokenBuild(Bool)
        /// Spawns from now on fail (or succeed again).
        case spawnsFail(Bool)
        case reload
        /// The `index`-th live worker reached a recycling limit (a one-worker rolling reload).
        case recycle(Int)
        case scaleUp
        case scaleDown
        case scaleTo(Int)
        case stop(escalate: Bool)
        /// The master upgrades in place: its machine goes through the hand-over (JSON) into a new image's machine,
        /// which goes on where it stopped (the world notices nothing), then reloads the workers unless `masterOnly`.
        case upgradeMaster(masterOnly: Bool)

        package var description: String {
            switch self {
            case .advance(let milliseconds): ".advance(milliseconds: \(milliseconds))"
            case .crash(let index): ".crash(\(index))"
            case .hang(let index): ".hang(\(index))"
            case .killFromOutside(let index): ".killFromOutside(\(index))"
            case .brokenBuild(let on): ".brokenBuild(\(on))"
            case .spawnsFail(let on): ".spawnsFail(\(on))"
            case .reload: ".reload"
            case .recycle(let index): ".recycle(\(index))"
            case .scaleUp: ".scaleUp"
            case .scaleDown: ".scaleDown"
            case .scaleTo(let count): ".scaleTo(\(count))"
            case .stop(let escalate): ".stop(escalate: \(escalate))"
            case .upgradeMaster(let masterOnly): ".upgradeMaster(masterOnly: \(masterOnly))"
            }
        }

        var isTimePassing: Bool {
            if case .advance = self { return true }
            return false
        }

        /// A fault: convergence is judged only after the world has been quiet for a while.
        var isFault: Bool {
            switch self {
            case .crash, .hang, .killFromOutside, .brokenBuild(true), .spawnsFail(true): true
            default: false
            }
        }
    }

    /// A worker process in the world.
    struct Process {
        var pid: pid_t
        var slot: Int
        var spawnedAt: UInt64
        var broken: Bool
        var hung = false
        var readySent = false
        /// When it exits, once it was told to drain or was killed.
        var exitAt: UInt64?
        var exit: SupervisorMachine.Exit = .code(0)
    }

    package struct Violation: Error, CustomStringConvertible {
        var step: Int
        var what: String
        package var description: String { "step \(step): \(what)" }
    }

    static let second: UInt64 = 1_000_000_000
    /// The heartbeat interval: live workers report this often.
    static let step: UInt64 = 250_000_000
    /// How long a normal worker takes to become ready, to drain, and to die once killed.
    static let readyAfter: UInt64 = 100_000_000
    static let drainTakes: UInt64 = 200_000_000
    static let killTakes: UInt64 = 10_000_000

    static func settings(workers: Int) -> SupervisorMachine.Settings {
        var restart = RestartPolicy.Settings()
        restart.baseDelay = .milliseconds(100)
        restart.maxDelay = .seconds(1)
        restart.healthyUptime = .seconds(2)
        restart.crashLoopLimit = nil
        restart.jitter = 0
        return SupervisorMachine.Settings(
            workers: workers, readyTimeout: .seconds(2), heartbeatTimeout: .seconds(3),
            heartbeatInterval: .milliseconds(250), drainTimeout: .seconds(4), restart: restart)
    }

    /// How long after the last fault or command the cluster must be back at its target: one replacement round at
    /// its slowest (heartbeat timeout, restart delay, ready timeout), a drain, and checks.
    static let settle: UInt64 = 8 * second

    var machine: SupervisorMachine
    var processes: [pid_t: Process] = [:]
    var now: UInt64 = second
    var nextPID: pid_t = 100
    var brokenBuild = false
    var spawnsFail = false
    var stepNumber = 0
    /// When the last fault or command (other than time passing) happened.
    var lastDisturbance: UInt64 = second
    /// When the last fault happened.
    var lastFault: UInt64 = 0
    /// When a stop was asked for.
    var stopAskedAt: UInt64?
    /// A reload asked for while the cluster was settled; cleared by any fault or scaling: until it ends, the ready
    /// count may never drop below the target.
    var cleanReload = false
    /// Events raised while actions were performed, handled one at a time after the current one.
    var queue: [SupervisorMachine.Event] = []

    init(workers: Int) {
        machine = SupervisorMachine(settings: Self.settings(workers: workers))
        submit(.start(now: now))
    }

    // MARK: running a schedule

    /// Runs `schedule`, checking the invariants after every step.
    /// - Throws: The first ``Violation``.
    package static func run(_ schedule: [Command], workers: Int) throws(Violation) {
        var simulation = Simulation(workers: workers)
        try simulation.check()
        for command in schedule {
            try simulation.perform(command)
        }
        // The world goes quiet: everything must settle.
        try simulation.perform(.advance(milliseconds: Int(settle / 1_000_000) + 1_000))
        try simulation.checkSettled(final: true)
    }

    mutating func perform(_ command: Command) throws(Violation) {
        stepNumber += 1
        if !command.isTimePassing {
            // A fault, a fault switched off, or a command: the cluster owes convergence from here.
            lastDisturbance = now
        }
        if command.isFault {
            cleanReload = false
            lastFault = now
        }
        switch command {
        case .advance(let milliseconds):
            let end = now + UInt64(milliseconds) * 1_000_000
            while now < end {
                // Straight to the next moment anything happens: a process event, a timer of the machine, or the next
                // heartbeat (every ``step``).
                now = max(now + 1, min(end, now + Self.step, nextWorldEvent, machine.nextDeadline))
                worldStep()
                try check()
            }
            return
        case .crash(let index):
            if let pid = livePID(index) { end(pid, .code(1)) }
        case .hang(let index):
            if let pid = livePID(index) { processes[pid]?.hung = true }
        case .killFromOutside(let index):
            if let pid = livePID(index) { end(pid, .signal(SIGKILL)) }
        case .brokenBuild(let on):
            brokenBuild = on
        case .spawnsFail(let on):
            spawnsFail = on
        case .reload:
            cleanReload = isSettled && now - lastFault > Self.settle
            submit(.reload(now: now))
        case .recycle(let index):
            // As the master asks: only for a live worker; the machine ignores it unless the worker is ready and no
            // reload or recycle runs. One begun on a settled cluster must keep every ready worker, as a reload must.
            if let pid = livePID(index), let slot = processes[pid]?.slot {
                if machine.reload == nil { cleanReload = isSettled && now - lastFault > Self.settle }
                submit(.recycle(slot: slot, reason: .requests, now: now))
            }
        case .scaleUp:
            cleanReload = false
            submit(.scaleUp(now: now))
        case .scaleDown:
            cleanReload = false
            submit(.scaleDown(now: now))
        case .scaleTo(let count):
            cleanReload = false
            submit(.scaleTo(count: count, now: now))
        case .stop(let escalate):
            if stopAskedAt == nil { stopAskedAt = now }
            submit(.stop(exitCode: 0, now: now, escalate: escalate))
        case .upgradeMaster(let masterOnly):
            // As the master does: only while running (a stopping master refuses), then a reload unless master-only.
            guard machine.state == .running && !machine.isStopAnnounced else { break }
            let before = machine.snapshot
            let handed: SupervisorMachine.Snapshot
            do {
                handed = try JSONDecoder().decode(
                    SupervisorMachine.Snapshot.self, from: try JSONEncoder().encode(before))
            } catch {
                throw Violation(step: stepNumber, what: "the machine's hand-over does not round-trip: \(error)")
            }
            machine = SupervisorMachine(settings: machine.settings, restoring: handed)
            guard machine.snapshot == before else {
                throw Violation(step: stepNumber, what: "the adopted machine differs from the one handed over")
            }
            if !masterOnly {
                cleanReload = isSettled && now - lastFault > Self.settle
                submit(.reload(now: now))
            }
        }
        try check()
    }

    /// One step of time: workers report, processes exit, the machine's timers fire.
    mutating func worldStep() {
        for pid in processes.keys.sorted() {
            guard var process = processes[pid] else { continue }
            if let exitAt = process.exitAt, exitAt <= now {
                processes[pid] = nil
                submit(.exited(slot: process.slot, exit: process.exit, now: now, random: 0.5))
                continue
            }
            guard !process.hung else { continue }
            let phase = machine.workers[process.slot].phase
            if !process.readySent && !process.broken && now >= process.spawnedAt + Self.readyAfter {
                process.readySent = true
                processes[pid] = process
                submit(.ready(slot: process.slot, now: now))
            }
            if process.readySent && (phase == .ready || phase == .draining) {
                submit(.heartbeat(slot: process.slot, now: now))
            }
        }
        if now >= machine.nextDeadline { submit(.tick(now: now)) }
    }

    /// Feeds `event` to the machine, and every event its actions raise, one at a time, in order.
    mutating func submit(_ event: SupervisorMachine.Event) {
        queue.append(event)
        guard queue.count == 1 else { return }  // already draining the queue
        while let next = queue.first {
            for action in machine.handle(next) { perform(action) }
            queue.removeFirst()
        }
    }

    /// What the master would do for `action`, in the world.
    mutating func perform(_ action: SupervisorMachine.Action) {
        switch action {
        case .spawn(let slot):
            if spawnsFail {
                queue.append(.spawnFailed(slot: slot, now: now))
            } else {
                let pid = nextPID
                nextPID += 1
                processes[pid] = Process(pid: pid, slot: slot, spawnedAt: now, broken: brokenBuild)
                queue.append(.spawned(slot: slot, pid: pid, now: now))
            }
        case .kill(let slot, _):
            let pid = machine.workers[slot].pid
            if processes[pid] != nil { end(pid, .signal(SIGKILL), after: Self.killTakes) }
        case .drain(let slot):
            let pid = machine.workers[slot].pid
            if let process = processes[pid], !process.hung { end(pid, .code(0), after: Self.drainTakes) }
        default:
            break
        }
    }

    /// The next moment a process becomes ready or exits.
    var nextWorldEvent: UInt64 {
        var next = UInt64.max
        for process in processes.values {
            if let exitAt = process.exitAt { next = min(next, exitAt) }
            if !process.readySent && !process.broken && !process.hung {
                next = min(next, process.spawnedAt + Self.readyAfter)
            }
        }
        return next
    }

    /// The process `pid` exits with `exit` after `delay`, unless it exits sooner already.
    mutating func end(_ pid: pid_t, _ exit: SupervisorMachine.Exit, after delay: UInt64 = 0) {
        guard var process = processes[pid] else { return }
        let at = now + delay
        if let already = process.exitAt, already <= at { return }
        process.exitAt = at
        process.exit = exit
        processes[pid] = process
    }

    func livePID(_ index: Int) -> pid_t? {
        let live = processes.values.filter { $0.exitAt == nil }.map(\.pid).sorted()
        guard !live.isEmpty else { return nil }
        return live[abs(index) % live.count]
    }

    // MARK: invariants

    /// Workers that count toward the target in the machine's own view.
    var counted: Int {
        machine.workers.filter { !$0.retired && $0.isAttached && $0.phase != .draining }.count
    }

    var isSettled: Bool {
        machine.state == .running && machine.reload == nil && machine.readyCount == machine.target
            && counted == machine.target
    }

    func check() throws(Violation) {
        // Every process the machine thinks it has is one process of the world, and the other way round: no worker
        // is lost track of (it would run forever, or its slot would never be refilled), none counted twice.
        var seen: Set<pid_t> = []
        for (slot, worker) in machine.workers.enumerated() where worker.hasProcess {
            guard processes[worker.pid]?.slot == slot else {
                throw Violation(step: stepNumber, what: "slot \(slot) has pid \(worker.pid), which is not running")
            }
            guard seen.insert(worker.pid).inserted else {
                throw Violation(step: stepNumber, what: "pid \(worker.pid) is in two slots")
            }
        }
        for process in processes.values where !seen.contains(process.pid) {
            throw Violation(step: stepNumber, what: "pid \(process.pid) runs, but no slot knows it")
        }
        if cleanReload && machine.reload != nil && machine.readyCount < machine.target {
            throw Violation(
                step: stepNumber,
                what: "a reload without faults has \(machine.readyCount) ready workers, below the target \(machine.target)")
        }
        if let asked = stopAskedAt, now - asked > Self.settings(workers: 1).drainTimeout + 2 * Self.second {
            guard case .finished = machine.state, processes.isEmpty else {
                throw Violation(step: stepNumber, what: "a stop asked for at \(asked) has not ended (\(machine.state))")
            }
        }
        if now - lastDisturbance > Self.settle { try checkSettled(final: false) }
    }

    /// Long after the last fault and command, the count is the target, all ready.
    func checkSettled(final: Bool) throws(Violation) {
        guard stopAskedAt == nil, !brokenBuild, !spawnsFail, machine.state == .running else { return }
        guard isSettled else {
            let phases = machine.workers.map { "\($0.phase)\($0.retired ? "(retired)" : "")" }
            throw Violation(
                step: stepNumber,
                what: "\(Double(now - lastDisturbance) / 1e9) s after the last disturbance: target \(machine.target), "
                    + "\(counted) counted, \(machine.readyCount) ready, reload \(machine.reload != nil): \(phases)")
        }
    }
}

extension Simulation {
    /// A random schedule: mostly time passing, with faults and commands among it; a stop now and then at the end.
    /// - Parameter recycles: Some reloads become recycles of one worker (the schedules without keep the seeds of
    ///   earlier runs: seed 33 is still the one that found issue 19's bug 1).
    /// - Parameter upgrades: Some time steps become upgrades of the master in place.
    package static func schedule(
        seed: UInt64, length: Int = 24, recycles: Bool = false, upgrades: Bool = false
    ) -> [Command] {
        var random = SplitMix64(seed: seed)
        var commands: [Command] = []
        for _ in 0..<length {
            let roll = Int.random(in: 0..<100, using: &random)
            let index = Int.random(in: 0..<8, using: &random)
            switch roll {
            case 0..<40 where upgrades && index >= 6: commands.append(.upgradeMaster(masterOnly: index == 7))
            case 0..<40: commands.append(.advance(milliseconds: [50, 100, 300, 800, 2_000, 5_000][index % 6]))
            case 40..<48: commands.append(.crash(index))
            case 48..<53: commands.append(.hang(index))
            case 53..<57: commands.append(.killFromOutside(index))
            case 57..<61: commands.append(.brokenBuild(index % 2 == 0))
            case 61..<64: commands.append(.spawnsFail(index % 2 == 0))
            case 64..<74: commands.append(recycles && index >= 5 ? .recycle(index) : .reload)
            case 74..<80: commands.append(.scaleUp)
            case 80..<86: commands.append(.scaleDown)
            case 86..<96: commands.append(.scaleTo(1 + index % 4))
            default: commands.append(.stop(escalate: index % 4 == 0))
            }
        }
        // Faults switched on are switched off again before the quiet end, so settling is owed.
        commands.append(.brokenBuild(false))
        commands.append(.spawnsFail(false))
        return commands
    }

    /// The shortest schedule (by removing commands one at a time while it still fails) that fails as `schedule`
    /// does.
    package static func shrink(_ schedule: [Command], workers: Int) -> [Command] {
        var current = schedule
        var progress = true
        while progress {
            progress = false
            var index = 0
            while index < current.count {
                var candidate = current
                candidate.remove(at: index)
                if (try? run(candidate, workers: workers)) == nil {
                    current = candidate
                    progress = true
                } else {
                    index += 1
                }
            }
        }
        return current
    }
}

extension Simulation {
    /// A schedule that broke an invariant, shrunk.
    package struct Failure: Error, CustomStringConvertible {
        package var seed: UInt64
        /// How many schedules were run, this one included.
        package var schedulesRun: Int
        package var workers: Int
        package var violation: Violation
        package var shrunk: [Command]
        /// The violation the shrunk schedule shows.
        package var shrunkViolation: String

        package var description: String {
            """
            seed \(seed) (\(schedulesRun) schedules in), \(workers) workers: \(violation)
            shrunk to \(shrunk.count) commands (\(shrunkViolation)):
            \(shrunk)
            """
        }
    }

    /// The number of workers a seed's schedule starts with (1 to 3).
    package static func workers(seed: UInt64) -> Int { 1 + Int(seed % 3) }

    /// Runs the schedules of seeds `first..<first + count`, stopping at the first that breaks an invariant.
    /// - Parameter progress: Called every `progressEvery` schedules with the count run so far.
    /// - Returns: The first failure, shrunk; nil when every schedule kept every invariant.
    package static func explore(
        from first: UInt64, count: Int, recycles: Bool = false, upgrades: Bool = false, progressEvery: Int = 0,
        progress: (Int) -> Void = { _ in }
    ) -> Failure? {
        for offset in 0..<count {
            let seed = first &+ UInt64(offset)
            let workers = Self.workers(seed: seed)
            let schedule = Self.schedule(seed: seed, recycles: recycles, upgrades: upgrades)
            do {
                try run(schedule, workers: workers)
            } catch {
                let shrunk = shrink(schedule, workers: workers)
                let again: String
                do {
                    try run(shrunk, workers: workers)
                    again = "no failure"
                } catch {
                    again = error.description
                }
                return Failure(
                    seed: seed, schedulesRun: offset + 1, workers: workers, violation: error, shrunk: shrunk,
                    shrunkViolation: again)
            }
            if progressEvery > 0 && (offset + 1) % progressEvery == 0 { progress(offset + 1) }
        }
        return nil
    }
}
