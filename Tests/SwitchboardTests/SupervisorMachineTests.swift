import Testing

@testable import Switchboard

#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's rules driven event by event, without a process.
@Suite struct SupervisorMachineTests {
    typealias Machine = SupervisorMachine
    static let second: UInt64 = 1_000_000_000

    static func settings(workers: Int = 2) -> Machine.Settings {
        var restart = RestartPolicy.Settings()
        restart.baseDelay = .milliseconds(100)
        restart.maxDelay = .seconds(10)
        restart.healthyUptime = .seconds(10)
        restart.crashLoopWindow = .seconds(60)
        restart.crashLoopLimit = 3
        return Machine.Settings(
            workers: workers, readyTimeout: .seconds(2), heartbeatTimeout: .seconds(10),
            heartbeatInterval: .seconds(1), drainTimeout: .seconds(30), restart: restart)
    }

    /// A machine whose workers were all spawned (pids 100, 101, …) and reported ready at time `now`.
    static func running(workers: Int = 2, now: UInt64 = second) -> Machine {
        var machine = Machine(settings: settings(workers: workers))
        let actions = machine.handle(.start(now: now))
        #expect(actions == (0..<workers).map { .spawn(slot: $0) })
        for slot in 0..<workers {
            _ = machine.handle(.spawned(slot: slot, pid: pid_t(100 + slot), now: now))
            _ = machine.handle(.ready(slot: slot, now: now))
        }
        return machine
    }

    /// Performs the spawns among `actions` as the master would (pids from 200 up), returning the slots started.
    @discardableResult
    static func spawnAll(_ actions: [Machine.Action], in machine: inout Machine, now: UInt64) -> [Int] {
        var started: [Int] = []
        for case .spawn(let slot) in actions {
            _ = machine.handle(.spawned(slot: slot, pid: pid_t(200 + slot), now: now))
            started.append(slot)
        }
        return started
    }

    static func live(_ machine: Machine) -> Int {
        machine.workers.filter { $0.hasProcess && $0.phase != .draining && !$0.retired }.count
    }

    @Test func startingAnnouncesOnceEveryWorkerIsReady() {
        var machine = Machine(settings: Self.settings())
        #expect(machine.handle(.start(now: 0)) == [.spawn(slot: 0), .spawn(slot: 1)])
        #expect(machine.workers.map(\.id) == [1, 2])
        _ = machine.handle(.spawned(slot: 0, pid: 100, now: 0))
        _ = machine.handle(.spawned(slot: 1, pid: 101, now: 0))
        #expect(machine.handle(.ready(slot: 0, now: 1)) == [.serve(slot: 0)])
        #expect(machine.handle(.ready(slot: 1, now: 1)) == [.serve(slot: 1), .listening])
        #expect(machine.handle(.ready(slot: 1, now: 2)) == [], "a second ready changes nothing")
    }

    /// A deploy of a broken build: the reload's new worker exits by itself, or is refused (another protocol); the
    /// abort says which, and the old workers keep serving.
    @Test func aReloadAbortNamesWhyItsNewWorkerFailed() {
        var machine = Self.running()
        let now = 2 * Self.second
        let reload = machine.handle(.reload(now: now))
        let first = Self.spawnAll(reload, in: &machine, now: now)
        #expect(first == [2])
        let exited = machine.handle(.exited(slot: 2, exit: .code(3), now: now, random: 0))
        #expect(exited.contains(.reloadAborted(generation: 2, slot: 2, cause: .exited(.code(3)))))
        #expect(machine.readyCount == 2 && machine.reload == nil)

        let again = machine.handle(.reload(now: now + Self.second))
        let second = Self.spawnAll(again, in: &machine, now: now + Self.second)
        #expect(second.count == 1)
        #expect(machine.handle(.broken(slot: second[0])) == [.kill(slot: second[0], reason: .broken)])
        let refused = machine.handle(.exited(slot: second[0], exit: .signal(SIGKILL), now: now + Self.second, random: 0))
        #expect(refused.contains(.reloadAborted(generation: 3, slot: second[0], cause: .killed(.broken))))
        #expect(machine.readyCount == 2 && machine.reload == nil)
        #expect(!refused.contains { if case .restartScheduled = $0 { true } else { false } }, "no restart for it")
    }

