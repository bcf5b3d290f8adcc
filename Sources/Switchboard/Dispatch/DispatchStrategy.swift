/// Everything one dispatch mode decides, on the master's side and on the worker's, in one place (as Node keeps
/// `round_robin_handle.js` and `shared_handle.js`): how the master's socket is bound, whether the master accepts and
/// passes connections (and in what order), what a worker inherits, and what a worker listens on by itself.
///
/// The master and the workers ask the strategy of their ``DispatchMode`` instead of checking the mode.
package protocol DispatchStrategy: Sendable {
    /// The order in which the master hands connections to workers; nil when workers accept by themselves.
    var scheduling: Scheduler.Policy? { get }
    /// Whether the master's socket listens (it accepts there, or workers share it) or only reserves the port.
    var masterListens: Bool { get }
    /// Whether the master's socket joins a `SO_REUSEPORT` group.
    var masterReusesPort: Bool { get }
    /// Whether a listener passed by systemd (socket activation or the fd store) can serve in this mode.
    var usesInheritedListener: Bool { get }
    /// Whether every worker gets the master's listener at ``WorkerRuntime/sharedListenerDescriptor``.
    var sharesListener: Bool { get }
    /// The listener a worker accepts on by itself, or nil when the master passes it connections. The worker owns it.
    /// A listener the worker binds itself gets `TCP_NODELAY`, which its connections inherit, and `TCP_DEFER_ACCEPT`
    /// of `deferAcceptSeconds` when that is above 0 (``Configuration/deferAcceptSeconds``).
    /// - Throws: ``SwitchboardError`` when it cannot be bound.
    func workerListener(
        host: String, port: Int, backlog: Int, deferAcceptSeconds: Int
    ) throws(SwitchboardError) -> CInt?
}

extension DispatchStrategy {
    /// Whether the master accepts connections and passes them to workers.
    package var passesDescriptors: Bool { scheduling != nil }
}

/// `round-robin` and `least-connections`: the master accepts on its listener and passes each connection over the
/// worker's channel, in rotation or to the least loaded worker.
package struct PassingStrategy: DispatchStrategy {
    package let scheduling: Scheduler.Policy?
    package var masterListens: Bool { true }
    package var masterReusesPort: Bool { false }
    package var usesInheritedListener: Bool { true }
    package var sharesListener: Bool { false }

    package init(_ policy: Scheduler.Policy) {
        scheduling = policy
    }

    package func workerListener(
        host: String, port: Int, backlog: Int, deferAcceptSeconds: Int
    ) throws(SwitchboardError) -> CInt? {
        nil
    }
}

/// `reuseport`: the master only reserves the port (bound in the `SO_REUSEPORT` group, never listening, so the kernel
/// never hands it a connection); each worker binds a listener of its own into the group and the kernel spreads
/// connections by hash.
package struct ReusePortStrategy: DispatchStrategy {
    package var scheduling: Scheduler.Policy? { nil }
    package var masterListens: Bool { false }
    package var masterReusesPort: Bool { true }
    package var usesInheritedListener: Bool { false }
    package var sharesListener: Bool { false }

    package func workerListener(
        host: String, port: Int, backlog: Int, deferAcceptSeconds: Int
    ) throws(SwitchboardError) -> CInt? {
        let fd: CInt
        do {
            fd = try Syscalls.listenTCP(host: host, port: port, backlog: backlog, reusePort: true).fd
        } catch {
            throw SwitchboardError(.system, "cannot listen on port \(port) with SO_REUSEPORT: \(error)")
        }
        Syscalls.setNoDelay(fd)
        guard deferAcceptSeconds > 0 else { return fd }
        do {
            try Syscalls.setDeferAccept(fd, seconds: deferAcceptSeconds)
        } catch {
            Syscalls.close(fd)
            throw SwitchboardError(.system, "cannot defer accepts on port \(port): \(error)")
        }
        return fd
    }
}

/// `shared` (Node's `SCHED_NONE`): the master binds one listener and every worker inherits it and accepts on it.
package struct SharedListenerStrategy: DispatchStrategy {
    package var scheduling: Scheduler.Policy? { nil }
    package var masterListens: Bool { true }
    package var masterReusesPort: Bool { false }
    package var usesInheritedListener: Bool { true }
    package var sharesListener: Bool { true }

    package func workerListener(
        host: String, port: Int, backlog: Int, deferAcceptSeconds: Int
    ) throws(SwitchboardError) -> CInt? {
        WorkerRuntime.sharedListenerDescriptor
    }
}

extension DispatchMode {
    /// What this mode does on each side.
    package var strategy: any DispatchStrategy {
        switch kind {
        case .roundRobin: PassingStrategy(.roundRobin)
        case .leastConnections: PassingStrategy(.leastConnections)
        case .reusePort: ReusePortStrategy()
        case .shared: SharedListenerStrategy()
        }
    }
}
