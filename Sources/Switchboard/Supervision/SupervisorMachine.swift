#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's decisions as one value: events in, actions out, the way ``RollingReload`` works.
///
/// No I/O, no clock, no logging: time arrives with the events, and ``Master`` performs the actions around its epoll
/// set (starting processes, killing them, sending drains, telling systemd, logging). Every worker's lifecycle state
/// lives here and nowhere else, and the rules that change it are written once: health timeouts, restarts and their
/// backoff, the stop rule, rolling reloads, scaling.
///
/// The worker count is declarative: whatever path lost a worker (a crash, an outside kill, a reload that aborted
/// after the worker it was replacing died), the next check starts what is missing, so the cluster converges back to
/// ``target``.
package struct SupervisorMachine {
    /// The timing rules, in nanoseconds.
    package struct Settings: Equatable {
        package var workers: Int
        package var readyTimeout: UInt64
        package var heartbeatTimeout: UInt64
        package var drainTimeout: UInt64
        /// How long a stop is announced (readiness 503, agent `drain`) before the drain begins.
        package var shutdownDelay: UInt64 = 0
        /// How often health is checked (and the target compared with what runs).
        package var checkInterval: UInt64
        package var restart: RestartPolicy.Settings

        package init(
            workers: Int, readyTimeout: Duration, heartbeatTimeout: Duration, heartbeatInterval: Duration,
            drainTimeout: Duration, restart: RestartPolicy.Settings
        ) {
            func nanoseconds(_ duration: Duration) -> UInt64 { UInt64(max(duration.nanoseconds, 0)) }
            self.workers = workers
            self.readyTimeout = nanoseconds(readyTimeout)
            self.heartbeatTimeout = nanoseconds(heartbeatTimeout)
            self.drainTimeout = nanoseconds(drainTimeout)
            self.checkInterval = min(nanoseconds(heartbeatInterval), 250_000_000)
            self.restart = restart
        }

        package init(_ configuration: Configuration) {
            self.init(
                workers: configuration.workers, readyTimeout: configuration.readyTimeout,
                heartbeatTimeout: configuration.heartbeatTimeout, heartbeatInterval: configuration.heartbeatInterval,
                drainTimeout: configuration.drainTimeout, restart: configuration.restart)
            shutdownDelay = UInt64(max(configuration.shutdownDelay.nanoseconds, 0))
        }
    }

    package enum Phase: Equatable, Sendable, Codable {
        /// No process; a replacement may be due at `respawnAt`.
        case empty
        /// Spawned, not yet ready.
        case starting
        /// Serving; the scheduler may pick it.
        case ready
        /// Told to drain; no new connections.
        case draining
        /// Killed or cut off; waiting to be reaped.
        case exiting
    }

    /// One slot (0..<n): the worker filling it now. Slot numbers are stable; worker ids grow from 1, never reused.
    package struct Worker: Equatable, Codable {
        package var phase = Phase.empty
        package var id = 0
        package var pid: pid_t = 0
        package var generation = 0
        package var startedAt: UInt64 = 0
        package var lastHeartbeat: UInt64 = 0
        /// When a draining worker is killed if it has not exited.
        package var drainDeadline: UInt64?
        package var respawnAt: UInt64?
        /// The stop, a reload or scaling down asked for its exit: not a crash.
        package var exitIntended = false
        /// The master killed it (hung, broken, late): its SIGKILL is a verdict, not an outside kill.
        package var killedByMaster = false
        /// Why the master killed it, if it did.
        package var killReason: KillReason?
        /// Removed by scaling down or replaced by a reload: not refilled.
        package var retired = false
        /// Restarts of this slot after unintended exits.
        package var restarts = 0

        package var hasProcess: Bool { phase != .empty }
        package var isAttached: Bool { phase == .starting || phase == .ready || phase == .draining }
    }

    package enum RunState: Equatable, Codable {
        case running
        case stopping(deadline: UInt64)
        case finished(exitCode: Int32)
    }

    /// How a reaped worker ended.
    package enum Exit: Equatable {
        case code(Int32)
        case signal(Int32)
        /// Gone, but reaped by someone else (the kernel, when SIGCHLD was ignored, or another waiter).
        case unknown

        var text: String {
            switch self {
            case .code(let code): "exited with code \(code)"
            case .signal(let signal): "killed by signal \(signal)"
            case .unknown: "is gone, exit status unknown (reaped elsewhere: SIGCHLD ignored, or another waiter)"
            }
        }

        /// The exit code, for ``SupervisorEvent/exit(_:code:signal:intended:)``.
        var code: Int32? {
            if case .code(let code) = self { code } else { nil }
        }

        /// The signal that killed it.
        var signal: Int32? {
            if case .signal(let signal) = self { signal } else { nil }
        }
    }

    package enum Event: Equatable {
        /// Start the configured workers.
        case start(now: UInt64)
        /// The process for `slot` (asked for with ``Action/spawn(slot:)``) runs as `pid`.
        case spawned(slot: Int, pid: pid_t, now: UInt64)
        /// The process for `slot` could not be started.
        case spawnFailed(slot: Int, now: UInt64)
        case ready(slot: Int, now: UInt64)
        case heartbeat(slot: Int, now: UInt64)
        /// The worker broke the protocol: the master's verdict is that it goes.
        case broken(slot: Int)
        /// The worker's channel failed: it is going anyway.
        case channelFailed(slot: Int)
        /// The worker's process was reaped. `random` in 0..<1 jitters the restart backoff.
        case exited(slot: Int, exit: Exit, now: UInt64, random: Double)
        /// Time passed; due when ``nextDeadline`` says.
        case tick(now: UInt64)
        /// Stop gracefully with `exitCode`. While a stop runs already, `escalate` kills every worker now (a second
        /// SIGTERM or SIGINT, or ``Supervisor/stop()`` again); without it (SIGQUIT) the drain goes on.
        case stop(exitCode: Int32, now: UInt64, escalate: Bool)
        case reload(now: UInt64)
        case scaleUp(now: UInt64)
        case scaleDown(now: UInt64)
        /// Exactly `count` workers (at least one): as many scale-ups or downs as that takes, none lost to signal
        /// coalescing.
        case scaleTo(count: Int, now: UInt64)
        /// Replace the ready worker in `slot` (it reached a limit): a one-worker rolling reload, its replacement
        /// ready before it drains. Ignored while a reload or another recycle runs, or when the worker is not ready
        /// (the master asks again at its next check).
        case recycle(slot: Int, reason: RecycleReason, now: UInt64)
    }

    /// Why a worker is recycled.
    package enum RecycleReason: String, Equatable, Sendable, CaseIterable, Codable {
        case requests
        case memory
        case lifetime
    }

    /// The recycle running: the reload in ``reload`` replaces this one worker.
    package struct Recycle: Equatable, Sendable, Codable {
        package var slot: Int
        package var reason: RecycleReason
    }

    /// Why the master kills a worker.
    package enum KillReason: Equatable, Codable {
        case notReady
        case hung
        case drainOverdue
        case broken
        case channelFailed
        case replacementAborted
        case stopDeadline
        case stopEscalated
    }

    /// Why a reload's new worker failed, for the one line that says why the reload stopped.
    package enum ReplacementFailure: Equatable {
        /// Its process could not be started (the file is missing, not executable, not a program).
        case couldNotStart
        /// It exited by itself before it was ready.
        case exited(Exit)
        /// The master killed it: not ready in time, or refused (it spoke another protocol).
        case killed(KillReason)
    }

    package enum Action: Equatable {
        /// Start a worker in `slot` (its id and generation are in ``workers``), then report ``Event/spawned`` or
        /// ``Event/spawnFailed``.
        case spawn(slot: Int)
        /// SIGKILL the worker and cut its channel; its reap comes later.
        case kill(slot: Int, reason: KillReason)
        /// Take it out of the rotation and tell it to drain within ``Settings/drainTimeout``.
        case drain(slot: Int)
        /// It is ready: dispatch to it.
        case serve(slot: Int)
        /// Every configured worker is ready, for the first time: announce (systemd READY, the listening event).
        case listening
        /// Something systemd's STATUS should say.
        case status(String)
        /// A worker that exited unintended restarts after `delay` nanoseconds.
        case restartScheduled(slot: Int, delay: UInt64, earlyExits: Int, cause: RestartPolicy.ExitCause)
        /// Workers exited early `earlyExits` times within the crash-loop window: the master stops with exit 70.
        case halt(earlyExits: Int)
        /// A stop was asked for with a shutdown delay: load balancers are told (readiness 503, agent `drain`) while
        /// everything keeps serving for `delay` nanoseconds; then the stop begins.
        case stopAnnounced(delay: UInt64)
        /// The stop began: stop accepting, hand out or close what waits (then the drains follow).
        case stopping
        /// The stop deadline passed with workers still running.
        case stopDeadlinePassed
        /// A stop while one runs, without escalation: nothing more to do.
        case stopAlreadyRunning
        case reloadStarted(generation: Int, workers: Int)
        case reloadQueued
        case reloadFinished(generation: Int, replaced: Int)
        /// The new worker in `slot` failed, for `cause`: the workers not yet replaced keep serving.
        case reloadAborted(generation: Int, slot: Int?, cause: ReplacementFailure)
        /// Fewer workers run or are due than the target: replacements start.
        case short(missing: Int)
        /// More workers run than the target (outside a reload): the surplus drains.
        case surplus(count: Int)
        case scaled(target: Int)
        /// Scaling down would leave no worker.
        case scaleDownRefused
        /// Scaling up would run more than `limit` workers (``Configuration/maxWorkers``).
        case scaleUpRefused(limit: Int)
        /// A recycle began: the worker in `slot` gets a replacement, then drains.
        case recycleStarted(slot: Int, reason: RecycleReason)
        /// The worker in `slot` was replaced and drains.
        case recycleFinished(slot: Int, reason: RecycleReason)
        /// The replacement failed: the worker in `slot` keeps serving.
        case recycleAborted(slot: Int, reason: RecycleReason, cause: ReplacementFailure)
    }

    package let settings: Settings
    package private(set) var workers: [Worker] = []
    /// The worker count to keep (changed by scaling).
    package internal(set) var target = 0
    package private(set) var generation = 1
    package private(set) var state = RunState.running
    /// Whether every configured worker was ready once (systemd READY sent).
    package private(set) var announced = false
    package private(set) var reload: RollingReload?
    /// Set while the reload in ``reload`` is a recycle of one worker.
    package private(set) var recycling: Recycle?
    package private(set) var reloadQueued = false
    package private(set) var restart: RestartPolicy
    private var nextWorkerID = 1
    private var stopExitCode: Int32 = 0
    private var nextCheck: UInt64 = 0
    /// When an announced stop begins (during the shutdown delay).
    package private(set) var stopDue: UInt64?

    package init(settings: Settings) {
        self.settings = settings
        self.restart = RestartPolicy(settings: settings.restart)
    }

    /// Everything the machine holds but its settings: what a master's upgrade hands to its new image (``Handover``).
    package struct Snapshot: Equatable, Codable {
        var workers: [Worker]
        var target: Int
        var generation: Int
        var state: RunState
        var announced: Bool
        var reload: RollingReload?
        var recycling: Recycle?
        var reloadQueued: Bool
        var restart: RestartPolicy.Memory
        var nextWorkerID: Int
        var stopExitCode: Int32
        var nextCheck: UInt64
        var stopDue: UInt64?
    }

    /// The machine's state, for ``init(settings:restoring:)`` in another image.
    package var snapshot: Snapshot {
        Snapshot(
            workers: workers, target: target, generation: generation, state: state, announced: announced,
            reload: reload, recycling: recycling, reloadQueued: reloadQueued, restart: restart.memory,
            nextWorkerID: nextWorkerID, stopExitCode: stopExitCode, nextCheck: nextCheck, stopDue: stopDue)
    }

    /// The machine another image handed over, with this image's settings (its own configuration's timing rules).
    package init(settings: Settings, restoring snapshot: Snapshot) {
        self.init(settings: settings)
        workers = snapshot.workers
        target = snapshot.target
        generation = snapshot.generation
        state = snapshot.state
        announced = snapshot.announced
        reload = snapshot.reload
        recycling = snapshot.recycling
        reloadQueued = snapshot.reloadQueued
        restart.memory = snapshot.restart
        nextWorkerID = snapshot.nextWorkerID
        stopExitCode = snapshot.stopExitCode
        nextCheck = snapshot.nextCheck
        stopDue = snapshot.stopDue
    }

    /// Ready workers now.
    package var readyCount: Int {
        var ready = 0
        for worker in workers where worker.phase == .ready { ready += 1 }
        return ready
    }

    /// Whether a stop was asked for: announced (the shutdown delay runs) or under way. Load balancers should send
    /// nothing new.
    package var isStopAnnounced: Bool { stopDue != nil || state != .running }

    /// Whether any worker process runs (or awaits its reap).
    package var hasProcesses: Bool { workers.contains(where: \.hasProcess) }

    /// When the next ``Event/tick(now:)`` is due: a restart, the stop deadline or the next health check.
    /// Inlined: the master asks at every wake-up, and a call copied the whole machine out of the master first.
    @inline(__always) package var nextDeadline: UInt64 {
        var next = nextCheck
        if case .stopping(let deadline) = state { next = min(next, deadline) }
        if let due = stopDue { next = min(next, due) }
        if state == .running {
            for worker in workers where worker.phase == .empty && !worker.retired {
                if let due = worker.respawnAt { next = min(next, due) }
            }
        }
        return next
    }

    // MARK: events

    /// Applies `event` and returns what the master must do, in order.
    package mutating func handle(_ event: Event) -> [Action] {
        var actions: [Action] = []
        switch event {
        case .start(let now):
            target = settings.workers
            nextCheck = now &+ settings.checkInterval
            for _ in 0..<settings.workers { actions.append(spawn(allocateSlot())) }
        case .spawned(let slot, let pid, let now):
            workers[slot].phase = .starting
            workers[slot].pid = pid
            workers[slot].startedAt = now
            workers[slot].lastHeartbeat = now
            workers[slot].exitIntended = false
            workers[slot].killedByMaster = false
            workers[slot].killReason = nil
            workers[slot].drainDeadline = nil
            workers[slot].respawnAt = nil
        case .spawnFailed(let slot, let now):
            if reload?.isReplacement(slot) == true, var plan = reload {
                workers[slot].retired = true
                let step = plan.replacementFailed(slot)
                reload = plan
                perform(step, now: now, failure: .couldNotStart, into: &actions)
            } else {
                workers[slot].respawnAt = now &+ 1_000_000_000
            }
        case .ready(let slot, let now):
            guard workers[slot].phase == .starting else { break }
            workers[slot].phase = .ready
            workers[slot].lastHeartbeat = now
            actions.append(.serve(slot: slot))
            if announced {
                actions.append(.status("worker \(workers[slot].id) ready"))
            } else if state == .running && readyCount >= settings.workers {
                announced = true
                actions.append(.listening)
            }
            if reload?.isReplacement(slot) == true, var plan = reload {
                let steps = plan.replacementReady(slot)
                reload = plan
                for step in steps { perform(step, now: now, into: &actions) }
            }
        case .heartbeat(let slot, let now):
            workers[slot].lastHeartbeat = now
        case .broken(let slot):
            kill(slot, .broken, into: &actions)
        case .channelFailed(let slot):
            kill(slot, .channelFailed, into: &actions)
        case .exited(let slot, let exit, let now, let random):
            exited(slot, exit, now: now, random: random, into: &actions)
        case .tick(let now):
            tick(now: now, into: &actions)
        case .stop(let exitCode, let now, let escalate):
            stop(exitCode: exitCode, now: now, escalate: escalate, delayable: true, into: &actions)
        case .reload(let now):
            startReload(now: now, into: &actions)
        case .scaleUp:
            guard state == .running else { break }
            guard target < Configuration.maxWorkers else {
                actions.append(.scaleUpRefused(limit: Configuration.maxWorkers))
                break
            }
            target += 1
            actions.append(.scaled(target: target))
            actions.append(spawn(allocateSlot()))
        case .scaleDown(let now):
            scaleDown(now: now, into: &actions)
        case .recycle(let slot, let reason, let now):
            guard state == .running, reload == nil, slot < workers.count, workers[slot].phase == .ready,
                !workers[slot].retired
            else { break }
            recycling = Recycle(slot: slot, reason: reason)
            actions.append(.recycleStarted(slot: slot, reason: reason))
            var plan = RollingReload(oldSlots: [slot])
            let step = plan.start()
            reload = plan
            perform(step, now: now, into: &actions)
        case .scaleTo(let count, let now):
            guard state == .running else { break }
            guard count <= Configuration.maxWorkers else {
                actions.append(.scaleUpRefused(limit: Configuration.maxWorkers))
                break
            }
            let wanted = max(count, 1)
            while target < wanted {
                target += 1
                actions.append(.scaled(target: target))
                actions.append(spawn(allocateSlot()))
            }
            while target > wanted {
                let before = target
                scaleDown(now: now, into: &actions)
                if target == before { break }
            }
        }
        if case .stopping = state, !hasProcesses { state = .finished(exitCode: stopExitCode) }
        return actions
    }

    // MARK: rules

    /// A slot for a new worker: a retired empty one if there is any, otherwise a new one.
    private mutating func allocateSlot() -> Int {
        if let index = workers.indices.first(where: { workers[$0].retired && workers[$0].phase == .empty }) {
            workers[index].retired = false
            workers[index].respawnAt = nil
            return index
        }
        workers.append(Worker())
        return workers.count - 1
    }

    /// Names the next worker for `slot` and asks for its process.
    private mutating func spawn(_ slot: Int) -> Action {
        workers[slot].id = nextWorkerID
        workers[slot].generation = generation
        workers[slot].respawnAt = nil
        nextWorkerID += 1
        return .spawn(slot: slot)
    }

    private mutating func kill(_ slot: Int, _ reason: KillReason, into actions: inout [Action]) {
        guard workers[slot].isAttached else { return }
        if reason != .channelFailed { workers[slot].killedByMaster = true }
        workers[slot].killReason = reason
        workers[slot].phase = .exiting
        actions.append(.kill(slot: slot, reason: reason))
    }

    private mutating func drain(_ slot: Int, now: UInt64, into actions: inout [Action]) {
        guard workers[slot].isAttached else { return }
        workers[slot].phase = .draining
        workers[slot].exitIntended = true
        workers[slot].drainDeadline = now &+ settings.drainTimeout
        actions.append(.drain(slot: slot))
    }

    private mutating func exited(_ slot: Int, _ exit: Exit, now: UInt64, random: Double, into actions: inout [Action]) {
        guard workers[slot].hasProcess else { return }
        let worker = workers[slot]
        workers[slot].phase = .empty
        workers[slot].pid = 0
        guard state == .running else { return }
        if !worker.exitIntended { actions.append(.status("worker \(worker.id) \(exit.text)")) }
        if var plan = reload {
            if plan.isReplacement(slot) {
                workers[slot].retired = true
                let step = plan.replacementFailed(slot)
                reload = plan
                let failure: ReplacementFailure =
                    if worker.killedByMaster, let reason = worker.killReason { .killed(reason) } else { .exited(exit) }
                perform(step, now: now, failure: failure, into: &actions)
                return
            }
            if plan.current?.old == slot {
                // The worker being replaced died first: its replacement takes its place, no restart here.
                workers[slot].retired = true
                return
            }
            plan.oldWorkerLeft(slot)
            reload = plan
        }
        guard !worker.retired else { return }
        if worker.exitIntended {
            workers[slot].respawnAt = now
            return
        }
        let cause: RestartPolicy.ExitCause
        switch exit {
        case .code(WorkerRuntime.resourcePressureExitCode): cause = .resourcePressure
        case .signal(SIGKILL) where !worker.killedByMaster: cause = .killedFromOutside
        default: cause = .failed
        }
        let uptime = Duration.nanoseconds(Int64(clamping: now &- worker.startedAt))
        switch restart.workerExited(uptime: uptime, now: now, random: random, cause: cause) {
        case .restart(let delay):
            let wait = UInt64(max(delay.nanoseconds, 0))
            workers[slot].respawnAt = now &+ wait
            workers[slot].restarts += 1
            actions.append(
                .restartScheduled(slot: slot, delay: wait, earlyExits: restart.earlyExitsInARow, cause: cause))
        case .halt(let early):
            actions.append(.halt(earlyExits: early))
            stop(
                exitCode: SwitchboardError.Code.crashLoop.exitCode, now: now, escalate: false, delayable: false,
                into: &actions)
        }
    }

    private mutating func tick(now: UInt64, into actions: inout [Action]) {
        if let due = stopDue, due <= now {
            stop(exitCode: stopExitCode, now: now, escalate: false, delayable: false, into: &actions)
        }
        if case .stopping(let deadline) = state, deadline <= now {
            if workers.contains(where: { $0.isAttached }) { actions.append(.stopDeadlinePassed) }
            for slot in workers.indices where workers[slot].isAttached {
                workers[slot].exitIntended = true
                kill(slot, .stopDeadline, into: &actions)
            }
        }
        if now >= nextCheck {
            nextCheck = now &+ settings.checkInterval
            checkHealth(now: now, into: &actions)
            if state == .running { converge(now: now, into: &actions) }
        }
        guard state == .running else { return }
        for slot in workers.indices where workers[slot].phase == .empty && !workers[slot].retired {
            if let due = workers[slot].respawnAt, due <= now { actions.append(spawn(slot)) }
        }
    }

    /// Kills workers that missed their ready deadline, stopped heartbeating, or outlived their drain deadline.
    private mutating func checkHealth(now: UInt64, into actions: inout [Action]) {
        for slot in workers.indices where workers[slot].isAttached {
            let worker = workers[slot]
            switch worker.phase {
            case .starting where now &- worker.startedAt > settings.readyTimeout:
                kill(slot, .notReady, into: &actions)
            case .ready where now &- worker.lastHeartbeat > settings.heartbeatTimeout,
                .draining where now &- worker.lastHeartbeat > settings.heartbeatTimeout:
                kill(slot, .hung, into: &actions)
            case .draining where worker.drainDeadline.map { now > $0 } ?? false:
                kill(slot, .drainOverdue, into: &actions)
            default:
                break
            }
        }
    }

    /// Outside a reload, the worker count converges to the target both ways: a shortfall gets new workers, a
    /// surplus (whatever caused it) drains, chosen as a scale-down chooses.
    private mutating func converge(now: UInt64, into actions: inout [Action]) {
        guard reload == nil else { return }
        var counted = 0
        for worker in workers where counts(worker) { counted += 1 }
        if counted > target {
            actions.append(.surplus(count: counted - target))
            for _ in target..<counted {
                guard let slot = leavingCandidate() else { break }
                retire(slot, now: now, into: &actions)
            }
            return
        }
        let missing = target - counted
        guard missing > 0 else { return }
        actions.append(.short(missing: missing))
        for _ in 0..<missing { workers[allocateSlot()].respawnAt = now }
    }

    /// Whether `worker` counts toward the target: it runs and is not on its way out, or its restart is due.
    private func counts(_ worker: Worker) -> Bool {
        !worker.retired && ((worker.hasProcess && worker.phase != .draining) || worker.respawnAt != nil)
    }

    /// The worker that leaves when there is one too many: never the pair a reload is working on (the worker being
    /// replaced and its replacement: taking either would abort the reload and leave the rest running). First one
    /// that is not serving anyway (killed and not yet reaped, or waiting for its restart), then an old worker the
    /// reload has not reached, then the newest.
    private func leavingCandidate() -> Int? {
        let pair = [reload?.current?.old, reload?.current?.new]
        let candidates = workers.indices.filter { counts(workers[$0]) && !pair.contains($0) }
        if let idle = candidates.last(where: { !workers[$0].isAttached }) { return idle }
        if let remaining = reload?.remaining, let old = candidates.last(where: remaining.contains) { return old }
        return candidates.last
    }

    /// Takes `slot` out for good: it drains (if it runs) and is not refilled; a reload no longer replaces it.
    private mutating func retire(_ slot: Int, now: UInt64, into actions: inout [Action]) {
        workers[slot].retired = true
        workers[slot].respawnAt = nil
        reload?.oldWorkerLeft(slot)
        drain(slot, now: now, into: &actions)
    }

    /// The stop rule, the only one: the first stop is announced for the shutdown delay (if any) and then drains
    /// every worker within the drain timeout; another stop during the delay begins the drain at once; another stop
    /// while the drain runs kills them all at once when it escalates, and changes nothing when it does not.
    private mutating func stop(
        exitCode: Int32, now: UInt64, escalate: Bool, delayable: Bool, into actions: inout [Action]
    ) {
        switch state {
        case .running where delayable && stopDue == nil && settings.shutdownDelay > 0:
            stopDue = now &+ settings.shutdownDelay
            stopExitCode = exitCode
            actions.append(.stopAnnounced(delay: settings.shutdownDelay))
        case .running:
            // After an announced stop, the code asked for then stands unless this stop brings a failure.
            if stopDue == nil || exitCode != 0 { stopExitCode = exitCode }
            stopDue = nil
            state = .stopping(deadline: now &+ settings.drainTimeout)
            reload = nil
            reloadQueued = false
            actions.append(.stopping)
            for slot in workers.indices where workers[slot].isAttached { drain(slot, now: now, into: &actions) }
        case .stopping where escalate:
            for slot in workers.indices where workers[slot].isAttached {
                workers[slot].exitIntended = true
                kill(slot, .stopEscalated, into: &actions)
            }
        case .stopping, .finished:
            actions.append(.stopAlreadyRunning)
        }
    }

    /// Replace every worker, one at a time, each gated on its replacement's readiness.
    private mutating func startReload(now: UInt64, into actions: inout [Action]) {
        guard state == .running else { return }
        if reload != nil {
            reloadQueued = true
            actions.append(.reloadQueued)
            return
        }
        generation += 1
        let old = workers.indices.filter {
            !workers[$0].retired && workers[$0].hasProcess && workers[$0].phase != .draining
        }
        actions.append(.reloadStarted(generation: generation, workers: old.count))
        var plan = RollingReload(oldSlots: old)
        let step = plan.start()
        reload = plan
        perform(step, now: now, into: &actions)
    }

    private mutating func perform(
        _ step: RollingReload.Step, now: UInt64, failure: ReplacementFailure = .couldNotStart,
        into actions: inout [Action]
    ) {
        switch step {
        case .spawnReplacement:
            let slot = allocateSlot()
            actions.append(spawn(slot))
            reload?.replacementStarted(new: slot)
        case .drain(let old):
            workers[old].retired = true
            drain(old, now: now, into: &actions)
        case .finished:
            let replaced = reload?.replaced ?? 0
            reload = nil
            if let recycle = recycling {
                recycling = nil
                actions.append(.recycleFinished(slot: recycle.slot, reason: recycle.reason))
            } else {
                actions.append(.reloadFinished(generation: generation, replaced: replaced))
            }
            reloadDone(now: now, into: &actions)
        case .aborted(let new):
            reload = nil
            if let new {
                workers[new].retired = true
                workers[new].exitIntended = true
                kill(new, .replacementAborted, into: &actions)
            }
            if let recycle = recycling {
                recycling = nil
                actions.append(.recycleAborted(slot: recycle.slot, reason: recycle.reason, cause: failure))
            } else {
                actions.append(.reloadAborted(generation: generation, slot: new, cause: failure))
            }
            reloadDone(now: now, into: &actions)
        }
    }

    private mutating func reloadDone(now: UInt64, into actions: inout [Action]) {
        guard reloadQueued else { return }
        reloadQueued = false
        startReload(now: now, into: &actions)
    }

    /// One worker fewer, drained gracefully (``leavingCandidate()``); never below one.
    private mutating func scaleDown(now: UInt64, into actions: inout [Action]) {
        guard state == .running else { return }
        guard target > 1, let slot = leavingCandidate() else {
            actions.append(.scaleDownRefused)
            return
        }
        target -= 1
        actions.append(.scaled(target: target))
        retire(slot, now: now, into: &actions)
    }
}
