#if canImport(Glibc)
import Glibc
#endif

/// Everything the master needs to run: where to listen, how many workers, and the dispatch and timing policies.
public struct Configuration: Sendable {
    /// Address to listen on; empty means every interface (IPv6 dual-stack where available, IPv4 otherwise).
    public var host: String = ""
    /// TCP port; 0 picks a free one.
    public var port: Int = 3000
    /// Number of worker processes.
    public var workers: Int = Configuration.availableProcessors
    /// How ``workers`` was chosen, when it was chosen from the machine (`--workers auto`): the start line says it
    /// ("3 workers: CPU quota 2.5 of 64 CPUs").
    package var workerCountNote: String?
    /// The CPUs found at start (where `--test-hooks` may point the reader at a fixture tree); nil: read them then.
    package var cpuBudget: CPUBudget?
    /// Whether the master makes itself a child subreaper and reaps every child that is not a worker: what a process
    /// manager needs as PID 1 of a container (every orphan there becomes its child, and no kernel default reaps it)
    /// and under any parent (a worker's own children outlive it). The `switchboard` command turns it on; a program
    /// that embeds the master and waits for children of its own leaves it off (the default), or they would be reaped
    /// before it could.
    public var reapsOrphans = false
    /// `listen()` backlog: where connections wait while every worker is at its bound.
    public var backlog: Int = 511
    /// Seconds the kernel holds a new connection until its first bytes arrive (`TCP_DEFER_ACCEPT`, nginx's `deferred`,
    /// HAProxy's `defer-accept`); 0: off. With it on, the process that accepts (the master, or each worker in reuseport
    /// mode) sees a connection only once its request is there, so the worker reads it at once instead of waiting for it
    /// in epoll: fewer wake-ups per connection. A client that sends nothing is accepted only after about this long. For
    /// protocols where the client speaks first (HTTP, TLS); a protocol where the server speaks first would wait that
    /// long on every connection.
    ///
    /// `nil` (the default) leaves the listener as it is: off for one the master binds, and for one systemd passed, what
    /// its socket unit set (`DeferAcceptSec=`) or what an earlier run set on a socket that outlived it (the master
    /// logs it); 0 turns it off on any listener.
    public var deferAcceptSeconds: Int?
    /// Most connections that may wait in one worker's queue: sent by the master, not yet received by the worker.
    /// 1 reproduces Node's `SCHED_RR` gate (one connection at a time per worker). A worker's queue holds less when its
    /// share of the master's descriptor limit (the descriptors the kernel lets the user have in flight) is smaller.
    public var maxQueued: Int = 16
    /// How long a connection may wait in a worker's queue before the master takes it back and serves it elsewhere
    /// (a worker that stopped receiving: stuck, stopped, out of descriptors). `.zero` turns it off: queued
    /// connections then wait for the worker, or for its replacement after ``heartbeatTimeout``.
    public var stealAfter: Duration = .milliseconds(100)
    /// How connections reach workers.
    public var mode: DispatchMode = .roundRobin
    /// How long workers may take to finish in-flight requests on a graceful stop before they are killed.
    public var drainTimeout: Duration = .seconds(30)
    /// The program a worker runs, started anew from this path at every spawn (start, restart, scale, reload).
    /// Defaults to the path this program was started by (`argv[0]`, searched in `PATH` and made absolute when the
    /// process started; symbolic links are kept), so a reload after a deploy runs the build now on disk; to
    /// `/proc/self/exe` (this process's own image) only when that path is unknown.
    public var workerExecutable: String = LaunchPath.current
    /// The arguments a worker gets (without `argv[0]`). Defaults to this process's own.
    public var workerArguments: [String] = Array(CommandLine.arguments.dropFirst())
    /// Extra environment entries (`NAME=value`) for workers.
    public var workerEnvironment: [String] = []
    /// Event loop threads per worker. Each worker already covers one CPU; a worker whose event loop group sizes itself
    /// to the machine (SwiftNIO's singleton group, and with it Hummingbird's and Vapor's defaults, have one thread per
    /// core) would run workers × cores threads. Workers get it as `SWITCHBOARD_WORKER_THREADS`
    /// (``WorkerRuntime/threads``) and as `NIO_SINGLETON_GROUP_LOOP_COUNT` and `NIO_SINGLETON_BLOCKING_POOL_THREAD_COUNT`,
    /// which size SwiftNIO's singletons, unless those are set in the master's environment already.
    public var workerThreads = 1
    /// Recycle a worker after it has served this many requests (as its engine reports them); 0: never. Staggered per
    /// worker (by slot, plus a random part) so they never recycle together.
    public var maxRequests: UInt64 = 0
    /// Recycle a worker whose unique memory (USS) stays above this many bytes in two samples 2 s apart; 0: never.
    public var maxWorkerMemory: UInt64 = 0
    /// Recycle a worker after it has served this long; zero: never.
    public var maxLifetime: Duration = .zero
    /// How often workers send a heartbeat from their event loop.
    public var heartbeatInterval: Duration = .seconds(1)
    /// A worker silent for this long is considered hung: it is killed and replaced.
    ///
    /// Under systemd's watchdog, this, ``readyTimeout`` and the restart policy's longest delay make the recovery
    /// bound: the master stops sending `WATCHDOG=1` only when no worker has been able to serve for longer than
    /// heartbeat timeout + one health check + longest restart delay + ready timeout + 1 s.
    public var heartbeatTimeout: Duration = .seconds(10)
    /// How long a new worker may take to report ready before it is killed (and, in a reload, the reload aborted).
    public var readyTimeout: Duration = .seconds(30)
    /// Restart backoff and crash-loop budget.
    public var restart: RestartPolicy.Settings = .init()
    /// What each worker allows a client connection (timeouts and the per-worker connection cap).
    public var limits: ConnectionLimits = .init()
    /// Where the master answers load balancers (`host:port`, `[v6]:port` or `:port` for every interface): HTTP
    /// `GET /livez` and `GET /readyz`, and HAProxy's agent-check. nil: off.
    public var health: String?
    /// Where the master serves `GET /metrics` in the Prometheus text format (`host:port`). nil: off.
    public var metrics: String?
    /// A second address for HAProxy's agent-check alone, answered on connect without waiting for a line. nil: off.
    public var agent: String?
    /// The user workers run as (Node's `setupPrimary({uid})`, PM2's `--uid`, Gunicorn's `--user`): the master binds
    /// (a port below 1024 as root), workers get this user's uid, its primary group (or ``group``) and its
    /// supplementary groups before they run anything. nil: the master's own user.
    public var user: String?
    /// The group workers run as, instead of ``user``'s primary group. nil: that one.
    public var group: String?
    /// Pins worker *i* to one CPU: `auto` takes CPU *i* mod *n* of the CPUs this process may use (so cgroup and
    /// `CPUAffinity=` limits hold; nginx's `worker_cpu_affinity auto`), a list such as `0,2-3` takes its *i* mod *n*th
    /// entry. nil: not pinned.
    public var cpuAffinity: String?
    /// Where the master listens for `switchboard status`, `reload`, `scale` and `stop` (a UNIX socket, mode 0600; only
    /// the master's own uid and root may use it). nil: off. Under systemd: `RuntimeDirectory=` and
    /// `/run/switchboard/control.sock`.
    public var controlSocket: String?
    /// How the master's thread is scheduled: ``MasterScheduling/batch`` (the default) runs it under `SCHED_BATCH`, so
    /// that its wake-ups wait for the running task's turn instead of preempting a worker or the client, and accepts
    /// what came meanwhile in one burst; workers keep the normal policy. ``MasterScheduling/inherit`` keeps the policy
    /// the master was started with.
    public var masterScheduling: MasterScheduling = .batch
    /// How long a stop is announced to load balancers (`/readyz` 503, agent `drain`) while everything keeps serving,
    /// before the drain begins: Kubernetes' preStop pattern, built in. `.zero`: drain at once.
    public var shutdownDelay: Duration = .zero

