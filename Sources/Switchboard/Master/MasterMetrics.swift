import CoreMetrics
import Prometheus

/// The master's metrics in the Prometheus text format (`--metrics`), through swift-metrics with swift-prometheus as
/// the backend, on a registry of the master's own (an embedding program's `MetricsSystem` choice is left alone).
///
/// The hot path keeps plain counters on ``Master``; nothing here runs per connection. At each scrape the master
/// hands its counters in (``render(_:process:)``): counters advance by what changed since the previous scrape, gauges
/// are set.
///
/// A slot's counters (`switchboard_worker_*_total{slot}`) add up every worker the slot had: when a worker is reaped
/// the master hands its last figures in (``workerLeft(slot:dispatched:handled:cpuSeconds:)``) and they join the
/// slot's past totals, so a new worker's counts go on from its predecessors' instead of staying flat until they pass
/// them (Prometheus counters never go back, per series). A slot's gauges exist only while it has a worker: a slot
/// emptied by scaling down or a reload loses them.
/// Names follow Prometheus' conventions: one prefix, base units, `_total` for counters, an `_info` metric, and no
/// label with more values than there are worker slots.
final class MasterMetrics {
    /// Reload outcomes, counted by the master as its machine reports them.
    struct Reloads: Codable {
        var started: UInt64 = 0
        var finished: UInt64 = 0
        var aborted: UInt64 = 0
    }

    /// What the master knows at a scrape.
    struct Snapshot {
        /// The worker in a slot now (starting, ready or draining); the counts are its own, since it started.
        struct Worker {
            var slot: Int
            var open: Int
            var queued: Int
            var dispatched: UInt64
            var handled: UInt64
            var heartbeatAge: Double
            var cpuSeconds: Double
            var residentBytes: Int
            /// Unique memory at the last sample (only with `--max-worker-memory`).
            var uniqueBytes: UInt64? = nil
        }

        var accepted: UInt64
        var dispatched: UInt64
        var takenBack: UInt64
        var redispatched: UInt64
        var stolen: UInt64
        var listenQueue: (depth: Int, limit: Int)?
        var configured: Int
        var ready: Int
        var draining: Int
        var workers: [Worker]
        /// Children reaped that were not workers (orphans adopted as PID 1 or as a subreaper).
        var orphansReaped: UInt64 = 0
    }

    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    var reloads = Reloads()
    private var restarts: [String: UInt64] = [:]
    private var recycles: [String: UInt64] = [:]
    private var counted: [String: UInt64] = [:]
    private var counters: [String: CoreMetrics.Counter] = [:]
    private var secondCounters: [String: (counter: CoreMetrics.FloatingPointCounter, total: Double)] = [:]
    private var gauges: [String: CoreMetrics.Gauge] = [:]
    /// Connections dispatched per slot at the previous scrape, for the skew over the window between scrapes.
    private var dispatchedAtLastScrape: [Int: UInt64] = [:]

    /// What a slot's reaped workers did in all.
    struct SlotTotals: Codable {
        var dispatched: UInt64 = 0
        var handled: UInt64 = 0
        var cpuSeconds: Double = 0
    }

    /// The totals of each slot's past (reaped) workers, which its counters add to the current worker's figures.
    private var past: [Int: SlotTotals] = [:]
    /// The CPU seconds the scrapes read for each slot's current worker: what the slot keeps when the worker's reap
    /// cannot tell its own (something else reaped it).
    private var cpuSeen: [Int: Double] = [:]
    /// The slots whose gauges the previous scrape set.
    private var slotsWithGauges: Set<Int> = []
    static let slotGauges = [
        "switchboard_worker_open_connections", "switchboard_worker_queued_connections",
        "switchboard_worker_heartbeat_age_seconds", "switchboard_worker_resident_memory_bytes",
    ]

    init(version: String, mode: String, cpus: CPUBudget = .current()) {
        factory = PrometheusMetricsFactory(registry: registry)
        gauge("switchboard_info", ["version": version, "mode": mode]).record(1)
        // What the master found at start (the default worker count comes from it): online CPUs, those in its affinity
        // mask, and the CPU quota of its cgroup (in CPUs; absent without one).
        gauge("switchboard_cpus", ["kind": "online"]).record(Int64(cpus.online))
        gauge("switchboard_cpus", ["kind": "allowed"]).record(Int64(cpus.allowed))
        if let quota = cpus.quota { gauge("switchboard_cpus", ["kind": "quota"]).record(quota) }
    }

