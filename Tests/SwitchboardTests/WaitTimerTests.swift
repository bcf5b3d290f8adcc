import CSwitchboardLinux
import Testing

@testable import Switchboard

/// The loops' wait timer on a real timerfd and a real epoll set: what each wait's timeout is, when the kernel timer
/// is armed again, and that the timer ends a wait that has no timeout of its own.
@Suite struct WaitTimerTests {
    static let millisecond: UInt64 = 1_000_000
    static let token: UInt64 = 8

    /// An epoll set watching `timer`; closed by the caller.
    static func epollSet(watching timer: borrowing WaitTimer) throws -> CInt {
        let epoll = try Syscalls.epollCreate()
        try timer.watch(in: epoll, token: token)
        return epoll
    }

    /// Waits at most `bound` ms (the test's own limit, not the loop's), returning the events and the time it took.
    static func wait(_ epoll: CInt, bound: Int) throws -> (events: [sb_epoll_event], took: UInt64) {
        var events = [sb_epoll_event](repeating: sb_epoll_event(), count: 4)
        let start = Syscalls.monotonicNanoseconds()
        let count = try Syscalls.epollWait(epoll, &events, timeoutMilliseconds: bound)
        return (Array(events.prefix(count)), Syscalls.monotonicNanoseconds() - start)
    }

    @Test func aDeadlineThatHasComeLooksWithoutWaitingAndNoneWaitsForEvents() {
        var timer = WaitTimer()
        #expect(timer.descriptor >= 0)
        let now = Syscalls.monotonicNanoseconds()
        #expect(timer.timeout(until: now, now: now) == 0)
        #expect(timer.timeout(until: now - 1, now: now) == 0)
        #expect(timer.timeout(until: .max, now: now) == -1)
        #expect(timer.arms == 0)
        #expect(timer.armed == .max)
    }

    /// The point of the timer: a deadline that moves later (the next heartbeat, the next sweep) leaves the armed
    /// timer alone; only an earlier one arms it again.
    @Test func onlyAnEarlierDeadlineArmsTheTimerAgain() {
        var timer = WaitTimer()
        let now = Syscalls.monotonicNanoseconds()
        #expect(timer.timeout(until: now + 200 * Self.millisecond, now: now) == -1)
        #expect(timer.arms == 1)
        #expect(timer.armed == now + 200 * Self.millisecond)
        for later in [200, 250, 300, 10_000] as [UInt64] {
            #expect(timer.timeout(until: now + later * Self.millisecond, now: now + Self.millisecond) == -1)
        }
        #expect(timer.arms == 1)
        #expect(timer.armed == now + 200 * Self.millisecond)
        #expect(timer.timeout(until: now + 50 * Self.millisecond, now: now + Self.millisecond) == -1)
        #expect(timer.arms == 2)
        #expect(timer.armed == now + 50 * Self.millisecond)
    }

    /// A wait with no timeout of its own (-1) ends when the timer fires, not before the deadline; once its expiry is
    /// read the descriptor is quiet, and the next deadline arms it again.
    @Test func theTimerEndsAWaitAtItsDeadlineAndIsQuietOnceRead() throws {
        var timer = WaitTimer()
        let epoll = try Self.epollSet(watching: timer)
        defer { Syscalls.close(epoll) }
        let now = Syscalls.monotonicNanoseconds()
        #expect(timer.timeout(until: now + 30 * Self.millisecond, now: now) == -1)
        let (events, _) = try Self.wait(epoll, bound: 5_000)
        let woke = Syscalls.monotonicNanoseconds()
        #expect(events.map(\.data) == [Self.token])
        #expect(woke >= now + 30 * Self.millisecond)
        #expect(woke < now + 2_000 * Self.millisecond)
        timer.fired()
        #expect(timer.armed == .max)
        #expect(try Self.wait(epoll, bound: 0).events.isEmpty)

        let again = Syscalls.monotonicNanoseconds()
        #expect(timer.timeout(until: again + 10 * Self.millisecond, now: again) == -1)
        #expect(timer.arms == 2)
        #expect(try Self.wait(epoll, bound: 5_000).events.map(\.data) == [Self.token])
        #expect(Syscalls.monotonicNanoseconds() >= again + 10 * Self.millisecond)
    }

    /// A timer still armed for an earlier deadline ends the wait early (the loop finds nothing due and waits again);
    /// it never ends it late.
    @Test func aTimerArmedEarlierEndsTheWaitEarlyNeverLate() throws {
        var timer = WaitTimer()
        let epoll = try Self.epollSet(watching: timer)
        defer { Syscalls.close(epoll) }
        let now = Syscalls.monotonicNanoseconds()
        #expect(timer.timeout(until: now + 20 * Self.millisecond, now: now) == -1)
        #expect(timer.timeout(until: now + 3_000 * Self.millisecond, now: now) == -1)
        let (events, took) = try Self.wait(epoll, bound: 5_000)
        #expect(events.map(\.data) == [Self.token])
        #expect(took < 2_000 * Self.millisecond)
        timer.fired()
        let after = Syscalls.monotonicNanoseconds()
        #expect(timer.timeout(until: now + 3_000 * Self.millisecond, now: after) == -1)
        #expect(timer.armed == now + 3_000 * Self.millisecond)
        #expect(timer.arms == 2)
    }

    /// Where no timerfd could be made (out of descriptors), each wait times out by itself: milliseconds until the
    /// deadline, rounded up so it never wakes before it, and at most a minute.
    @Test func withoutATimerEachWaitTimesOutByItself() {
        var timer = WaitTimer(owning: -1)
        let now = Syscalls.monotonicNanoseconds()
        #expect(timer.timeout(until: now, now: now) == 0)
        #expect(timer.timeout(until: .max, now: now) == -1)
        #expect(timer.timeout(until: now + 1, now: now) == 1)
        #expect(timer.timeout(until: now + 1_500_000, now: now) == 2)
        #expect(timer.timeout(until: now + 40 * Self.millisecond, now: now) == 40)
        #expect(timer.timeout(until: now + 3_600_000 * Self.millisecond, now: now) == 60_000)
        #expect(timer.arms == 0)
        #expect(timer.armed == .max)
    }

    /// A timer that cannot be armed (here a descriptor that is not a timerfd: `timerfd_settime` fails with EINVAL)
    /// falls back the same way, at every deadline.
    @Test func aTimerThatCannotBeArmedFallsBackToTheWaitsOwnTimeout() throws {
        var timer = WaitTimer(owning: try Syscalls.eventDescriptor())
        let now = Syscalls.monotonicNanoseconds()
        #expect(timer.timeout(until: now + 25 * Self.millisecond, now: now) == 25)
        #expect(timer.timeout(until: now + 10 * Self.millisecond, now: now) == 10)
        #expect(timer.arms == 0)
        #expect(timer.armed == .max)
        // The wait itself: the loop's epoll set, the unarmable descriptor in it, and the fallback's timeout end the
        // wait at the deadline and not before.
        let epoll = try Self.epollSet(watching: timer)
        defer { Syscalls.close(epoll) }
        let start = Syscalls.monotonicNanoseconds()
        let timeout = timer.timeout(until: start + 30 * Self.millisecond, now: start)
        #expect(timeout == 30)
        let (events, took) = try Self.wait(epoll, bound: timeout >= 0 ? timeout : 1_000)  // -1 would wait forever
        #expect(events.isEmpty)
        #expect(took >= 30 * Self.millisecond)
        #expect(took < 2_000 * Self.millisecond)
    }
}
