import CSwitchboardLinux

#if canImport(Glibc)
import Glibc
#endif

/// Calls `body` until it returns something other than -1 with `EINTR`; throws for any other failure.
@inline(__always)
func retryingOnInterrupt<R: FixedWidthInteger>(
    _ call: String,
    _ body: () -> R
) throws(SystemCallError) -> R {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno  // read it before anything else runs
        if code != EINTR { throw SystemCallError(call: call, code: code) }
    }
}

/// The outcome of a non-blocking call that may have had nothing to do.
package enum NonBlocking<Value> {
    case done(Value)
    case wouldBlock
}

/// The user a worker runs as: uid, gid and supplementary groups (`initgroups`' list), resolved by the master.
package struct WorkerIdentity: Equatable, Sendable {
    package var uid: UInt32
    package var gid: UInt32
    package var groups: [UInt32]
}

/// Thin, typed wrappers over the system calls Switchboard makes. The only Swift that touches pointers.
package enum Syscalls {
    /// Closes `fd`, ignoring `EINTR` (Linux always releases the descriptor). `EBADF` means the descriptor was
    /// closed already or never open: a double close, which could have closed someone else's descriptor in between,
    /// so it stops the process (as SwiftNIO does) instead of passing silently.
    package static func close(_ fd: CInt) {
        guard Glibc.close(fd) != 0 else { return }
        let code = errno
        precondition(code != EBADF, "close(\(fd)) failed with EBADF: a descriptor was closed twice")
    }

    package static func socketPair() throws(SystemCallError) -> (CInt, CInt) {
        var fds: (CInt, CInt) = (-1, -1)
        _ = try retryingOnInterrupt("socketpair") {
            unsafe withUnsafeMutablePointer(to: &fds) { pointer in
                unsafe pointer.withMemoryRebound(to: CInt.self, capacity: 2) { unsafe sb_seqpacket_pair($0) }
            }
        }
        return fds
    }

    /// A connected pair of `AF_UNIX` stream sockets, close-on-exec (a connection to itself, for a self-test).
    package static func streamSocketPair() throws(SystemCallError) -> (CInt, CInt) {
        var fds: (CInt, CInt) = (-1, -1)
        let type = CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue)
        _ = try retryingOnInterrupt("socketpair") {
            unsafe withUnsafeMutablePointer(to: &fds) { pointer in
                unsafe pointer.withMemoryRebound(to: CInt.self, capacity: 2) { unsafe Glibc.socketpair(AF_UNIX, type, 0, $0) }
            }
        }
        return fds
    }

    /// Creates `<base>/<prefix>XXXXXX` with mode 0700 (`mkdtemp`): a directory nobody else can enter.
    package static func makePrivateDirectory(in base: String, prefix: String) throws(SystemCallError) -> String {
        var template = Array("\(base)/\(prefix)XXXXXX".utf8CString)
        guard let made = unsafe mkdtemp(&template) else { throw SystemCallError(call: "mkdtemp", code: errno) }
        return unsafe String(cString: made)
    }

    /// Removes an empty directory, ignoring failures.
    package static func removeDirectory(_ path: String) {
        _ = unsafe Glibc.rmdir(path)
    }

    /// Accepts one connection, non-blocking and close-on-exec.
    package static func accept(_ listener: CInt) throws(SystemCallError) -> NonBlocking<CInt> {
        while true {
            let fd = sb_accept(listener)
            if fd >= 0 { return .done(fd) }
            let code = errno
            switch code {
            case EINTR, ECONNABORTED: continue
            case EAGAIN: return .wouldBlock
            default: throw SystemCallError(call: "accept4", code: code)
            }
        }
    }

    /// Sends one message with `fds` attached; never blocks unless `blocking`.
    package static func send(
        _ socket: CInt,
        bytes: UnsafeRawBufferPointer,
        fds: UnsafeBufferPointer<CInt>,
        blocking: Bool = false
    ) throws(SystemCallError) -> NonBlocking<Void> {
        while true {
            let sent = unsafe sb_send_message(
                socket, bytes.baseAddress, bytes.count, fds.baseAddress, CInt(fds.count), blocking ? 1 : 0)
            if sent >= 0 { return .done(()) }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            default: throw SystemCallError(call: "sendmsg", code: code)
            }
        }
    }

    /// Receives one message into `buffer` and up to `fds.count` descriptors.
    /// - Returns: the byte count and descriptor count; `(0, 0)` at end of stream.
    package static func receive(
        _ socket: CInt,
        into buffer: UnsafeMutableRawBufferPointer,
        fds: UnsafeMutableBufferPointer<CInt>,
        blocking: Bool
    ) throws(SystemCallError) -> NonBlocking<(bytes: Int, fds: Int, truncated: Bool)> {
        while true {
            var count: CInt = 0
            var truncated: CInt = 0
            let received = unsafe sb_receive_message(
                socket, buffer.baseAddress!, buffer.count, fds.baseAddress!, CInt(fds.count), &count, &truncated,
                blocking ? 1 : 0)
            if received >= 0 { return .done((received, Int(count), truncated != 0)) }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            default: throw SystemCallError(call: "recvmsg", code: code)
            }
        }
    }

    /// Sleeps the calling thread.
    package static func sleep(milliseconds: Int) {
        var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var remaining = timespec()
        while unsafe nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    /// A non-blocking UNIX stream listener at `path`, mode 0600 (a stale socket file there is replaced).
    package static func listenUnix(_ path: String, backlog: Int = 16) throws(SystemCallError) -> CInt {
        try retryingOnInterrupt("bind") { unsafe sb_unix_listen(path, CInt(backlog)) }
    }

    /// A blocking connection to the UNIX stream socket at `path`.
    package static func connectUnix(_ path: String) throws(SystemCallError) -> CInt {
        try retryingOnInterrupt("connect") { unsafe sb_unix_connect(path) }
    }

    /// The uid of the peer of a UNIX socket.
    package static func peerUID(_ fd: CInt) -> UInt32? {
        var uid: UInt32 = 0
        return unsafe sb_peer_uid(fd, &uid) == 0 ? uid : nil
    }

    /// A listening TCP socket's accept queue: connections waiting and the limit.
    package static func listenQueue(_ fd: CInt) -> (depth: Int, limit: Int)? {
        var depth: UInt32 = 0
        var limit: UInt32 = 0
        return unsafe sb_listen_queue(fd, &depth, &limit) == 0 ? (Int(depth), Int(limit)) : nil
    }

    /// Removes a file, ignoring failures.
    package static func unlink(_ path: String) {
        _ = unsafe Glibc.unlink(path)
    }

    /// This process's effective uid.
    package static var effectiveUID: UInt32 { geteuid() }

    /// The contents of a small file (up to 64 KiB), such as one under `/proc`; nil when it cannot be read.
    package static func readSmallFile(_ path: String) -> String? {
        let fd = unsafe open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 64 * 1024)
        var total = 0
        while total < bytes.count {
            let count = unsafe bytes.withUnsafeMutableBytes { raw in
                unsafe Glibc.read(fd, raw.baseAddress! + total, raw.count - total)
            }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            total += count
        }
        return String(decoding: bytes[0..<total], as: UTF8.self)
    }

    /// The live children of `pid`: every thread's `/proc/<pid>/task/<tid>/children` (a child is listed under the
    /// thread that started it). Empty when the process is gone or `/proc` is not there.
    package static func childProcesses(of pid: pid_t) -> [pid_t] {
        (directoryEntries("/proc/\(pid)/task") ?? []).compactMap { pid_t($0) }.flatMap { tid -> [pid_t] in
            guard let text = readSmallFile("/proc/\(pid)/task/\(tid)/children") else { return [] }
            return text.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { pid_t($0) }
        }
    }

    /// The names in the directory at `path`, without `.` and `..`; nil when it cannot be opened. While it reads, the
    /// listing holds a descriptor of its own (which `/proc/self/fd` shows).
    package static func directoryEntries(_ path: String) -> [String]? {
        guard let directory = unsafe opendir(path) else { return nil }
        defer { _ = unsafe closedir(directory) }
        var names: [String] = []
        while let entry = unsafe readdir(directory) {
            let name = unsafe withUnsafeBytes(of: entry.pointee.d_name) { raw in
                unsafe String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// CPU seconds (user + system) and resident bytes of a process, from `/proc/<pid>/stat`.
    package static func processUsage(_ pid: pid_t) -> (cpuSeconds: Double, residentBytes: Int)? {
        guard let text = readSmallFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command name: state is field 3, utime 14, stime 15, rss 24 (1-based, as proc(5) numbers them).
        guard fields.count > 21, let user = Double(fields[11]), let system = Double(fields[12]),
            let pages = Int(fields[21])
        else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ((user + system) / max(ticks, 1), pages * Int(sysconf(Int32(_SC_PAGESIZE))))
    }

    /// A user's uid, primary gid and groups, or nil when there is no such user.
    package static func lookUpUser(_ name: String) -> WorkerIdentity? {
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        var groups = [UInt32](repeating: 0, count: 256)
        var count = CInt(groups.count)
        guard unsafe sb_lookup_user(name, &uid, &gid, &groups, &count) == 0 else { return nil }
        return WorkerIdentity(uid: uid, gid: gid, groups: Array(groups[0..<Int(count)]))
    }

    /// A group's gid, or nil when there is no such group.
    package static func lookUpGroup(_ name: String) -> UInt32? {
        var gid: UInt32 = 0
        return unsafe sb_lookup_group(name, &gid) == 0 ? gid : nil
    }

    /// The CPUs this process may run on (its affinity mask: cgroup and `CPUAffinity=` limits included).
    package static func allowedCPUs() -> [Int] {
        var cpus = [CInt](repeating: 0, count: 1024)
        let count = unsafe sb_allowed_cpus(&cpus, CInt(cpus.count))
        return count > 0 ? cpus[0..<Int(count)].map(Int.init) : []
    }

    /// How many descriptors this process has open (the entries of `/proc/self/fd`, less the one reading it).
    package static func openDescriptorCount() -> Int {
        max((directoryEntries("/proc/self/fd")?.count ?? 1) - 1, 0)
    }

    /// Seconds since the epoch, now.
    package static func wallClockSeconds() -> Double {
        var now = timespec()
        _ = unsafe clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// The bytes waiting in `socket`'s receive queue (`SIOCINQ`), or nil when the call failed.
    package static func queuedBytes(_ socket: CInt) -> Int? {
        let bytes = sb_queued_bytes(socket)
        return bytes >= 0 ? Int(bytes) : nil
    }

    /// Copies the start of the next message into `buffer` without removing it or taking its descriptors.
    /// - Returns: The bytes copied; `.done(0)` at end of stream.
    package static func peek(_ socket: CInt, into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError)
        -> NonBlocking<Int>
    {
        while true {
            let peeked = unsafe sb_peek_message(socket, buffer.baseAddress!, buffer.count)
            if peeked >= 0 { return .done(peeked) }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            default: throw SystemCallError(call: "recvmsg", code: code)
            }
        }
    }

    package static func listenTCP(
        host: String,
        port: Int,
        backlog: Int,
        reusePort: Bool,
        listening: Bool = true
    ) throws(SystemCallError) -> (fd: CInt, port: Int) {
        var bound: CInt = 0
        var family: CInt = 0
        let fd = try retryingOnInterrupt("bind") {
            unsafe sb_tcp_listen(host, CInt(port), CInt(backlog), reusePort ? 1 : 0, listening ? 1 : 0, &bound, &family)
        }
        return (fd, Int(bound))
    }

    /// The numeric address `fd` is bound to, IPv6 in brackets.
    package static func localAddress(_ fd: CInt) throws(SystemCallError) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        _ = try retryingOnInterrupt("getsockname") {
            unsafe buffer.withUnsafeMutableBufferPointer { unsafe sb_local_address(fd, $0.baseAddress!, $0.count) }
        }
        return unsafe buffer.withUnsafeBufferPointer { unsafe String(cString: $0.baseAddress!) }
    }

    /// Whether `fd` is a socket of type SOCK_STREAM.
    package static func isStreamSocket(_ fd: CInt) -> Bool {
        var type: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        return unsafe getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == CInt(SOCK_STREAM.rawValue)
    }

    package static func localPort(_ fd: CInt) throws(SystemCallError) -> Int {
        Int(try retryingOnInterrupt("getsockname") { sb_local_port(fd) })
    }


    package static func setNonBlocking(_ fd: CInt, _ on: Bool) throws(SystemCallError) {
        _ = try retryingOnInterrupt("fcntl") { sb_set_nonblocking(fd, on ? 1 : 0) }
    }

    package static func setCloseOnExec(_ fd: CInt, _ on: Bool) throws(SystemCallError) {
        _ = try retryingOnInterrupt("fcntl") { sb_set_cloexec(fd, on ? 1 : 0) }
    }

    package static func epollCreate() throws(SystemCallError) -> CInt {
        try retryingOnInterrupt("epoll_create1") { sb_epoll_create() }
    }

    package static func epollAdd(_ ep: CInt, _ fd: CInt, events: UInt32, token: UInt64) throws(SystemCallError) {
        _ = try retryingOnInterrupt("epoll_ctl") { sb_epoll_add(ep, fd, events, token) }
    }

    package static func epollModify(_ ep: CInt, _ fd: CInt, events: UInt32, token: UInt64) throws(SystemCallError) {
        _ = try retryingOnInterrupt("epoll_ctl") { sb_epoll_modify(ep, fd, events, token) }
    }

    package static func epollRemove(_ ep: CInt, _ fd: CInt) {
        _ = sb_epoll_remove(ep, fd)
    }

    /// Waits for events; returns how many were stored at the start of `events` (0 when interrupted).
    /// - Parameter unblockingSignals: Whether the signals of ``installSignalHandlers(_:wake:)`` are unblocked during
    ///   the wait (the mask ``prepareSignalWait()`` kept on this thread).
    package static func epollWait(
        _ ep: CInt,
        _ events: inout [sb_epoll_event],
        timeoutMilliseconds: Int,
        unblockingSignals: Bool = false
    ) throws(SystemCallError) -> Int {
        let n = unsafe events.withUnsafeMutableBufferPointer { buffer in
            unblockingSignals
                ? unsafe sb_epoll_wait_signals(ep, buffer.baseAddress!, CInt(buffer.count), CInt(timeoutMilliseconds))
                : unsafe sb_epoll_wait(ep, buffer.baseAddress!, CInt(buffer.count), CInt(timeoutMilliseconds))
        }
        if n >= 0 { return Int(n) }
        let code = errno
        if code == EINTR { return 0 }
        throw SystemCallError(call: "epoll_wait", code: code)
    }

    package static func signalDescriptor(_ signals: [CInt]) throws(SystemCallError) -> CInt {
        try retryingOnInterrupt("signalfd") {
            unsafe signals.withUnsafeBufferPointer { unsafe sb_signalfd_open($0.baseAddress!, CInt($0.count)) }
        }
    }

    /// Reads one pending signal, or nil when none is pending.
    package static func readSignal(_ fd: CInt) -> CInt? {
        while true {
            let signal = sb_signalfd_read(fd)
            if signal >= 0 { return signal }
            if errno == EINTR { continue }
            return nil
        }
    }

    /// Installs process-wide handlers for `signals` that count each arrival and write to `wake` (an eventfd), on
    /// whichever thread the kernel delivers them; the previous dispositions are kept for
    /// ``restoreSignalHandlers()``.
    /// - Throws: `EBUSY` while another owner has them installed.
    package static func installSignalHandlers(_ signals: [CInt], wake: CInt) throws(SystemCallError) {
        _ = try retryingOnInterrupt("sigaction") {
            unsafe signals.withUnsafeBufferPointer { unsafe sb_signals_install($0.baseAddress!, CInt($0.count), wake) }
        }
    }

    /// Keeps this thread's signal mask, less the signals the handlers take, for
    /// `epollWait(_:_:timeoutMilliseconds:unblockingSignals:)`.
    package static func prepareSignalWait() {
        _ = sb_signals_prepare_wait()
    }

    /// How many times `signal` arrived since the last take (its handler counts, this resets).
    package static func takeSignal(_ signal: CInt) -> Int {
        Int(sb_signals_take(signal))
    }

    /// Puts back the dispositions ``installSignalHandlers(_:wake:)`` replaced; afterwards no handler writes to the
    /// wake descriptor, so it may be closed.
    package static func restoreSignalHandlers() {
        sb_signals_restore()
    }

    /// Sets SIGCHLD to its default if this process ignores it (`SIG_IGN` survives exec): ignored, the kernel reaps
    /// children itself and waiting for one fails with `ECHILD`.
    /// - Returns: Whether it was ignored.
    package static func resetIgnoredChildSignal() -> Bool {
        sb_child_signal_reset_if_ignored() == 1
    }

    /// Spawns `path` with the channel at fd 3 and `extra` (if any) at fd 4.
    package static func spawn(
        path: String,
        arguments: [String],
        environment: [String],
        channel: CInt,
        extra: CInt?,
        identity: WorkerIdentity? = nil,
        cpu: Int? = nil,
        normalScheduling: Bool = false
    ) throws(SystemCallError) -> pid_t {
        var pid: pid_t = 0
        let groups = identity?.groups ?? []
        let code = unsafe withCStrings(arguments) { argv in
            unsafe withCStrings(environment) { envp in
                unsafe groups.withUnsafeBufferPointer { groupBuffer in
                    var setup = unsafe sb_worker_setup(
                        setIdentity: identity == nil ? 0 : 1, uid: identity?.uid ?? 0, gid: identity?.gid ?? 0,
                        groups: groupBuffer.baseAddress, groupCount: CInt(groups.count), cpu: CInt(cpu ?? -1),
                        normalScheduling: normalScheduling ? 1 : 0)
                    return unsafe sb_spawn(path, argv, envp, channel, extra ?? -1, &setup, &pid)
                }
            }
        }
        if code != 0 { throw SystemCallError(call: "posix_spawn", code: code) }
        return pid
    }

    /// The calling thread's scheduling policies this project sets (`sched_setscheduler`).
    package enum SchedulingPolicy: Equatable, Sendable, CustomStringConvertible {
        /// `SCHED_OTHER`: the default, time-shared, a wake-up may preempt the running task.
        case normal
        /// `SCHED_BATCH`: time-shared the same, but a wake-up never preempts the running task.
        case batch
        /// Any other (`SCHED_IDLE`, a real-time policy), by its number.
        case other(CInt)

        package var description: String {
            switch self {
            case .normal: Self.name(sb_SCHED_OTHER)
            case .batch: Self.name(sb_SCHED_BATCH)
            case .other(let number): Self.name(number)
            }
        }

        /// The C library's name for a policy number (`SCHED_IDLE`, `SCHED_FIFO`, ...), else `policy <number>`.
        private static func name(_ number: CInt) -> String {
            guard let name = unsafe sb_scheduling_policy_name(number) else { return "policy \(number)" }
            return unsafe String(cString: name)
        }
    }

    /// The calling thread's scheduling policy.
    package static func schedulingPolicy() throws(SystemCallError) -> SchedulingPolicy {
        let policy = sb_scheduling_policy()
        if policy < 0 { throw SystemCallError(call: "sched_getscheduler", code: errno) }
        switch policy {
        case sb_SCHED_OTHER: return .normal
        case sb_SCHED_BATCH: return .batch
        default: return .other(policy)
        }
    }

    /// Sets the calling thread's scheduling policy to `normal` or `batch` (at priority 0; the nice value stays).
    package static func setSchedulingPolicy(batch: Bool) throws(SystemCallError) {
        let code = sb_set_scheduling_policy(batch ? sb_SCHED_BATCH : sb_SCHED_OTHER)
        if code != 0 { throw SystemCallError(call: "sched_setscheduler", code: code) }
    }

    /// Reaps one exited child without blocking.
    package static func reap() -> (pid: pid_t, code: Int32, signaled: Bool)? {
        var code: CInt = 0
        var signaled: CInt = 0
        let pid = unsafe sb_reap(&code, &signaled)
        guard pid > 0 else { return nil }
        return (pid, code, signaled != 0)
    }

    /// Makes this process a child subreaper: orphans among its descendants become its children.
    package static func becomeChildSubreaper() throws(SystemCallError) {
        _ = try retryingOnInterrupt("prctl(PR_SET_CHILD_SUBREAPER)") { sb_set_child_subreaper() }
    }

    /// A child that has exited and waits to be reaped (left unreaped), or nil when there is none.
    package static func exitedChild() -> pid_t? {
        let pid = sb_peek_exited_child()
        return pid > 0 ? pid : nil
    }

    /// Waits until the child `pid` exits and reaps it (a blocking `waitpid`): only for a child just sent SIGKILL.
    package static func waitForExit(_ pid: pid_t) {
        while Glibc.waitpid(pid, nil, 0) == -1 && errno == EINTR {}
    }

    /// What a non-blocking wait for one child found.
    package enum ChildStatus: Equatable {
        /// It has not exited.
        case running
        /// It exited (and is reaped now) with `code`: 128 + the signal when `signaled`, having used `cpuSeconds` of
        /// user and system time in all (its rusage).
        case exited(code: Int32, signaled: Bool, cpuSeconds: Double)
        /// It is not ours to wait for (`ECHILD`): the kernel reaped it (SIGCHLD ignored) or another waiter did. It is
        /// gone and its exit status is unknown.
        case gone
    }

    /// Reaps `pid` if it has exited, without blocking (`wait4`).
    package static func reap(_ pid: pid_t) -> ChildStatus {
        var code: CInt = 0
        var signaled: CInt = 0
        var cpuSeconds = 0.0
        while true {
            let result = unsafe sb_reap_pid(pid, &code, &signaled, &cpuSeconds)
            if result == pid { return .exited(code: code, signaled: signaled != 0, cpuSeconds: cpuSeconds) }
            if result >= 0 { return .running }
            let failure = errno
            if failure == EINTR { continue }
            return failure == ECHILD ? .gone : .running
        }
    }

    /// Reaps the child `pidfd` refers to if it has exited, without blocking (`waitid(P_PIDFD)`).
    /// - Returns: nil where the kernel cannot wait on a pidfd (before Linux 5.4): wait by pid instead.
    package static func reap(processDescriptor pidfd: CInt) -> ChildStatus? {
        var code: CInt = 0
        var signaled: CInt = 0
        var cpuSeconds = 0.0
        while true {
            let result = unsafe sb_pidfd_reap(pidfd, &code, &signaled, &cpuSeconds)
            if result == 1 { return .exited(code: code, signaled: signaled != 0, cpuSeconds: cpuSeconds) }
            if result == 0 { return .running }
            let failure = errno
            if failure == EINTR { continue }
            return failure == ECHILD ? .gone : nil
        }
    }

    /// Sends `signal` to the process `pidfd` refers to, and to no other: once it has exited this fails with `ESRCH`,
    /// even when its pid was given to a new process.
    /// - Throws: `ESRCH` once it has exited; `ENOSYS` where the kernel has no `pidfd_send_signal`.
    package static func signal(processDescriptor pidfd: CInt, _ signal: CInt) throws(SystemCallError) {
        _ = try retryingOnInterrupt("pidfd_send_signal") { sb_pidfd_send_signal(pidfd, signal) }
    }

    /// A descriptor that becomes readable when `pid` exits, or nil where pidfds are not supported.
    package static func processDescriptor(_ pid: pid_t) -> CInt? {
        let fd = sb_pidfd_open(pid)
        return fd >= 0 ? fd : nil
    }

    package static func eventDescriptor() throws(SystemCallError) -> CInt {
        try retryingOnInterrupt("eventfd") { sb_eventfd() }
    }

    package static func signalEvent(_ fd: CInt) {
        _ = sb_eventfd_signal(fd)
    }

    package static func drainEvent(_ fd: CInt) {
        _ = sb_eventfd_drain(fd)
    }

    /// A timerfd on the monotonic clock, non-blocking and close-on-exec, not armed.
    package static func timerDescriptor() throws(SystemCallError) -> CInt {
        try retryingOnInterrupt("timerfd_create") { sb_timerfd() }
    }

    /// Arms `fd` (a timerfd) to expire once at `deadline` (monotonic nanoseconds), replacing its earlier setting.
    package static func armTimer(_ fd: CInt, at deadline: UInt64) throws(SystemCallError) {
        _ = try retryingOnInterrupt("timerfd_settime") { sb_timerfd_arm(fd, deadline) }
    }

    package static func kill(_ pid: pid_t, _ signal: CInt) {
        _ = Glibc.kill(pid, signal)
    }

    /// Ignores SIGINT, SIGQUIT and SIGHUP, which are the master's (a terminal sends them to the whole process
    /// group), and unblocks them in this thread; a worker spawned by the master starts with them blocked.
    package static func ignoreMasterSignals() {
        _ = sb_ignore_master_signals()
    }

    /// Raises the soft descriptor limit to the hard limit.
    /// - Returns: The soft and hard limits in effect afterwards (`UInt64.max` for unlimited).
    package static func raiseDescriptorLimit() -> (soft: UInt64, hard: UInt64) {
        var soft: UInt64 = 0
        var hard: UInt64 = 0
        _ = unsafe sb_raise_descriptor_limit(&soft, &hard)
        return (soft, hard)
    }

    package static func setParentDeathSignal(_ signal: CInt) throws(SystemCallError) {
        _ = try retryingOnInterrupt("prctl") { sb_set_parent_death_signal(signal) }
    }

    /// Gives the CPU to another runnable thread of this CPU, if any (`sched_yield`); returns at once otherwise.
    package static func yieldProcessor() {
        _ = sched_yield()
    }

    package static func monotonicNanoseconds() -> UInt64 {
        sb_monotonic_nanoseconds()
    }

    package static func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(SystemCallError) -> Int {
        try retryingOnInterrupt("write") { unsafe Glibc.write(fd, bytes.baseAddress, bytes.count) }
    }

    package static func read(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int {
        try retryingOnInterrupt("read") { unsafe Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Calls `body` with `strings` as a NULL-terminated C array (argv, envp), freed after.
    static func withCStrings<R>(
        _ strings: [String],
        _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R
    ) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = unsafe strings.map { unsafe strdup($0) }
        unsafe pointers.append(nil)
        defer { for unsafe pointer in unsafe pointers { unsafe free(pointer) } }
        return unsafe pointers.withUnsafeBufferPointer { unsafe body($0.baseAddress!) }
    }
}

extension Syscalls {
    /// This process's environment as `NAME=value` strings.
    package static func environment() -> [String] {
        var result: [String] = []
        var cursor = unsafe environ
        while let entry = unsafe cursor.pointee {
            result.append(unsafe String(cString: entry))
            unsafe cursor += 1
        }
        return result
    }

    /// Reads an environment variable.
    package static func environment(_ name: String) -> String? {
        guard let value = unsafe getenv(name) else { return nil }
        return unsafe String(cString: value)
    }

    /// The device and inode of what `fd` refers to, or nil when it is not open.
    package static func deviceAndInode(_ fd: CInt) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard unsafe fstat(fd, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// The device and inode of the file at `path` (symbolic links followed), or nil when there is none.
    package static func deviceAndInode(path: String) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard unsafe stat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// Whether `path` is a regular file this process may execute.
    package static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        guard unsafe stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return false }
        return unsafe access(path, X_OK) == 0
    }

    /// The current working directory, or nil when it cannot be read (removed, too long).
    package static func currentDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard unsafe getcwd(&buffer, buffer.count) != nil else { return nil }
        let length = buffer.firstIndex(of: 0) ?? buffer.count
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The main program's GNU build id (the linker's `--build-id` note), or empty when it has none.
    package static func mainBuildID() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 64)
        let length = unsafe sb_main_build_id(&bytes, CInt(bytes.count))
        return Array(bytes.prefix(Int(max(length, 0))))
    }

    /// `seconds` since the epoch as local time in `strftime`'s `format`.
    package static func formatLocalTime(_ seconds: time_t, _ format: String) -> String {
        var time = seconds
        var parts = unsafe tm()
        _ = unsafe localtime_r(&time, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = unsafe strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writes all of `text` to `fd`, ignoring failures (for the ready line and fatal messages).
    package static func writeAll(_ fd: CInt, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = unsafe bytes.withUnsafeMutableBytes { raw in
                unsafe Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
            }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
        bytes.removeAll()
    }
}

extension Syscalls {
    /// Reads from a non-blocking socket into `buffer[offset...]`.
    /// - Returns: The bytes read (0 at the end of the stream), or `.wouldBlock`.
    package static func read(_ fd: CInt, into buffer: inout [UInt8], at offset: Int) throws(SystemCallError)
        -> NonBlocking<Int>
    {
        precondition(offset >= 0 && offset < buffer.count)
        while true {
            let count = unsafe buffer.withUnsafeMutableBytes { raw in
                unsafe Glibc.read(fd, raw.baseAddress! + offset, raw.count - offset)
            }
            if count >= 0 { return .done(count) }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            default: throw SystemCallError(call: "read", code: code)
            }
        }
    }

    /// Writes `bytes[offset..<end]` to a non-blocking socket, without SIGPIPE.
    /// - Returns: The bytes written, or `.wouldBlock`.
    package static func write(_ fd: CInt, _ bytes: [UInt8], from offset: Int, to end: Int) throws(SystemCallError)
        -> NonBlocking<Int>
    {
        precondition(offset >= 0 && offset < end && end <= bytes.count)
        while true {
            let count = unsafe bytes.withUnsafeBytes { raw in
                unsafe Glibc.send(fd, raw.baseAddress! + offset, end - offset, CInt(MSG_NOSIGNAL))
            }
            if count >= 0 { return .done(count) }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            default: throw SystemCallError(call: "send", code: code)
            }
        }
    }

    /// Sets `TCP_DEFER_ACCEPT` on a listener: the kernel completes a connection's accept only once its first bytes
    /// have arrived, or about `seconds` after the handshake if none do (0 turns it off).
    package static func setDeferAccept(_ fd: CInt, seconds: Int) throws(SystemCallError) {
        var value = CInt(clamping: seconds)
        guard unsafe setsockopt(fd, CInt(IPPROTO_TCP), TCP_DEFER_ACCEPT, &value, socklen_t(MemoryLayout<CInt>.size))
            == 0
        else { throw SystemCallError(call: "setsockopt(TCP_DEFER_ACCEPT)", code: errno) }
    }

    /// The listener's `TCP_DEFER_ACCEPT` as the kernel holds it (whole seconds, rounded up to its retransmission
    /// steps); nil when it cannot be read.
    package static func deferAccept(_ fd: CInt) -> Int? {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        guard unsafe getsockopt(fd, CInt(IPPROTO_TCP), TCP_DEFER_ACCEPT, &value, &length) == 0 else { return nil }
        return Int(value)
    }

    /// Turns Nagle's algorithm off, so a response written in one call leaves at once.
    /// - Returns: Whether it did: only a TCP socket takes the option, so `true` also tells that `fd` is one.
    @discardableResult
    package static func setNoDelay(_ fd: CInt) -> Bool {
        var on: CInt = 1
        return unsafe setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<CInt>.size)) == 0
    }

    /// Whether Nagle's algorithm is off on `fd` (`TCP_NODELAY`); false when the option cannot be read (not TCP).
    /// On a listener it tells whether the connections accepted there come with it: Linux copies it to each of them.
    package static func noDelay(_ fd: CInt) -> Bool {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        return unsafe getsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &value, &length) == 0 && value != 0
    }
}