    /// Bug 1 of the ownership issue: the old worker being replaced is killed from outside, its replacement then
    /// misses its ready deadline and the reload aborts. The cluster must come back to two workers.
    @Test func aReloadAbortedAfterItsOldWorkerDiedConvergesBackToTheTarget() {
        var machine = Self.running()
        var now = 2 * Self.second
        let reload = machine.handle(.reload(now: now))
        #expect(reload == [.reloadStarted(generation: 2, workers: 2), .spawn(slot: 2)])
        Self.spawnAll(reload, in: &machine, now: now)
        // The old worker in slot 0 is killed by someone else while its replacement starts.
        #expect(machine.handle(.exited(slot: 0, exit: .signal(SIGKILL), now: now, random: 0)) == [
            .status("worker 1 killed by signal 9")
        ])
        // The replacement never becomes ready: killed at its deadline, the reload aborts.
        now += 3 * Self.second
        let late = machine.handle(.tick(now: now))
        #expect(late.contains(.kill(slot: 2, reason: .notReady)))
        let aborted = machine.handle(.exited(slot: 2, exit: .signal(SIGKILL), now: now, random: 0))
        #expect(aborted.contains(.reloadAborted(generation: 2, slot: 2, cause: .killed(.notReady))))
        #expect(machine.reload == nil)
        #expect(Self.live(machine) == 1, "one worker left for now")
        // The next check notices the shortfall and starts what is missing.
        now += Self.second
        let converge = machine.handle(.tick(now: now))
        #expect(converge.contains(.short(missing: 1)))
        let started = Self.spawnAll(converge, in: &machine, now: now)
        #expect(started.count == 1)
        for slot in started { _ = machine.handle(.ready(slot: slot, now: now)) }
        #expect(Self.live(machine) == 2)
        #expect(machine.readyCount == 2)
        #expect(!machine.handle(.tick(now: now + Self.second)).contains { if case .spawn = $0 { true } else { false } })
    }

    @Test func aRollingReloadReplacesEachWorkerOnlyOnceItsReplacementIsReady() {
        var machine = Self.running()
        let now = 2 * Self.second
        let start = machine.handle(.reload(now: now))
        #expect(start == [.reloadStarted(generation: 2, workers: 2), .spawn(slot: 2)])
        #expect(machine.workers[2].generation == 2)
        Self.spawnAll(start, in: &machine, now: now)
        #expect(machine.handle(.reload(now: now)) == [.reloadQueued])
        let first = machine.handle(.ready(slot: 2, now: now))
        #expect(first == [.serve(slot: 2), .status("worker 3 ready"), .drain(slot: 0), .spawn(slot: 3)])
        Self.spawnAll(first, in: &machine, now: now)
        let second = machine.handle(.ready(slot: 3, now: now))
        #expect(
            second == [
                .serve(slot: 3), .status("worker 4 ready"), .drain(slot: 1),
                .reloadFinished(generation: 2, replaced: 2),
                // The queued reload starts at once.
                .reloadStarted(generation: 3, workers: 2), .spawn(slot: 4),
            ])
        #expect(machine.readyCount == 2)
    }

    @Test func aCrashRestartsWithBackoffAndACrashLoopHalts() {
        var machine = Self.running()
        var now = 2 * Self.second
        var delays: [UInt64] = []
        // The limit is 3: the fourth early exit within the window halts.
        for round in 0..<4 {
            let actions = machine.handle(.exited(slot: 0, exit: .code(1), now: now, random: 0))
            if round < 3 {
                guard case .restartScheduled(0, let delay, _, .failed)? = actions.last else {
                    Issue.record("no restart: \(actions)")
                    return
                }
                delays.append(delay)
                now += delay
                let respawn = machine.handle(.tick(now: now))
                #expect(respawn.contains(.spawn(slot: 0)))
                Self.spawnAll(respawn, in: &machine, now: now)
            } else {
                #expect(actions.contains(.halt(earlyExits: 4)))
                #expect(actions.contains(.stopping))
                #expect(actions.contains(.drain(slot: 1)))
            }
        }
        #expect(delays.count == 3 && delays[1] > delays[0] && delays[2] > delays[1], "backoff grows: \(delays)")
        _ = machine.handle(.exited(slot: 1, exit: .code(0), now: now, random: 0))
        #expect(machine.state == .finished(exitCode: SwitchboardError.Code.crashLoop.exitCode))
    }

    @Test func anOutsideKillAndResourcePressureNeverCountTowardTheHalt() {
        var machine = Self.running()
        var now = 2 * Self.second
        for round in 0..<8 {
            let exit: Machine.Exit = round.isMultiple(of: 2) ? .signal(SIGKILL) : .code(WorkerRuntime.resourcePressureExitCode)
            let actions = machine.handle(.exited(slot: 0, exit: exit, now: now, random: 0))
            #expect(!actions.contains { if case .halt = $0 { true } else { false } }, "round \(round): \(actions)")
            now += 11 * Self.second
            Self.spawnAll(machine.handle(.tick(now: now)), in: &machine, now: now)
        }
        #expect(machine.state == .running)
    }

    @Test func aWorkerTheMasterKilledIsAVerdictNotAnOutsideKill() {
        var machine = Self.running()
        #expect(machine.handle(.broken(slot: 0)) == [.kill(slot: 0, reason: .broken)])
        #expect(machine.workers[0].killedByMaster)
        #expect(machine.handle(.broken(slot: 0)) == [], "killed once")
        #expect(machine.handle(.channelFailed(slot: 1)) == [.kill(slot: 1, reason: .channelFailed)])
        #expect(!machine.workers[1].killedByMaster)
    }

    @Test func healthChecksKillTheLateTheSilentAndTheOverdue() {
        var machine = Self.running(workers: 3)  // started and ready at 1 s
        let second = Self.second
        _ = machine.handle(.scaleDown(now: second))  // slot 2 drains, deadline 31 s
        _ = machine.handle(.heartbeat(slot: 0, now: 10 * second))
        _ = machine.handle(.heartbeat(slot: 2, now: 10 * second))
        let actions = machine.handle(.tick(now: 12 * second))
        #expect(actions == [.kill(slot: 1, reason: .hung)], "slot 1 silent for 11 s; the others 2 s")
        _ = machine.handle(.heartbeat(slot: 0, now: 30 * second))
        _ = machine.handle(.heartbeat(slot: 2, now: 30 * second))
        #expect(machine.handle(.tick(now: 32 * second)) == [.kill(slot: 2, reason: .drainOverdue)])

        var starting = Machine(settings: Self.settings(workers: 1))
        _ = starting.handle(.start(now: 0))
        _ = starting.handle(.spawned(slot: 0, pid: 100, now: 0))
        #expect(starting.handle(.tick(now: second)) == [])
        #expect(starting.handle(.tick(now: 3 * second)) == [.kill(slot: 0, reason: .notReady)])
    }

    /// The stop rule, written once: the first stop drains, another one kills unless it is SIGQUIT's graceful kind.
    @Test func theStopRule() {
        var machine = Self.running()
        let now = 2 * Self.second
        #expect(machine.handle(.stop(exitCode: 0, now: now, escalate: true)) == [.stopping, .drain(slot: 0), .drain(slot: 1)])
        #expect(machine.handle(.stop(exitCode: 0, now: now, escalate: false)) == [.stopAlreadyRunning])
        #expect(machine.handle(.reload(now: now)) == [], "no reload while stopping")
        #expect(machine.handle(.scaleUp(now: now)) == [])
        #expect(
            machine.handle(.stop(exitCode: 0, now: now, escalate: true))
                == [.kill(slot: 0, reason: .stopEscalated), .kill(slot: 1, reason: .stopEscalated)])
        _ = machine.handle(.exited(slot: 0, exit: .signal(SIGKILL), now: now, random: 0))
        #expect(machine.state != .finished(exitCode: 0))
        #expect(machine.handle(.tick(now: now + Self.second)) == [], "no restart while stopping")
        _ = machine.handle(.exited(slot: 1, exit: .signal(SIGKILL), now: now, random: 0))
        #expect(machine.state == .finished(exitCode: 0))
    }

    @Test func theStopDeadlineKillsWhatStillRuns() {
        var machine = Self.running()
        _ = machine.handle(.stop(exitCode: 0, now: 0, escalate: false))
        _ = machine.handle(.exited(slot: 0, exit: .code(0), now: Self.second, random: 0))
        #expect(machine.nextDeadline <= 30 * Self.second)
        #expect(
            machine.handle(.tick(now: 30 * Self.second))
                == [.stopDeadlinePassed, .kill(slot: 1, reason: .stopDeadline)])
        #expect(machine.handle(.tick(now: 31 * Self.second)) == [], "killed once")
    }

    @Test func scalingNeverGoesBelowOneWorker() {
        var machine = Self.running(workers: 1)
        #expect(machine.handle(.scaleDown(now: 0)) == [.scaleDownRefused])
        let up = machine.handle(.scaleUp(now: 0))
        #expect(up == [.scaled(target: 2), .spawn(slot: 1)])
        Self.spawnAll(up, in: &machine, now: 0)
        #expect(machine.handle(.scaleDown(now: 0)) == [.scaled(target: 1), .drain(slot: 1)])
        #expect(machine.handle(.scaleDown(now: 0)) == [.scaleDownRefused])
        _ = machine.handle(.exited(slot: 1, exit: .code(0), now: Self.second, random: 0))
        // The retired slot is reused by the next worker.
        #expect(machine.handle(.scaleUp(now: Self.second)) == [.scaled(target: 2), .spawn(slot: 1)])
    }

    @Test func aSpawnThatFailsIsRetriedAndAFailedReplacementAbortsTheReload() {
        var machine = Self.running()
        _ = machine.handle(.exited(slot: 0, exit: .code(0), now: Self.second, random: 0))
        _ = machine.handle(.heartbeat(slot: 1, now: 11 * Self.second))
        let restart = machine.handle(.tick(now: 12 * Self.second))
        #expect(restart.contains(.spawn(slot: 0)))
        #expect(machine.handle(.spawnFailed(slot: 0, now: 12 * Self.second)) == [])
        #expect(machine.nextDeadline <= 13 * Self.second)
        #expect(machine.handle(.tick(now: 13 * Self.second)).contains(.spawn(slot: 0)))
        _ = machine.handle(.spawned(slot: 0, pid: 300, now: 13 * Self.second))
        _ = machine.handle(.ready(slot: 0, now: 13 * Self.second))

        let reload = machine.handle(.reload(now: 14 * Self.second))
        guard case .spawn(let replacement)? = reload.last else {
            Issue.record("no replacement: \(reload)")
            return
        }
        #expect(
            machine.handle(.spawnFailed(slot: replacement, now: 14 * Self.second))
                == [.reloadAborted(generation: 2, slot: replacement, cause: .couldNotStart)])
        #expect(machine.reload == nil)
        #expect(machine.readyCount == 2)
    }
}

