import Logging

#if canImport(Glibc)
import Glibc
#endif

/// What the master answers its servers: the values ``HealthServer`` asks for (read from the machine and the
/// dispatcher, stored nowhere else). The servers' own state (descriptors, clients, deadlines) is theirs alone.
extension Master: HealthServer.Source {
    /// What load balancers are told now.
    var readiness: HealthProbe.Readiness {
        HealthProbe.readiness(
            stopAnnounced: machine.isStopAnnounced, ready: machine.readyCount, target: machine.target)
    }

    /// Everything `/metrics` shows, rendered now.
    func scrapeMetrics() -> [UInt8] {
        let now = Syscalls.monotonicNanoseconds()
        for index in slots.indices { dispatcher.refresh(index) }  // what the workers took since the last look
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
                    dispatched: dispatcher.lanes[index].dispatched, handled: slots[index].handled,
                    heartbeatAge: Double(now &- worker.lastHeartbeat) / 1e9, cpuSeconds: usage?.cpuSeconds ?? 0,
                    residentBytes: usage?.residentBytes ?? 0))
        }
        let snapshot = MasterMetrics.Snapshot(
            accepted: counters.accepted, dispatched: counters.dispatched, takenBack: counters.takenBack,
            redispatched: counters.redispatched, stolen: counters.stolen,
            listenQueue: listener >= 0 && passesDescriptors ? Syscalls.listenQueue(listener) : nil,
            configured: machine.target, ready: machine.readyCount, draining: draining, workers: workers)
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
