import Foundation
import Testing

@testable import Switchboard

/// What the master lists from directories of `/proc`: a worker's own children (killed with it), and its own
/// descriptors (the metrics' `process_open_fds`).
@Suite struct ProcListingTests {
    @Test func aDirectoryListsEveryNameButTheDotsAndAMissingOneIsNil() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("switchboard-listing-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(Syscalls.directoryEntries(directory.path) == [])
        for name in ["a", "b.c", ".hidden"] {
            #expect(FileManager.default.createFile(atPath: directory.appendingPathComponent(name).path, contents: nil))
        }
        #expect(Syscalls.directoryEntries(directory.path)?.sorted() == [".hidden", "a", "b.c"])
        #expect(Syscalls.directoryEntries(directory.appendingPathComponent("missing").path) == nil)
    }

    @Test func aChildIsListedUnderItsParentUntilItExits() throws {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        let child = try Syscalls.spawn(
            path: "/bin/sleep", arguments: ["sleep", "30"], environment: [], channel: null, extra: nil)
        #expect(Syscalls.childProcesses(of: getpid()).contains(child))
        #expect(Syscalls.childProcesses(of: child) == [])
        kill(child, SIGKILL)
        var status = Syscalls.reap(child)
        for _ in 0..<2000 where status == .running {
            usleep(10_000)
            status = Syscalls.reap(child)
        }
        #expect(status != .running)
        #expect(!Syscalls.childProcesses(of: getpid()).contains(child))
    }

    @Test func theOpenDescriptorCountIsTheDescriptorsThatAreOpen() throws {
        // Counted independently: every descriptor number below the limit that fcntl accepts. Other tests open and
        // close descriptors meanwhile, so the two counts are taken again until they agree before and after a probe.
        var limit = rlimit()
        #expect(getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0)
        // Probing every number up to the limit (20,000 on CI) took long enough that, with the whole suite running,
        // 50 tries never found a quiet moment. The probe goes 1,024 past the highest number listed: still
        // independent of the listing for any descriptor it could have missed below that.
        func probed() -> Int {
            let listed = Syscalls.directoryEntries("/proc/self/fd")?.compactMap { CInt($0) }.max() ?? 0
            let highest = CInt(min(UInt64(limit.rlim_cur), UInt64(listed) + 1_024))
            return (0..<highest).filter { fcntl($0, F_GETFD) != -1 }.count
        }
        // The suite's other tests open and close descriptors in bursts (seen: 200 tries in 14 s never agreed), so it
        // keeps trying for up to a minute, with a pause between tries for a burst to pass.
        var agreed = false
        let deadline = ContinuousClock.now + .seconds(60)
        while !agreed && ContinuousClock.now < deadline {
            var fds: [CInt] = [-1, -1]
            #expect(pipe(&fds) == 0)
            let before = Syscalls.openDescriptorCount()
            let counted = probed()
            let after = Syscalls.openDescriptorCount()
            close(fds[0])
            close(fds[1])
            let closed = Syscalls.openDescriptorCount()
            agreed = before == counted && after == counted && closed == counted - 2
            if !agreed { usleep(5_000) }
        }
        #expect(agreed)
    }
}
