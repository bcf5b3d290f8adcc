import Foundation
import Testing

@testable import Switchboard

/// The reap reports a child's CPU time to the end (its rusage), which `/proc` cannot once the child is gone.
@Suite struct ReapTests {
    /// Starts a shell that burns CPU for a few hundred milliseconds, then exits with 3.
    func spawnBusyChild() throws -> pid_t {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        return try Syscalls.spawn(
            path: "/bin/sh", arguments: ["sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exit 3"],
            environment: [], channel: null, extra: nil)
    }

    /// Polls `reap` every 10 ms for up to 20 s until it finds the child exited.
    func reaped(_ reap: () -> Syscalls.ChildStatus?) -> Syscalls.ChildStatus? {
        for _ in 0..<2000 {
            let status = reap()
            if status != .running { return status }
            usleep(10_000)
        }
        return .running
    }

    @Test func reapingByPidReportsTheCPUTimeTheChildUsed() throws {
        let pid = try spawnBusyChild()
        let status = reaped { Syscalls.reap(pid) }
        guard case .exited(let code, let signaled, let cpuSeconds) = status else {
            Issue.record("not reaped: \(String(describing: status))")
            return
        }
        #expect(code == 3 && !signaled)
        #expect(cpuSeconds > 0.05, "\(cpuSeconds) s")
    }

    @Test func reapingThroughAPidfdReportsTheCPUTimeTheChildUsed() throws {
        let pid = try spawnBusyChild()
        let pidfd = try #require(Syscalls.processDescriptor(pid), "no pidfd on this kernel")
        defer { Syscalls.close(pidfd) }
        let status = reaped { Syscalls.reap(processDescriptor: pidfd) }
        guard case .exited(let code, let signaled, let cpuSeconds) = status else {
            Issue.record("not reaped: \(String(describing: status))")
            return
        }
        #expect(code == 3 && !signaled)
        #expect(cpuSeconds > 0.05, "\(cpuSeconds) s")
    }
}
