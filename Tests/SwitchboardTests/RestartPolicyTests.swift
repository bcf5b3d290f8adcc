import Testing

@testable import Switchboard

@Suite struct RestartPolicyTests {
    func settings(limit: Int? = 5) -> RestartPolicy.Settings {
        var settings = RestartPolicy.Settings()
        settings.baseDelay = .milliseconds(100)
        settings.maxDelay = .seconds(1)
        settings.healthyUptime = .seconds(10)
        settings.crashLoopLimit = limit
        settings.crashLoopWindow = .seconds(60)
        settings.jitter = 0.5
        return settings
    }

    let second: UInt64 = 1_000_000_000

    @Test func earlyExitsBackOffExponentiallyUpToTheCap() {
        var policy = RestartPolicy(settings: settings(limit: nil))
        let delays = (0..<6).map { index in
            policy.workerExited(uptime: .milliseconds(50), now: UInt64(index) * second, random: 0)
        }
        #expect(delays == [
            .restart(after: .milliseconds(100)), .restart(after: .milliseconds(200)),
            .restart(after: .milliseconds(400)), .restart(after: .milliseconds(800)),
            .restart(after: .seconds(1)), .restart(after: .seconds(1)),
        ])
    }

    @Test func jitterTakesOffAtMostItsFraction() {
        var policy = RestartPolicy(settings: settings())
        #expect(policy.workerExited(uptime: .zero, now: 0, random: 0.999_999) == .restart(after: .nanoseconds(50_000_050)))
    }

    @Test func healthyExitRestartsAtOnceAndResetsTheBackoff() {
        var policy = RestartPolicy(settings: settings())
        _ = policy.workerExited(uptime: .zero, now: 0, random: 0)
        _ = policy.workerExited(uptime: .zero, now: second, random: 0)
        #expect(policy.earlyExitsInARow == 2)
        #expect(policy.workerExited(uptime: .seconds(11), now: 2 * second, random: 0) == .restart(after: .zero))
        #expect(policy.workerExited(uptime: .zero, now: 3 * second, random: 0) == .restart(after: .milliseconds(100)))
    }

    @Test func tooManyEarlyExitsInTheWindowHalt() {
        var policy = RestartPolicy(settings: settings(limit: 3))
        for index in 0..<3 {
            #expect(policy.workerExited(uptime: .zero, now: UInt64(index) * second, random: 0) != .halt(earlyExits: 3))
        }
        #expect(policy.workerExited(uptime: .zero, now: 3 * second, random: 0) == .halt(earlyExits: 4))
    }

    @Test func earlyExitsOutsideTheWindowDoNotCount() {
        var policy = RestartPolicy(settings: settings(limit: 2))
        _ = policy.workerExited(uptime: .zero, now: 0, random: 0)
        _ = policy.workerExited(uptime: .zero, now: 1 * second, random: 0)
        if case .halt = policy.workerExited(uptime: .zero, now: 100 * second, random: 0) {
            Issue.record("exits 100 s ago are outside the 60 s window")
        }
    }

    @Test func noLimitRetriesForever() {
        var policy = RestartPolicy(settings: settings(limit: nil))
        for index in 0..<1000 {
            if case .halt = policy.workerExited(uptime: .zero, now: UInt64(index), random: 0) {
                Issue.record("halted with no limit")
                return
            }
        }
    }

    @Test func exitsForLackOfResourcesBackOffButNeverHalt() {
        var policy = RestartPolicy(settings: settings(limit: 2))
        for index in 0..<50 {
            let decision = policy.workerExited(
                uptime: .milliseconds(5), now: UInt64(index) * second / 10, random: 0, cause: .resourcePressure)
            guard case .restart = decision else {
                Issue.record("exit \(index) under resource pressure halted: \(decision)")
                return
            }
        }
        #expect(policy.workerExited(uptime: .zero, now: 6 * second, random: 0) == .restart(after: .seconds(1)))
    }

    @Test func outsideKillsRestartAfterTheBaseDelayAndNeverHalt() {
        var policy = RestartPolicy(settings: settings(limit: 2))
        for index in 0..<30 {
            let decision = policy.workerExited(
                uptime: .seconds(1), now: UInt64(index) * second, random: 0, cause: .killedFromOutside)
            #expect(decision == .restart(after: .milliseconds(100)), "kill \(index)")
        }
        // They neither grew the backoff nor used up the crash-loop budget.
        #expect(policy.workerExited(uptime: .zero, now: 30 * second, random: 0) == .restart(after: .milliseconds(100)))
    }
}
