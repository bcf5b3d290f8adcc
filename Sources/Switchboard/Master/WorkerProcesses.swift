import CSwitchboardLinux

#if canImport(Glibc)
import Glibc
#endif

/// The worker processes: starts them, signals them and reaps them, and owns what the master knows of each process
/// beyond its lane in the dispatcher and its lifecycle in the ``SupervisorMachine`` (both under the same slot number).
///
/// Every pidfd is opened by ``spawn(slot:id:port:sharedListener:sharingCPUs:listenerGivesNoDelay:attach:)`` and closed
/// in one place, when its worker is reaped (or in deinit). It logs nothing and decides nothing: what a reap found goes
/// back to the master as a value, and the master tells the dispatcher, the metrics and the machine.
final class WorkerProcesses {
    /// What the master knows of the process in one worker slot (0..<n).
    fileprivate struct Slot: Codable {
        /// A pidfd that becomes readable when the process exits (nil where the kernel has none).
        var processDescriptor: CInt?
        /// What the worker last reported as handled (requests answered by the built-in engine).
        var handled: UInt64 = 0
        /// The build the worker said hello with (``Cluster/build`` of the program it runs); nil before its hello.
        var build: String?
        /// What the master found wrong with the worker (refused, could not be started), for the line that ends a
        /// reload.
        var problem: String?
    }

    /// What reaping a worker found.
    struct Reaped {
        /// How it ended.
        let exit: SupervisorMachine.Exit
        /// The user and system time it used in all, when its exit status is known.
        let cpuSeconds: Double?
        /// What it last reported as handled (its last figures join its slot's totals in `/metrics`).
        let handled: UInt64
    }

    /// An exited child, reaped by ``reapExitedChild(workerSlot:)``.
    enum Child {
        /// The worker in `slot` (`nil`: it has not exited after all).
        case worker(slot: Int, Reaped?)
        /// A child that is not a worker, with its exit code (or signal, when `signaled`).
        case orphan(pid: pid_t, code: Int32, signaled: Bool)
        /// A child of the master's own that another part of it waits for (the upgrade's pre-check): not reaped here.
        case other(pid: pid_t)
    }

    private let configuration: Configuration
    /// The master's environment without the variables that are the master's alone (``masterOnlyVariables``).
    private let baseEnvironment: [String]
    /// The user workers run as (``Configuration/user``), resolved at start.
    private let identity: WorkerIdentity?
    /// The CPU of each slot, by slot number mod its count (``Configuration/cpuAffinity``); empty: not pinned.
    private let cpus: [Int]
    /// The master's epoll set, where each pidfd is watched under `token(slot, id)`.
    private let epoll: CInt
    private let token: (_ slot: Int, _ id: Int) -> UInt64
    private var slots: [Slot] = []

    init(
        configuration: Configuration, baseEnvironment: [String], identity: WorkerIdentity?, cpus: [Int], epoll: CInt,
        token: @escaping (_ slot: Int, _ id: Int) -> UInt64
    ) {
        self.configuration = configuration
        self.baseEnvironment = baseEnvironment
        self.identity = identity
        self.cpus = cpus
        self.epoll = epoll
        self.token = token
    }

    deinit {
        for index in slots.indices { closeProcessDescriptor(slot: index) }
    }

    // MARK: the hand-over

    /// Each slot's pidfd and figures, for a master's upgrade (``Handover``).
    struct Snapshot: Codable {
        fileprivate var slots: [Slot]

        var descriptors: [CInt] { slots.compactMap(\.processDescriptor) }
    }

    var snapshot: Snapshot { Snapshot(slots: slots) }

    /// Takes over the slots another image of the master kept: each pidfd is watched again with `token(slot, id)`.
    func restore(_ snapshot: Snapshot, ids: (Int) -> Int) {
        slots = snapshot.slots
        for index in slots.indices {
            guard let pidfd = slots[index].processDescriptor else { continue }
            try? Syscalls.epollAdd(epoll, pidfd, events: sb_EPOLLIN, token: token(index, ids(index)))
        }
    }

    // MARK: what the master asks

    /// Every slot that was ever started.
    var indices: Range<Int> { slots.indices }

    /// What the worker in `slot` last reported as handled.
    func handled(_ index: Int) -> UInt64 { slots[index].handled }

    /// The build the worker in `slot` said hello with; nil before its hello.
    func build(_ index: Int) -> String? { slots[index].build }

