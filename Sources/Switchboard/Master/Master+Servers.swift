import Logging

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// What the master answers its servers: the values ``HealthServer`` and ``SystemdNotifier`` ask for (read from the
/// machine and the dispatcher, stored nowhere else), and the commands ``ControlServer`` reads, performed as events for
/// the machine. The servers' own state (descriptors, clients, deadlines) is theirs alone.
extension Master: HealthServer.Source {
    /// What load balancers are told now.
    var readiness: HealthProbe.Readiness {
        HealthProbe.readiness(
            stopAnnounced: machine.isStopAnnounced, ready: machine.readyCount, target: machine.target)
    }

    /// Everything `/metrics` shows, rendered now.
    func scrapeMetrics() -> [UInt8] {
        let now = Syscalls.monotonicNanoseconds()
        for index in processes.indices { dispatcher.refresh(index) }  // what the workers took since the last look
        let counters = dispatcher.counters
        var workers: [MasterMetrics.Snapshot.Worker] = []
        var draining = 0
        for index in machine.workers.indices where machine.workers[index].isAttached {
            let worker = machine.workers[index]
            if worker.phase == .draining { draining += 1 }
            let usage = Syscalls.processUsage(worker.pid)
            workers.append(
                .init(
                    slot: index, open: dispatcher.lanes[index].open, queued: dispatcher.lanes[index].queued,
                    dispatched: dispatcher.lanes[index].dispatched, handled: processes.handled(index),
                    heartbeatAge: Double(now &- worker.lastHeartbeat) / 1e9, cpuSeconds: usage?.cpuSeconds ?? 0,
                    residentBytes: usage?.residentBytes ?? 0, uniqueBytes: recycler.uniqueBytes(index)))
        }
        let snapshot = MasterMetrics.Snapshot(
            accepted: counters.accepted, dispatched: counters.dispatched, takenBack: counters.takenBack,
            redispatched: counters.redispatched, stolen: counters.stolen,
            listenQueue: listener >= 0 && passesDescriptors ? Syscalls.listenQueue(listener) : nil,
            configured: machine.target, ready: machine.readyCount, draining: draining, workers: workers,
            orphansReaped: orphansReaped)
        let own = Syscalls.processUsage(getpid())
        let uptime = Double(now &- startedAt) / 1e9
        return metrics.render(
            snapshot,
            process: (
                cpuSeconds: own?.cpuSeconds ?? 0, residentBytes: own?.residentBytes ?? 0,
                openFDs: Syscalls.openDescriptorCount(),
                maxFDs: descriptorLimit.soft > UInt64(Int.max) ? Int.max : Int(descriptorLimit.soft),
                startTime: Syscalls.wallClockSeconds() - uptime))
    }
}

extension Master: SystemdNotifier.Source {
    var systemdFigures: SystemdNotifier.Figures {
        SystemdNotifier.Figures(
            ready: machine.readyCount, target: machine.target, dispatched: dispatcher.counters.dispatched)
    }

    var runState: SupervisorMachine.RunState { machine.state }

    var watchdogWorkers: [WatchdogPolicy.Worker] {
        machine.workers.filter(\.isAttached).map { worker in
            WatchdogPolicy.Worker(
                serving: worker.phase == .ready || worker.phase == .draining, lastHeartbeat: worker.lastHeartbeat)
        }
    }

    var drainRemaining: Int {
        machine.workers.filter(\.hasProcess).count + dispatcher.lanes.reduce(0) { $0 + $1.open }
    }

    /// Sends `assignments` with the STATUS= line, which now names `event`.
    func notifySystemd(_ assignments: String, event: String) {
        systemd.notify(assignments, event: event, source: self)
    }

    func notifyReady(event: String) {
        systemd.ready(event: event, source: self)
    }

    func notifyReloading() {
        systemd.reloading(generation: machine.generation, source: self)
    }

    func notifyHalt(earlyExits: Int) {
        systemd.halted(earlyExits: earlyExits, source: self)
    }
}