extension SupervisorMachineTests {
    /// Kubernetes' preStop pattern, built in: the stop is announced for the shutdown delay while serving goes on.
    @Test func aShutdownDelayAnnouncesTheStopBeforeTheDrain() {
        var settings = Self.settings()
        settings.shutdownDelay = 2 * Self.second
        var machine = Machine(settings: settings)
        for case .spawn(let slot) in machine.handle(.start(now: 0)) {
            _ = machine.handle(.spawned(slot: slot, pid: pid_t(100 + slot), now: 0))
            _ = machine.handle(.ready(slot: slot, now: 0))
        }
        #expect(!machine.isStopAnnounced)
        #expect(machine.handle(.stop(exitCode: 0, now: Self.second, escalate: true)) == [.stopAnnounced(delay: 2 * Self.second)])
        #expect(machine.isStopAnnounced && machine.state == .running)
        #expect(machine.nextDeadline <= 3 * Self.second)
        #expect(machine.handle(.tick(now: 2 * Self.second)).isEmpty)
        #expect(machine.handle(.tick(now: 3 * Self.second)) == [.stopping, .drain(slot: 0), .drain(slot: 1)])

        // A second stop during the delay drains at once.
        var again = Machine(settings: settings)
        for case .spawn(let slot) in again.handle(.start(now: 0)) {
            _ = again.handle(.spawned(slot: slot, pid: pid_t(100 + slot), now: 0))
        }
        _ = again.handle(.stop(exitCode: 0, now: 0, escalate: true))
        #expect(again.handle(.stop(exitCode: 0, now: 1, escalate: true)) == [.stopping, .drain(slot: 0), .drain(slot: 1)])
    }
}