    /// The totals the counters add up to, for a master's upgrade (``Handover``): the new image's counters go on from
    /// them (Prometheus sees a counter that never went back).
    struct Totals: Codable {
        var reloads: Reloads
        var restarts: [String: UInt64]
        var recycles: [String: UInt64]
        var past: [Int: SlotTotals]
        var cpuSeen: [Int: Double]
    }

    var totals: Totals {
        Totals(reloads: reloads, restarts: restarts, recycles: recycles, past: past, cpuSeen: cpuSeen)
    }

    func restore(_ totals: Totals) {
        reloads = totals.reloads
        restarts = totals.restarts
        recycles = totals.recycles
        past = totals.past
        cpuSeen = totals.cpuSeen
    }

    /// A recycle began, by reason.
    func recycled(_ reason: SupervisorMachine.RecycleReason) {
        recycles[reason.rawValue, default: 0] &+= 1
    }

    /// A restart the machine scheduled, by cause.
    func restarted(_ cause: RestartPolicy.ExitCause) {
        let name =
            switch cause {
            case .failed: "failed"
            case .resourcePressure: "resource_pressure"
            case .killedFromOutside: "killed_from_outside"
            }
        restarts[name, default: 0] &+= 1
    }

    /// The worker in `slot` was reaped: its figures join the slot's past totals, which its successors build on.
    ///
    /// Nothing is lost of `dispatched` or of the CPU time (the reap's rusage counts to the end). `handled` is the
    /// worker's last heartbeat: what it answered after that (within one heartbeat interval) is not counted.
    /// - Parameters:
    ///   - slot: The slot it filled.
    ///   - dispatched: The connections handed to it.
    ///   - handled: What its last heartbeat reported.
    ///   - cpuSeconds: The user and system time it used, from the reap; nil when unknown (another waiter reaped it):
    ///     the most a scrape read for it stands in.
    func workerLeft(slot: Int, dispatched: UInt64, handled: UInt64, cpuSeconds: Double?) {
        let seen = cpuSeen.removeValue(forKey: slot) ?? 0
        var totals = past[slot] ?? SlotTotals()
        totals.dispatched &+= dispatched
        totals.handled &+= handled
        totals.cpuSeconds += max(cpuSeconds ?? 0, seen)
        past[slot] = totals
    }

    private func key(_ name: String, _ labels: [String: String]) -> String {
        name + labels.sorted { $0.key < $1.key }.map { "|\($0.key)=\($0.value)" }.joined()
    }

    private func gauge(_ name: String, _ labels: [String: String] = [:]) -> CoreMetrics.Gauge {
        let key = key(name, labels)
        if let gauge = gauges[key] { return gauge }
        let gauge = CoreMetrics.Gauge(
            label: name, dimensions: labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, factory: factory)
        gauges[key] = gauge
        return gauge
    }

    /// Takes a gauge out of the output (until it is set again).
    private func removeGauge(_ name: String, _ labels: [String: String]) {
        gauges.removeValue(forKey: key(name, labels))?.destroy()
    }

    /// Advances a counter to `total` (it only moves forward).
    private func count(_ name: String, _ labels: [String: String] = [:], to total: UInt64) {
        let key = key(name, labels)
        let counter =
            counters[key]
            ?? CoreMetrics.Counter(
                label: name, dimensions: labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, factory: factory)
        counters[key] = counter
        let before = counted[key] ?? 0
        if total > before { counter.increment(by: Int64(clamping: total - before)) }
        counted[key] = max(before, total)
    }

    /// Advances a counter of seconds to `total`.
    private func count(seconds name: String, _ labels: [String: String] = [:], to total: Double) {
        let key = key(name, labels)
        let entry =
            secondCounters[key]
            ?? (CoreMetrics.FloatingPointCounter(
                label: name, dimensions: labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, factory: factory), 0)
        if total > entry.total { entry.counter.increment(by: total - entry.total) }
        secondCounters[key] = (entry.counter, max(entry.total, total))
    }