    /// What was found wrong with the worker in `slot`, if anything (nil for a slot never started).
    func problem(_ index: Int) -> String? { slots.indices.contains(index) ? slots[index].problem : nil }

    /// The worker in `slot` said hello with `build`.
    func said(hello build: String, slot index: Int) { slots[index].build = build }

    /// The worker in `slot` reported `handled` requests answered in its heartbeat.
    func reported(handled: UInt64, slot index: Int) { slots[index].handled = handled }

    /// The master found something wrong with the worker in `slot` (for the line that ends a reload).
    func found(problem: String, slot index: Int) { slots[index].problem = problem }

    // MARK: starting

    /// Starts a worker in `slot`: a socketpair, then `posix_spawn` of the worker executable with its end at fd 3.
    /// The master keeps a copy of the worker's end (close-on-exec, so no other worker inherits it) until the worker
    /// is reaped: connections sent but not received stay in that queue, where the master can take them back.
    /// - Parameters:
    ///   - id: The worker's id (``SupervisorMachine/Worker/id``).
    ///   - port: The port the master listens on.
    ///   - sharedListener: The listener each worker inherits as fd 4, in the modes that share it.
    ///   - sharingCPUs: Whether the workers outnumber the CPUs they may run on
    ///     (``WorkerRuntime/yieldBeforeWaitingVariable``).
    ///   - listenerGivesNoDelay: Whether the connections the master accepts come with `TCP_NODELAY`
    ///     (``WorkerRuntime/passedConnectionsHaveNoDelay``).
    ///   - normalScheduling: Whether the worker starts with the normal scheduling policy instead of the master's
    ///     (``MasterSchedulingState/batched``).
    ///   - attach: Hands the master's end, the kept copy of the worker's end and the pid on (to the dispatcher).
    /// - Returns: The worker's pid.
    /// - Throws: ``SwitchboardError`` when the channel, the process or the attach fails (the channel is closed, and
    ///   a process that cannot be attached is killed and reaped).
    func spawn(
        slot index: Int, id: Int, port: Int, sharedListener: CInt?, sharingCPUs: Bool, listenerGivesNoDelay: Bool,
        normalScheduling: Bool,
        attach: (_ channel: DescriptorChannel, _ kept: DescriptorChannel, _ pid: pid_t) throws(SystemCallError) -> Void
    ) throws(SwitchboardError) -> pid_t {
        while slots.count <= index { slots.append(Slot()) }
        let masterEnd: DescriptorChannel
        let workerEnd: DescriptorChannel
        do {
            (masterEnd, workerEnd) = try DescriptorChannel.pair()
        } catch {
            throw SwitchboardError(.system, "cannot create a worker channel: \(error)")
        }
        var environment = baseEnvironment
        environment.append("SWITCHBOARD_WORKER_ID=\(id)")
        environment.append("SWITCHBOARD_WORKER_SLOT=\(index)")
        environment.append("SWITCHBOARD_MASTER_PID=\(getpid())")
        environment.append("SWITCHBOARD_MODE=\(configuration.mode.name)")
        environment.append("SWITCHBOARD_HOST=\(configuration.host)")
        environment.append("SWITCHBOARD_PORT=\(port)")
        environment.append("SWITCHBOARD_BACKLOG=\(configuration.backlog)")
        environment.append("SWITCHBOARD_DEFER_ACCEPT=\(configuration.deferAcceptSeconds ?? 0)")
        environment.append("\(WorkerRuntime.listenerNoDelayVariable)=\(listenerGivesNoDelay ? 1 : 0)")
        environment.append("SWITCHBOARD_HEARTBEAT_MS=\(configuration.heartbeatInterval.milliseconds)")
        environment.append("SWITCHBOARD_DRAIN_MS=\(configuration.drainTimeout.milliseconds)")
        environment.append(contentsOf: configuration.limits.environment)
        environment.append(contentsOf: configuration.workerEnvironment)
        // Unless the master's environment or `Configuration.workerEnvironment` already sets it.
        let yieldVariable = WorkerRuntime.yieldBeforeWaitingVariable
        if !environment.contains(where: { $0.hasPrefix(yieldVariable + "=") }) {
            environment.append("\(yieldVariable)=\(sharingCPUs ? 1 : 0)")
        }
        let pid: pid_t
        do {
            pid = try Syscalls.spawn(
                path: configuration.workerExecutable,
                arguments: ["switchboard-worker"] + configuration.workerArguments,
                environment: environment,
                channel: workerEnd.fd,
                extra: sharedListener,
                identity: identity,
                cpu: cpus.isEmpty ? nil : cpus[index % cpus.count],
                normalScheduling: normalScheduling)
        } catch {
            masterEnd.close()
            workerEnd.close()
            slots[index].problem = "could not be started: \(error.reason)"
            throw SwitchboardError(
                .system, "cannot start worker '\(configuration.workerExecutable)': \(error.reason)")
        }
        do {
            try attach(masterEnd, workerEnd, pid)
        } catch {
            masterEnd.close()
            workerEnd.close()
            Syscalls.kill(pid, SIGKILL)
            Syscalls.waitForExit(pid)  // no slot knows this pid: reaped here, or it would stay a zombie
            throw SwitchboardError(.system, "cannot watch a worker channel: \(error)")
        }
        if let pidfd = Syscalls.processDescriptor(pid) {
            slots[index].processDescriptor = pidfd
            try? Syscalls.epollAdd(epoll, pidfd, events: sb_EPOLLIN, token: token(index, id))
        }
        slots[index].handled = 0
        slots[index].build = nil
        slots[index].problem = nil
        return pid
    }