    /// Creates the default configuration.
    public init() {}

    /// The host as it shows in an address: `[::]` for every interface, brackets around an IPv6 address.
    public var displayHost: String {
        if host.isEmpty { return "[::]" }
        return host.contains(":") ? "[\(host)]" : host
    }

    /// The most workers that may run: the bound of ``workers``, and of scaling while running.
    package static let maxWorkers = 1024

    /// The number of online processors.
    public static var onlineProcessors: Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// The processors this process may really use, and the default worker count: the CPUs in its affinity mask,
    /// capped by its cgroup's CPU quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`; the smallest along its cgroup
    /// path) rounded up, at least 1. In a container limited to 2 CPUs on a 64-core host this is 2, not 64.
    public static var availableProcessors: Int {
        CPUBudget.current().workers
    }

    /// What tells each worker its thread count (``workerThreads``), given the master's own environment.
    package func threadEnvironment(inherited: [String]) -> [String] {
        var entries = ["SWITCHBOARD_WORKER_THREADS=\(workerThreads)"]
        for name in ["NIO_SINGLETON_GROUP_LOOP_COUNT", "NIO_SINGLETON_BLOCKING_POOL_THREAD_COUNT"]
        where !inherited.contains(where: { $0.hasPrefix(name + "=") }) {
            entries.append("\(name)=\(workerThreads)")
        }
        return entries
    }

