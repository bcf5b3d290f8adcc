import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Switchboard

@Suite struct WatchdogPolicyTests {
    let policy = WatchdogPolicy(staleAfter: .seconds(2))
    let second: UInt64 = 1_000_000_000

    func worker(_ id: Int, serving: Bool = true, heartbeat: UInt64) -> WatchdogPolicy.Worker {
        WatchdogPolicy.Worker(id: id, pid: Int32(1000 + id), serving: serving, lastHeartbeat: heartbeat)
    }

    @Test func pingsWhileEveryServingWorkerHeartbeats() {
        #expect(policy.verdict(now: 10 * second, workers: [worker(1, heartbeat: 9 * second), worker(2, heartbeat: 8 * second + 1)]) == .ping)
    }

    @Test func pingsWithNoWorkerAtAll() {
        #expect(policy.verdict(now: 10 * second, workers: []) == .ping)
    }

    @Test func withholdsAndNamesTheLongestSilentWorker() {
        let verdict = policy.verdict(
            now: 10 * second,
            workers: [worker(1, heartbeat: 7 * second), worker(2, heartbeat: 5 * second), worker(3, heartbeat: 9 * second)])
        #expect(verdict == .withhold(worker: worker(2, heartbeat: 5 * second), silentFor: .seconds(5)))
    }

    @Test func aStartingWorkerDoesNotWithholdThePing() {
        // Its ready deadline covers it; the watchdog is about workers that stopped serving.
        #expect(policy.verdict(now: 10 * second, workers: [worker(1, serving: false, heartbeat: 0)]) == .ping)
    }
}

@Suite struct StopPolicyTests {
    @Test func systemdWaitsLongerOnlyWhileTheDrainMakesProgress() {
        var policy = StopExtension()
        let second: UInt64 = 1_000_000_000
        #expect(policy.extendedTimeout(marker: 10, deadline: 30 * second, now: second) == 29_000_000 + 5_000_000)
        #expect(policy.extendedTimeout(marker: 10, deadline: 30 * second, now: 2 * second) == nil, "no progress")
        #expect(policy.extendedTimeout(marker: 4, deadline: 30 * second, now: 3 * second) == 27_000_000 + 5_000_000)
        #expect(policy.extendedTimeout(marker: 1, deadline: 30 * second, now: 31 * second) == nil, "past the deadline")
    }

    @Test func acceptPausesOnlyForLackOfResources() {
        #expect(AcceptBackoff.resume(after: EMFILE, now: 5) == 5 + AcceptBackoff.pause)
        #expect(AcceptBackoff.resume(after: ENOBUFS, now: 5) == 5 + AcceptBackoff.pause)
        #expect(AcceptBackoff.resume(after: ECONNABORTED, now: 5) == nil)
    }
}
