import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Switchboard

/// The watchdog rule as a story: the master replaces hung workers itself; systemd hears about it only when no worker
/// has been able to serve for longer than the master could take to bring one back.
@Suite struct WatchdogPolicyTests {
    let second: UInt64 = 1_000_000_000
    /// Stale after 2 s, withheld past 20 s without a worker able to serve, the master started at 0.
    static func policy() -> WatchdogPolicy {
        WatchdogPolicy(staleAfter: .seconds(2), recoveryBound: .seconds(20), start: 0)
    }

    /// Worker `id` (the number only tells the story's workers apart), ready unless `serving` is false.
    func worker(_ id: Int, serving: Bool = true, heartbeat: UInt64) -> WatchdogPolicy.Worker {
        WatchdogPolicy.Worker(serving: serving, lastHeartbeat: heartbeat)
    }

    @Test func pingsWhileEveryServingWorkerHeartbeats() {
        var policy = Self.policy()
        let workers = [worker(1, heartbeat: 9 * second), worker(2, heartbeat: 8 * second + 1)]
        #expect(policy.verdict(now: 10 * second, workers: workers) == .ping)
    }

    @Test func oneStaleWorkerWhileAnotherServesStillPings() {
        var policy = Self.policy()
        // Worker 2 hung at 2 s: the master will kill and replace it; worker 1 serves meanwhile.
        let workers = [worker(1, heartbeat: 29 * second), worker(2, heartbeat: 2 * second)]
        #expect(policy.verdict(now: 30 * second, workers: workers) == .ping)
    }

    @Test func noWorkerServingForLessThanTheBoundStillPings() {
        var policy = Self.policy()
        #expect(policy.verdict(now: 10 * second, workers: [worker(1, heartbeat: 10 * second)]) == .ping)
        // The only worker hangs after its heartbeat at 10 s: stale from 12 s, and the master is on it.
        #expect(policy.verdict(now: 15 * second, workers: [worker(1, heartbeat: 10 * second)]) == .ping)
        // Killed and replaced: the replacement is starting, nobody serves yet; 19.9 s since the last heartbeat.
        let starting = worker(2, serving: false, heartbeat: 22 * second)
        #expect(policy.verdict(now: 29_900_000_000, workers: [starting]) == .ping)
    }

    @Test func pastTheBoundTheVerdictWithholdsAndSaysHowLongNoWorkerServed() {
        var policy = Self.policy()
        #expect(policy.verdict(now: 10 * second, workers: [worker(1, heartbeat: 10 * second)]) == .ping)
        #expect(policy.verdict(now: 15 * second, workers: [worker(1, heartbeat: 10 * second)]) == .ping)
        let starting = worker(2, serving: false, heartbeat: 22 * second)
        #expect(policy.verdict(now: 31 * second, workers: [starting]) == .withhold(outage: .seconds(21)))
        #expect(policy.verdict(now: 33 * second, workers: []) == .withhold(outage: .seconds(23)), "still none")
    }

    @Test func aWorkerServingAgainResumesThePingsAndTheNextOutageCountsFromThere() {
        var policy = Self.policy()
        #expect(policy.verdict(now: 10 * second, workers: [worker(1, heartbeat: 10 * second)]) == .ping)
        #expect(policy.verdict(now: 31 * second, workers: []) == .withhold(outage: .seconds(21)))
        // A replacement is ready and heartbeats.
        #expect(policy.verdict(now: 32 * second, workers: [worker(2, heartbeat: 31_500_000_000)]) == .ping)
        // It hangs right after: a new outage, measured from its last heartbeat, not from the first one.
        #expect(policy.verdict(now: 50 * second, workers: [worker(2, heartbeat: 32 * second)]) == .ping)
        #expect(policy.verdict(now: 53 * second, workers: []) == .withhold(outage: .seconds(21)))
    }