    // MARK: signalling

    /// Sends `signal` to the worker `pid` in `slot` through its pidfd, which names that process and no other: once
    /// the worker has exited (reaped or not, by whoever) the signal goes nowhere, never to a process that reused its
    /// pid. Without a pidfd (a kernel without them) by pid, which is safe while the master has not reaped it: SIGCHLD
    /// is never left ignored, so nothing else reaps the master's children.
    func signal(_ signal: CInt, slot index: Int, pid: pid_t) {
        guard pid > 0 else { return }  // kill(0) would reach the group
        if let pidfd = slots[index].processDescriptor {
            do {
                try Syscalls.signal(processDescriptor: pidfd, signal)
                return
            } catch {
                guard error.code == ENOSYS else { return }  // ESRCH: it has exited already
            }
        }
        Syscalls.kill(pid, signal)
    }

    /// SIGKILLs the worker `pid`'s own children, before the master kills the worker itself (a hung one): once the
    /// worker is gone they would be orphans that nothing ends. The one that matters is the Swift runtime's
    /// `swift-backtrace`, which a crashing worker starts and waits for: when its symbolication outlasts
    /// `--heartbeat-timeout` the master kills the worker, and a backtracer whose target died waits forever.
    /// Each child is signalled through a pidfd opened while it is still listed as the worker's child (the worker is
    /// not reaped yet, so it cannot have been re-parented, and the pidfd names it and no later process).
    func killChildren(of pid: pid_t) {
        guard pid > 0 else { return }
        for child in Syscalls.childProcesses(of: pid) {
            guard let pidfd = Syscalls.processDescriptor(child) else { continue }
            defer { Syscalls.close(pidfd) }
            guard Syscalls.childProcesses(of: pid).contains(child) else { continue }  // exited and reaped meanwhile
            try? Syscalls.signal(processDescriptor: pidfd, SIGKILL)
        }
    }

    // MARK: reaping

    /// Reaps the worker `pid` in `slot` if it has exited, and closes its pidfd.
    ///
    /// Through its pidfd where there is one (`waitid(P_PIDFD)`), by pid elsewhere. A worker that is not ours to wait
    /// for any more (`ECHILD`: the kernel reaped it because SIGCHLD was ignored, or another waiter did) is gone just
    /// the same, with its exit status unknown: its pidfd must leave the epoll set, which would report it readable
    /// forever.
    /// - Returns: How it ended, or nil while it runs.
    func reap(slot index: Int, pid: pid_t) -> Reaped? {
        let status =
            slots[index].processDescriptor.flatMap { Syscalls.reap(processDescriptor: $0) } ?? Syscalls.reap(pid)
        let ended: SupervisorMachine.Exit
        var cpuSeconds: Double?
        switch status {
        case .running: return nil
        case .exited(let code, let signaled, let cpu):
            ended = signaled ? .signal(code - 128) : .code(code)
            cpuSeconds = cpu
        case .gone: ended = .unknown
        }
        if let pidfd = slots[index].processDescriptor { Syscalls.epollRemove(epoll, pidfd) }
        closeProcessDescriptor(slot: index)
        return Reaped(exit: ended, cpuSeconds: cpuSeconds, handled: slots[index].handled)
    }