extension Master {
    /// Does what a control client asks, exactly (no coalescing as with signals), and says what happened: the reply
    /// ``ControlServer`` sends.
    func execute(_ command: ControlCommand) -> String {
        let now = Syscalls.monotonicNanoseconds()
        switch command {
        case .status(let json):
            let current = status(now: now)
            guard json else { return "ok\n" + current.table }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = (try? encoder.encode(current)) ?? Data("{}".utf8)
            return "ok\n" + String(decoding: data, as: UTF8.self) + "\n"
        case .reload:
            guard machine.state == .running else { return "error: the master is stopping\n" }
            let queued = machine.reload != nil
            submit(.reload(now: now))
            return queued
                ? "ok\nreload queued: it starts when the one running (generation \(machine.generation)) ends\n"
                : "ok\nrolling reload to generation \(machine.generation) started\n"
        case .stop:
            guard machine.state == .running else { return "ok\nalready stopping\n" }
            logger.info("stopping gracefully (control socket)")
            submit(.stop(exitCode: 0, now: now, escalate: false))
            return "ok\nstopping gracefully\n"
        case .scale(let count):
            return scale(to: count, asked: command, now: now)
        case .scaleBy(let delta):
            return scale(to: machine.target + delta, asked: command, now: now)
        case .upgrade(let masterOnly):
            return beginUpgrade(masterOnly: masterOnly, asked: "control socket")
        }
    }

    private func scale(to count: Int, asked command: ControlCommand, now: UInt64) -> String {
        guard machine.state == .running else { return "error: the master is stopping\n" }
        guard count >= 1 else { return "error: at least one worker stays (the target is \(machine.target))\n" }
        guard count <= Configuration.maxWorkers else {
            return "error: \(command.line) would make \(count) workers: at most \(Configuration.maxWorkers) may run "
                + "(the target is \(machine.target))\n"
        }
        let before = machine.target
        submit(.scaleTo(count: count, now: now))
        return "ok\nworkers: \(before) -> \(machine.target)\n"
    }

    /// Everything `switchboard status` shows.
    func status(now: UInt64) -> MasterStatus {
        let stateText =
            switch machine.state {
            case .running: machine.isStopAnnounced ? "stop announced" : "running"
            case .stopping: "stopping"
            case .finished: "stopped"
            }
        let counters = dispatcher.counters
        let queue = listener >= 0 && passesDescriptors ? Syscalls.listenQueue(listener) : nil
        for index in processes.indices { dispatcher.refresh(index) }  // what the workers took since the last look
        var workers: [MasterStatus.Worker] = []
        for index in machine.workers.indices where machine.workers[index].hasProcess {
            let worker = machine.workers[index]
            let usage = Syscalls.processUsage(worker.pid)
            let phase =
                switch worker.phase {
                case .starting: "starting"
                case .ready: "ready"
                case .draining: "draining"
                case .exiting, .empty: "exiting"
                }
            workers.append(
                MasterStatus.Worker(
                    id: worker.id, pid: worker.pid, slot: index, generation: worker.generation, state: phase,
                    uptimeSeconds: Double(now &- worker.startedAt) / 1e9, restarts: worker.restarts,
                    openConnections: dispatcher.lanes[index].open, queuedConnections: dispatcher.lanes[index].queued,
                    dispatched: dispatcher.lanes[index].dispatched, cpuSeconds: usage?.cpuSeconds ?? 0,
                    residentBytes: usage?.residentBytes ?? 0, build: processes.build(index),
                    uniqueBytes: recycler.uniqueBytes(index).map { Int(clamping: $0) }))
        }
        return MasterStatus(
            version: Cluster.version, build: Cluster.build, workerExecutable: configuration.workerExecutable,
            pid: getpid(), mode: configuration.mode.name, port: port,
            uptimeSeconds: Double(now &- startedAt) / 1e9, state: stateText,
            reload: machine.reload.map { _ in "generation \(machine.generation)" },
            targetWorkers: machine.target, readyWorkers: machine.readyCount, backlogDepth: queue?.depth,
            backlogLimit: queue?.limit, dispatched: counters.dispatched, takenBack: counters.takenBack,
            redispatched: counters.redispatched, stolen: counters.stolen,
            workers: workers, cpus: cpuBudget.limits, lastRecycle: recycler.last, upgrade: upgrade.last)
    }
}
