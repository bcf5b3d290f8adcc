import Testing

@testable import Switchboard

@Suite struct MasterMetricsTests {
    typealias Worker = MasterMetrics.Snapshot.Worker

    static func worker(_ slot: Int, dispatched: UInt64, handled: UInt64, cpuSeconds: Double) -> Worker {
        Worker(
            slot: slot, open: 1, queued: 0, dispatched: dispatched, handled: handled, heartbeatAge: 0.1,
            cpuSeconds: cpuSeconds, residentBytes: 4096)
    }

    /// Renders `workers` and returns each sample by its series (`name{labels}`).
    static func render(_ metrics: MasterMetrics, _ workers: [Worker]) -> [String: Double] {
        let snapshot = MasterMetrics.Snapshot(
            accepted: 0, dispatched: 0, takenBack: 0, redispatched: 0, stolen: 0, listenQueue: nil,
            configured: workers.count, ready: workers.count, draining: 0, workers: workers)
        let text = String(
            decoding: metrics.render(
                snapshot, process: (cpuSeconds: 0, residentBytes: 0, openFDs: 0, maxFDs: 0, startTime: 0)),
            as: UTF8.self)
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    @Test func aSlotsCountersAddItsPastWorkersToTheCurrentOne() {
        let metrics = MasterMetrics(version: "test", mode: "round-robin")
        _ = Self.render(metrics, [Self.worker(0, dispatched: 8, handled: 7, cpuSeconds: 1.5)])
        // It answered 2 more after that scrape, and its last CPU time came with its reap.
        metrics.workerLeft(slot: 0, dispatched: 9, handled: 9, cpuSeconds: 2)
        let samples = Self.render(metrics, [Self.worker(0, dispatched: 3, handled: 2, cpuSeconds: 0.25)])
        #expect(samples["switchboard_worker_handled_total{slot=\"0\"}"] == 11)
        #expect(samples["switchboard_worker_connections_dispatched_total{slot=\"0\"}"] == 12)
        #expect(samples["switchboard_worker_cpu_seconds_total{slot=\"0\"}"] == 2.25)
    }

    @Test func aWorkerReapedWithoutItsCPUTimeKeepsWhatTheLastScrapeSaw() {
        let metrics = MasterMetrics(version: "test", mode: "round-robin")
        _ = Self.render(metrics, [Self.worker(0, dispatched: 1, handled: 1, cpuSeconds: 1.5)])
        metrics.workerLeft(slot: 0, dispatched: 1, handled: 1, cpuSeconds: nil)
        let samples = Self.render(metrics, [Self.worker(0, dispatched: 0, handled: 0, cpuSeconds: 0.5)])
        #expect(samples["switchboard_worker_cpu_seconds_total{slot=\"0\"}"] == 2)
    }

    @Test func anEmptiedSlotLosesItsGaugesAndKeepsItsCounters() {
        let metrics = MasterMetrics(version: "test", mode: "round-robin")
        _ = Self.render(
            metrics,
            [
                Self.worker(0, dispatched: 4, handled: 4, cpuSeconds: 1),
                Self.worker(1, dispatched: 5, handled: 5, cpuSeconds: 1),
            ])
        metrics.workerLeft(slot: 1, dispatched: 5, handled: 5, cpuSeconds: 1)
        let samples = Self.render(metrics, [Self.worker(0, dispatched: 4, handled: 4, cpuSeconds: 1)])
        for gauge in [
            "open_connections", "queued_connections", "heartbeat_age_seconds", "resident_memory_bytes",
        ] {
            #expect(samples["switchboard_worker_\(gauge){slot=\"0\"}"] != nil)
            #expect(samples["switchboard_worker_\(gauge){slot=\"1\"}"] == nil)
        }
        #expect(samples["switchboard_worker_handled_total{slot=\"1\"}"] == 5)
        #expect(samples["switchboard_worker_cpu_seconds_total{slot=\"1\"}"] == 1)
        // Refilled, the slot's gauges come back and its counters go on.
        let refilled = Self.render(
            metrics,
            [
                Self.worker(0, dispatched: 4, handled: 4, cpuSeconds: 1),
                Self.worker(1, dispatched: 1, handled: 1, cpuSeconds: 0.5),
            ])
        #expect(refilled["switchboard_worker_open_connections{slot=\"1\"}"] == 1)
        #expect(refilled["switchboard_worker_handled_total{slot=\"1\"}"] == 6)
    }

    @Test func theSkewWindowSpansAReplacement() {
        let metrics = MasterMetrics(version: "test", mode: "round-robin")
        _ = Self.render(
            metrics,
            [
                Self.worker(0, dispatched: 10, handled: 10, cpuSeconds: 0),
                Self.worker(1, dispatched: 10, handled: 10, cpuSeconds: 0),
            ])
        metrics.workerLeft(slot: 1, dispatched: 10, handled: 10, cpuSeconds: 0)
        let samples = Self.render(
            metrics,
            [
                Self.worker(0, dispatched: 14, handled: 14, cpuSeconds: 0),
                Self.worker(1, dispatched: 2, handled: 2, cpuSeconds: 0),
            ])
        #expect(samples["switchboard_dispatch_skew_ratio"] == 2, "4 to slot 0, 2 to slot 1's new worker")
    }
}