    /// Reaps one exited child (``Configuration/reapsOrphans``): an orphan adopted as PID 1 or as a subreaper, a
    /// worker's own child, or a worker. Each is looked at before it is reaped (`WNOWAIT`), so a worker is never reaped
    /// here by mistake: `workerSlot` names the slot of a worker's pid, and that worker is reaped the workers' way.
    /// - Returns: The child reaped, or nil when none has exited.
    func reapExitedChild(workerSlot: (pid_t) -> Int?, isOther: (pid_t) -> Bool = { _ in false }) -> Child? {
        guard let pid = Syscalls.exitedChild() else { return nil }
        if isOther(pid) { return .other(pid: pid) }
        if let index = workerSlot(pid) {
            return .worker(slot: index, reap(slot: index, pid: pid))
        }
        guard case .exited(let code, let signaled, _) = Syscalls.reap(pid) else { return nil }
        return .orphan(pid: pid, code: code, signaled: signaled)
    }

    /// The one place a pidfd is closed.
    private func closeProcessDescriptor(slot index: Int) {
        guard let pidfd = slots[index].processDescriptor else { return }
        Syscalls.close(pidfd)
        slots[index].processDescriptor = nil
    }

    // MARK: resolving at start

    /// The variables a master sets or reads for itself, left out of every worker's environment.
    static let masterOnlyVariables = [
        "SWITCHBOARD_WORKER_ID", "SWITCHBOARD_MASTER_PID", "SWITCHBOARD_WORKER_SLOT", "SWITCHBOARD_MODE",
        "SWITCHBOARD_HOST", "SWITCHBOARD_PORT", "SWITCHBOARD_WORKER_THREADS", "SWITCHBOARD_BACKLOG",
        "SWITCHBOARD_DEFER_ACCEPT", "SWITCHBOARD_HEARTBEAT_MS",
        "SWITCHBOARD_DRAIN_MS", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ] + ConnectionLimits.environmentNames + Handover.variables

    /// This process's environment without ``masterOnlyVariables``: what every worker starts from.
    static func baseEnvironment() -> [String] {
        Syscalls.environment().filter { entry in
            !masterOnlyVariables.contains { entry.hasPrefix($0 + "=") }
        }
    }

    /// The uid, gid and groups of ``Configuration/user`` (and ``Configuration/group``).
    /// - Throws: ``SwitchboardError`` (usage) for an unknown user or group, or when this master may not switch.
    static func resolveIdentity(_ configuration: Configuration) throws(SwitchboardError) -> WorkerIdentity? {
        guard configuration.user != nil || configuration.group != nil else { return nil }
        var identity: WorkerIdentity
        if let user = configuration.user {
            guard let found = Syscalls.lookUpUser(user) else {
                throw SwitchboardError(.usage, "--user '\(user)' is not a user on this machine")
            }
            identity = found
        } else {
            identity = WorkerIdentity(uid: Syscalls.effectiveUID, gid: getegid(), groups: [])
        }
        if let group = configuration.group {
            guard let gid = Syscalls.lookUpGroup(group) else {
                throw SwitchboardError(.usage, "--group '\(group)' is not a group on this machine")
            }
            identity.gid = gid
            if !identity.groups.contains(gid) { identity.groups.insert(gid, at: 0) }
        }
        if Syscalls.effectiveUID != 0 && (identity.uid != Syscalls.effectiveUID || identity.gid != getegid()) {
            throw SwitchboardError(
                .permissionDenied, "--user/--group need a master started as root (it binds, then workers switch)")
        }
        return identity
    }

    /// The CPU for each slot from ``Configuration/cpuAffinity``.
    /// - Throws: ``SwitchboardError`` (usage) for a CPU this process may not use.
    static func resolveCPUs(_ configuration: Configuration) throws(SwitchboardError) -> [Int] {
        guard let text = configuration.cpuAffinity else { return [] }
        let allowed = Syscalls.allowedCPUs()
        guard text != "auto" else { return allowed }
        let wanted = Configuration.cpuList(text) ?? []
        if let outside = wanted.first(where: { !allowed.contains($0) }) {
            throw SwitchboardError(
                .usage,
                "--cpu-affinity \(text): CPU \(outside) is not one this process may use (\(allowed.map(String.init).joined(separator: ",")))")
        }
        return wanted
    }
}