    /// Checks every value.
    /// - Throws: ``SwitchboardError`` with code `.usage` and a message that names the fix.
    public func validate() throws(SwitchboardError) {
        guard (0...65535).contains(port) else {
            throw SwitchboardError(.usage, "port \(port) is out of range: pass --port between 0 and 65535 (0 picks a free port)")
        }
        guard (1...256).contains(workerThreads) else {
            throw SwitchboardError(.usage, "--worker-threads \(workerThreads) is out of range: pass 1 to 256")
        }
        guard workers >= 1 else {
            throw SwitchboardError(.usage, "--workers must be at least 1 (got \(workers)): pass --workers 1 or more")
        }
        guard workers <= Self.maxWorkers else {
            throw SwitchboardError(.usage, "--workers \(workers) is too many: pass at most \(Self.maxWorkers)")
        }
        guard backlog >= 1 else {
            throw SwitchboardError(.usage, "--backlog must be at least 1 (got \(backlog))")
        }
        if let deferAcceptSeconds, !(0...600).contains(deferAcceptSeconds) {
            throw SwitchboardError(
                .usage, "--defer-accept must be between 0 and 600 seconds (got \(deferAcceptSeconds))")
        }
        guard (1...1024).contains(maxQueued) else {
            throw SwitchboardError(
                .usage, "--max-queued must be between 1 and 1024 (got \(maxQueued))")
        }
        guard heartbeatInterval >= .milliseconds(10) else {
            throw SwitchboardError(.usage, "--heartbeat-interval must be at least 0.01 seconds")
        }
        guard heartbeatTimeout > heartbeatInterval else {
            throw SwitchboardError(.usage, "--heartbeat-timeout must be longer than --heartbeat-interval")
        }
        guard readyTimeout > .zero else {
            throw SwitchboardError(.usage, "--ready-timeout must be more than 0 seconds")
        }
        guard restart.baseDelay >= .zero, restart.maxDelay >= restart.baseDelay else {
            throw SwitchboardError(.usage, "--restart-delay must be 0 or more and at most --restart-delay-max")
        }
        if let limit = restart.crashLoopLimit, limit < 1 {
            throw SwitchboardError(.usage, "--crash-loop-limit must be at least 1, or 0 to retry forever")
        }
        guard drainTimeout >= .zero else {
            throw SwitchboardError(.usage, "--drain-timeout cannot be negative")
        }
        guard shutdownDelay >= .zero else {
            throw SwitchboardError(.usage, "--shutdown-delay cannot be negative")
        }
        for (flag, value) in [("--health", health), ("--agent", agent), ("--metrics", metrics)] {
            if let value, Self.address(value) == nil {
                throw SwitchboardError(
                    .usage, "\(flag) '\(value)' is not host:port: pass e.g. 127.0.0.1:8081, [::1]:8081 or :8081")
            }
        }
        if let cpuAffinity, cpuAffinity != "auto", Self.cpuList(cpuAffinity) == nil {
            throw SwitchboardError(
                .usage, "--cpu-affinity '\(cpuAffinity)' is not auto or a CPU list: pass e.g. auto, 0,1 or 0-3")
        }
        try limits.validate()
    }

    /// Parses a CPU list such as `0,2-3` (ascending or not, no duplicates needed).
    /// - Returns: The CPUs in the order given, ranges expanded; nil when it does not parse.
    public static func cpuList(_ text: String) -> [Int]? {
        var cpus: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1]),
                low >= 0, low <= high, high < 4096
            else { return nil }
            cpus.append(contentsOf: low...high)
        }
        return cpus.isEmpty ? nil : cpus
    }

    /// Splits `host:port` (`[v6]:port`, or `:port` for every interface) into a numeric host and a port.
    /// - Returns: nil when it is not of that form or the port is not 0...65535.
    public static func address(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.contains(":") || text.hasPrefix("[") else { return nil }
        return (host, port)
    }
}
