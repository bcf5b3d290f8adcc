import CoreMetrics
import Prometheus

/// The master's metrics in the Prometheus text format (`--metrics`), through swift-metrics with swift-prometheus as
/// the backend, on a registry of the master's own (an embedding program's `MetricsSystem` choice is left alone).
///
/// The hot path keeps plain counters on ``Master``; nothing here runs per connection. At each scrape the master
/// hands its counters in (``update(_:)``): counters advance by what changed since the previous scrape, gauges are set.
/// Names follow Prometheus' conventions: one prefix, base units, `_total` for counters, an `_info` metric, and no
/// label with more values than there are worker slots.
final class MasterMetrics {
    /// Reload outcomes, counted by the master as its machine reports them.
    struct Reloads {
        var started: UInt64 = 0
        var finished: UInt64 = 0
        var aborted: UInt64 = 0
    }

    /// What the master knows at a scrape.
    struct Snapshot {
        struct Worker {
            var slot: Int
            var open: Int
            var queued: Int
            var dispatched: UInt64
            var handled: UInt64
            var heartbeatAge: Double
            var cpuSeconds: Double
            var residentBytes: Int
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
    }

    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    var reloads = Reloads()
    private var restarts: [String: UInt64] = [:]
    private var counted: [String: UInt64] = [:]
    private var counters: [String: CoreMetrics.Counter] = [:]
    private var secondCounters: [String: (counter: CoreMetrics.FloatingPointCounter, total: Double)] = [:]
    private var gauges: [String: CoreMetrics.Gauge] = [:]
    /// Connections dispatched per slot at the previous scrape, for the skew over the window between scrapes.
    private var dispatchedAtLastScrape: [Int: UInt64] = [:]

    init(version: String, mode: String) {
        factory = PrometheusMetricsFactory(registry: registry)
        gauge("switchboard_info", ["version": version, "mode": mode]).record(1)
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
        count("switchboard_reloads_total", ["result": "started"], to: reloads.started)
        count("switchboard_reloads_total", ["result": "finished"], to: reloads.finished)
        count("switchboard_reloads_total", ["result": "aborted"], to: reloads.aborted)
        var window: [UInt64] = []
        for worker in snapshot.workers {
            let slot = ["slot": "\(worker.slot)"]
            gauge("switchboard_worker_open_connections", slot).record(Int64(worker.open))
            gauge("switchboard_worker_queued_connections", slot).record(Int64(worker.queued))
            count("switchboard_worker_handled_total", slot, to: worker.handled)
            gauge("switchboard_worker_heartbeat_age_seconds", slot).record(worker.heartbeatAge)
            count(seconds: "switchboard_worker_cpu_seconds_total", slot, to: worker.cpuSeconds)
            gauge("switchboard_worker_resident_memory_bytes", slot).record(Int64(worker.residentBytes))
            let before = dispatchedAtLastScrape[worker.slot] ?? 0
            if worker.dispatched >= before { window.append(worker.dispatched - before) }
            dispatchedAtLastScrape[worker.slot] = worker.dispatched
        }
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