    /// Brings every metric up to `snapshot` and the master process's own figures, then renders the text format.
    func render(_ snapshot: Snapshot, process: (cpuSeconds: Double, residentBytes: Int, openFDs: Int, maxFDs: Int, startTime: Double)) -> [UInt8] {
        count("switchboard_connections_accepted_total", to: snapshot.accepted)
        count("switchboard_connections_dispatched_total", to: snapshot.dispatched)
        count("switchboard_connections_taken_back_total", to: snapshot.takenBack)
        count("switchboard_connections_redispatched_total", to: snapshot.redispatched)
        count("switchboard_connections_stolen_total", to: snapshot.stolen)
        if let queue = snapshot.listenQueue {
            gauge("switchboard_listen_queue_connections").record(Int64(queue.depth))
            gauge("switchboard_listen_queue_limit_connections").record(Int64(queue.limit))
        }
        gauge("switchboard_workers", ["state": "configured"]).record(Int64(snapshot.configured))
        gauge("switchboard_workers", ["state": "ready"]).record(Int64(snapshot.ready))
        gauge("switchboard_workers", ["state": "draining"]).record(Int64(snapshot.draining))
        for cause in ["failed", "resource_pressure", "killed_from_outside"] {
            count("switchboard_worker_restarts_total", ["cause": cause], to: restarts[cause] ?? 0)
        }
        for reason in SupervisorMachine.RecycleReason.allCases {
            count("switchboard_worker_recycles_total", ["reason": reason.rawValue], to: recycles[reason.rawValue] ?? 0)
        }
        count("switchboard_orphans_reaped_total", to: snapshot.orphansReaped)
        count("switchboard_reloads_total", ["result": "started"], to: reloads.started)
        count("switchboard_reloads_total", ["result": "finished"], to: reloads.finished)
        count("switchboard_reloads_total", ["result": "aborted"], to: reloads.aborted)
        var window: [UInt64] = []
        for worker in snapshot.workers {
            let slot = ["slot": "\(worker.slot)"]
            let past = past[worker.slot] ?? SlotTotals()
            cpuSeen[worker.slot] = max(cpuSeen[worker.slot] ?? 0, worker.cpuSeconds)
            let dispatched = past.dispatched &+ worker.dispatched
            gauge("switchboard_worker_open_connections", slot).record(Int64(worker.open))
            gauge("switchboard_worker_queued_connections", slot).record(Int64(worker.queued))
            count("switchboard_worker_connections_dispatched_total", slot, to: dispatched)
            count("switchboard_worker_handled_total", slot, to: past.handled &+ worker.handled)
            gauge("switchboard_worker_heartbeat_age_seconds", slot).record(worker.heartbeatAge)
            count(seconds: "switchboard_worker_cpu_seconds_total", slot, to: past.cpuSeconds + worker.cpuSeconds)
            gauge("switchboard_worker_resident_memory_bytes", slot).record(Int64(worker.residentBytes))
            if let unique = worker.uniqueBytes {
                gauge("switchboard_worker_unique_memory_bytes", slot).record(Int64(clamping: unique))
            }
            let before = dispatchedAtLastScrape[worker.slot] ?? 0
            if dispatched >= before { window.append(dispatched - before) }
            dispatchedAtLastScrape[worker.slot] = dispatched
        }
        let filled = Set(snapshot.workers.map(\.slot))
        for slot in slotsWithGauges.subtracting(filled) {
            for name in Self.slotGauges { removeGauge(name, ["slot": "\(slot)"]) }
        }
        slotsWithGauges = filled
        // Max over min of the connections each worker got since the previous scrape (1 is perfectly even).
        if let most = window.max(), let least = window.min(), least > 0 {
            gauge("switchboard_dispatch_skew_ratio").record(Double(most) / Double(least))
        }
        count(seconds: "process_cpu_seconds_total", to: process.cpuSeconds)
        gauge("process_resident_memory_bytes").record(Int64(process.residentBytes))
        gauge("process_open_fds").record(Int64(process.openFDs))
        gauge("process_max_fds").record(Int64(process.maxFDs))
        gauge("process_start_time_seconds").record(process.startTime)
        return registry.emitToBuffer()
    }
}
