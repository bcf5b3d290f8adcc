import CSwitchboardLinux

/// The deadline of an event loop's wait, kept by a timerfd in the loop's epoll set instead of by `epoll_wait`'s timeout.
///
/// A wait with a timeout has the kernel arm a timer when it blocks and cancel it when it wakes: under a load of new
/// connections that is once per wake-up, nearly once per connection. Measured with every wait's timeout dropped
/// (BENCHMARKS.md, "Tail latency", twenty-first part), that cost the master about 0.6 µs of CPU a connection and each
/// worker 0.3. A timerfd stays armed across waits: it is set again only for a deadline before the one it holds, so a
/// deadline that keeps moving later (the next heartbeat, sweep or steal check) costs one `timerfd_settime` each time
/// the timer fires, not one per wait.
///
/// The timer may fire before the loop's current deadline, when it still held an earlier one: the loop wakes, finds
/// nothing due, and waits again. It never fires after the deadline. Where the timerfd cannot be made or armed (out of
/// descriptors), ``timeout(until:now:)`` falls back to a timeout in milliseconds, as before.
///
/// One owner: a copy would read and arm the same timer twice. The loop keeps it in a local variable, not in a stored
/// property of a class, where every access would cost a run-time exclusivity check.
package struct WaitTimer: ~Copyable {
    /// The timerfd, to watch for reading in the loop's epoll set; -1 where it could not be made.
    package let descriptor: CInt
    /// When the armed timer fires (monotonic nanoseconds); `UInt64.max` when none is armed or its expiry was read.
    package private(set) var armed = UInt64.max
    /// How many times the timer was armed (`timerfd_settime`), for tests.
    package private(set) var arms = 0

    /// Makes the timerfd; where that fails the waits time out by themselves (``timeout(until:now:)``).
    package init() {
        self.init(owning: (try? Syscalls.timerDescriptor()) ?? -1)
    }

    /// Takes `descriptor` (a timerfd, or -1 for none) to close on `deinit`. A descriptor that is not a timerfd
    /// cannot be armed: the waits then time out by themselves, as where no timerfd could be made. Tests reach the
    /// fallback that way.
    package init(owning descriptor: CInt) {
        self.descriptor = descriptor
    }

    deinit {
        if descriptor >= 0 { Syscalls.close(descriptor) }
    }

    /// Watches the timer for reading in `epoll` under `token`. Where there is no timerfd there is nothing to watch:
    /// the waits time out by themselves.
    package func watch(in epoll: CInt, token: UInt64) throws(SystemCallError) {
        guard descriptor >= 0 else { return }
        try Syscalls.epollAdd(epoll, descriptor, events: sb_EPOLLIN, token: token)
    }

    /// The `epoll_wait` timeout for a wait that must end by `deadline`, arming the timer unless it already fires by
    /// then.
    /// - Parameters:
    ///   - deadline: Monotonic nanoseconds; `UInt64.max` for none.
    ///   - now: The monotonic clock.
    /// - Returns: 0 when `deadline` has come (look without waiting); -1 when the wait is to block until an event
    ///   (the timer's, at the latest); where the timer cannot be armed, milliseconds until `deadline`, rounded up, at
    ///   most a minute.
    package mutating func timeout(until deadline: UInt64, now: UInt64) -> Int {
        guard deadline > now else { return 0 }
        guard deadline != .max, deadline < armed else { return -1 }
        if descriptor >= 0 {
            do {
                try Syscalls.armTimer(descriptor, at: deadline)
                armed = deadline
                arms += 1
                return -1
            } catch {
                // Falls through to a timeout of the wait's own.
            }
        }
        return Int(min((deadline - now + 999_999) / 1_000_000, 60_000))
    }

    /// The timerfd was readable: reads its expiry, so the next wait blocks until the timer is armed again and fires.
    package mutating func fired() {
        Syscalls.drainEvent(descriptor)  // a timerfd reads like an eventfd: one 8-byte count
        armed = .max
    }
}
