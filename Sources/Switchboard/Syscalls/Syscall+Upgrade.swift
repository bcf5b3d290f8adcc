import CSwitchboardLinux

#if canImport(Glibc)
import Glibc
#endif

/// The system calls of the master's upgrade in place: the pre-check's process, the hand-over's memfd, the exec.
extension Syscalls {
    /// Spawns `path` with `arguments` and `environment` for the upgrade's pre-check, its stdout and stderr on `output`.
    package static func spawnCheck(
        path: String, arguments: [String], environment: [String], output: CInt
    ) throws(SystemCallError) -> pid_t {
        var pid: pid_t = 0
        let code = unsafe withCStrings(arguments) { argv in
            unsafe withCStrings(environment) { envp in unsafe sb_spawn_check(path, argv, envp, output, &pid) }
        }
        if code != 0 { throw SystemCallError(call: "posix_spawn", code: code) }
        return pid
    }

    /// A pipe, both ends non-blocking and close-on-exec: `(read end, write end)`.
    package static func pipe() throws(SystemCallError) -> (read: CInt, write: CInt) {
        var fds: (CInt, CInt) = (-1, -1)
        _ = try retryingOnInterrupt("pipe2") {
            unsafe withUnsafeMutablePointer(to: &fds) { pointer in
                unsafe pointer.withMemoryRebound(to: CInt.self, capacity: 2) { unsafe sb_pipe($0) }
            }
        }
        return (fds.0, fds.1)
    }

    /// An anonymous file in memory that survives exec (`memfd_create`), holding `bytes`, positioned at its start.
    package static func memoryFile(named name: String, holding bytes: [UInt8]) throws(SystemCallError) -> CInt {
        let fd = try retryingOnInterrupt("memfd_create") { unsafe sb_memfd(name) }
        var offset = 0
        while offset < bytes.count {
            let written = unsafe bytes.withUnsafeBytes { raw in
                unsafe Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
            }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                let code = errno
                close(fd)
                throw SystemCallError(call: "write", code: code)
            }
            offset += written
        }
        do {
            try rewind(fd)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Moves `fd`'s offset back to its start.
    package static func rewind(_ fd: CInt) throws(SystemCallError) {
        _ = try retryingOnInterrupt("lseek") { lseek(fd, 0, SEEK_SET) }
    }

    /// Reads `fd` from its offset to its end (blocking; for a memfd or a file).
    package static func readToEnd(_ fd: CInt, limit: Int = 64 << 20) throws(SystemCallError) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while result.count < limit {
            let count = unsafe chunk.withUnsafeMutableBytes { raw in unsafe Glibc.read(fd, raw.baseAddress, raw.count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 { throw SystemCallError(call: "read", code: errno) }
            if count == 0 { break }
            result.append(contentsOf: chunk[0..<count])
        }
        return result
    }

    /// The running image, opened without close-on-exec so a new image can exec it back.
    package static func openOwnImage() throws(SystemCallError) -> CInt {
        try retryingOnInterrupt("open /proc/self/exe") { sb_open_own_image() }
    }

    /// Execs `path` with `signals` blocked across the exec (they arrive pending in the new image) and `ignored`
    /// ignored (lost until the new image's handlers take over, instead of ending or stopping it).
    /// - Returns: Only when the exec failed, with why (the signal mask and dispositions are back as they were).
    package static func execute(
        path: String, arguments: [String], environment: [String], blocking signals: [CInt], ignoring ignored: [CInt]
    ) -> SystemCallError {
        let code = unsafe exec(arguments, environment, signals, ignored) { argv, envp, blocked, count, lost, lostCount in
            unsafe sb_exec(path, argv, envp, blocked, count, lost, lostCount)
        }
        return SystemCallError(call: "execve \(path)", code: code)
    }

    /// Execs the file open at `fd` (`fexecve`), with `signals` blocked and `ignored` ignored across the exec.
    /// - Returns: Only when the exec failed, with why.
    package static func execute(
        descriptor fd: CInt, arguments: [String], environment: [String], blocking signals: [CInt],
        ignoring ignored: [CInt]
    ) -> SystemCallError {
        let code = unsafe exec(arguments, environment, signals, ignored) { argv, envp, blocked, count, lost, lostCount in
            unsafe sb_exec_descriptor(fd, argv, envp, blocked, count, lost, lostCount)
        }
        return SystemCallError(call: "fexecve", code: code)
    }

    /// The C arrays both execs take, then `call` with them.
    private static func exec(
        _ arguments: [String], _ environment: [String], _ signals: [CInt], _ ignored: [CInt],
        _ call: (
            UnsafePointer<UnsafeMutablePointer<CChar>?>, UnsafePointer<UnsafeMutablePointer<CChar>?>,
            UnsafePointer<CInt>, CInt, UnsafePointer<CInt>, CInt
        ) -> CInt
    ) -> CInt {
        precondition(ignored.count <= 8)
        // One element at least, so each buffer has an address even when a list is empty (its count says 0).
        let blockedCopy = signals.isEmpty ? [0] : signals
        let ignoredCopy = ignored.isEmpty ? [0] : ignored
        return unsafe withCStrings(arguments) { argv in
            unsafe withCStrings(environment) { envp in
                unsafe blockedCopy.withUnsafeBufferPointer { blocked in
                    unsafe ignoredCopy.withUnsafeBufferPointer { lost in
                        unsafe call(
                            argv, envp, blocked.baseAddress!, CInt(signals.count), lost.baseAddress!,
                            CInt(ignored.count))
                    }
                }
            }
        }
    }

    /// Unblocks `signals` in the calling thread.
    package static func unblock(_ signals: [CInt]) {
        _ = unsafe signals.withUnsafeBufferPointer { unsafe sb_unblock_signals($0.baseAddress!, CInt($0.count)) }
    }

    /// Whether `fd` is open.
    package static func isOpen(_ fd: CInt) -> Bool {
        fd >= 0 && sb_is_open(fd) == 1
    }

    /// Ends this process at once with `code` (no atexit handlers: for a process that must not run the program on).
    package static func exitNow(_ code: Int32) -> Never {
        _exit(code)
    }
}