    @Test func theOutageRunsFromTheLastHeartbeatSeenAtAHealthCheckNotFromTheLastPing() {
        var policy = Self.policy()
        #expect(policy.verdict(now: 10 * second, workers: [worker(1, heartbeat: 10 * second)]) == .ping)
        // Health checks between two pings: fresh at 11 s; the worker heartbeats until 12 s, then hangs; it is stale
        // at the check at 14.5 s and killed right after (it leaves the list).
        policy.observe(now: 11 * second, workers: [worker(1, heartbeat: 10_800_000_000)])
        policy.observe(now: 14_500_000_000, workers: [worker(1, heartbeat: 12 * second)])
        #expect(policy.verdict(now: 31_900_000_000, workers: []) == .ping, "19.9 s since 12 s")
        #expect(policy.verdict(now: 32_500_000_000, workers: []) == .withhold(outage: .milliseconds(20_500)))
    }

    @Test func aWorkerThatIsStartingDoesNotCountAsServing() {
        var policy = Self.policy()
        #expect(policy.verdict(now: 30 * second, workers: [worker(1, heartbeat: 30 * second)]) == .ping)
        let starting = worker(2, serving: false, heartbeat: 60 * second)
        #expect(policy.verdict(now: 60 * second, workers: [starting]) == .withhold(outage: .seconds(30)))
    }

    @Test func aStartingMasterCountsItsOutageFromItsStart() {
        var starting = WatchdogPolicy(staleAfter: .seconds(2), recoveryBound: .seconds(20), start: 100 * second)
        let first = worker(1, serving: false, heartbeat: 100 * second)
        #expect(starting.verdict(now: 119 * second, workers: [first]) == .ping, "its first workers are starting")
        #expect(starting.verdict(now: 121 * second, workers: [first]) == .withhold(outage: .seconds(21)))
    }

    @Test func aStoppingMasterAlwaysPings() {
        var policy = Self.policy()
        // Its workers leave on purpose; the stop has its own deadlines (the drain, then TimeoutStopSec=).
        #expect(policy.verdict(now: 10 * second, workers: [worker(1, heartbeat: 10 * second)]) == .ping)
        #expect(policy.verdict(now: 40 * second, workers: [], stopping: true) == .ping)
        #expect(policy.verdict(now: 40 * second, workers: []) == .withhold(outage: .seconds(30)), "not stopping")
    }

    @Test func aHeartbeatStampedAfterTheCheckCountsAsFresh() {
        var policy = Self.policy()
        #expect(policy.verdict(now: 30 * second, workers: [worker(1, heartbeat: 30 * second + 5)]) == .ping)
        #expect(policy.verdict(now: 49 * second, workers: []) == .ping)
    }

    @Test func theRecoveryBoundIsOneReplacementRoundAtItsSlowest() {
        // Heartbeat timeout + health check interval + longest restart delay + ready timeout + 1 s of margin.
        let defaults = SupervisorMachine.Settings(Configuration())
        #expect(WatchdogPolicy.recoveryBound(defaults) == .milliseconds(10_000 + 250 + 10_000 + 30_000 + 1000))
        var configuration = Configuration()
        configuration.heartbeatInterval = .milliseconds(200)
        configuration.heartbeatTimeout = .seconds(3)
        configuration.readyTimeout = .seconds(1)
        configuration.restart.maxDelay = .milliseconds(500)
        let short = SupervisorMachine.Settings(configuration)
        #expect(WatchdogPolicy.recoveryBound(short) == .milliseconds(3000 + 200 + 500 + 1000 + 1000))
    }

    @Test func theMastersPolicyCountsAWorkerStaleAfterTwoMissedHeartbeatsAndAHalfSecond() {
        var configuration = Configuration()
        configuration.heartbeatInterval = .milliseconds(200)
        let masters = WatchdogPolicy(configuration: configuration, start: 0)
        #expect(masters.staleAfter == .milliseconds(900))
        #expect(masters.recoveryBound == WatchdogPolicy.recoveryBound(SupervisorMachine.Settings(configuration)))
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
