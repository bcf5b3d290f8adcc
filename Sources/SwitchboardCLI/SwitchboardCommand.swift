import ArgumentParser
import Logging
import Switchboard

/// `switchboard`: one master accepts, workers serve.
struct SwitchboardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "Node.js cluster for Swift servers: one master accepts, N worker processes serve.",
        discussion: """
            The master alone binds and accepts; it passes each connection's descriptor to a worker in turn over a \
            private UNIX socketpair (SCM_RIGHTS). Each worker answers HTTP with "Handled by worker: <pid>". \
            Once every worker is ready, it prints: listening on <host>:<port> with <n> workers (<mode>).

            Signals: TERM, INT and QUIT stop gracefully (a second TERM or INT kills the workers at once); HUP starts a \
            rolling reload (each new worker must be ready before an old one drains); TTIN adds a worker, TTOU \
            drains one; USR2 upgrades the master in place to the build on disk (same PID), then reloads the workers.
            """,
        version: Cluster.build,
        subcommands: [StatusCommand.self, ReloadCommand.self, ScaleCommand.self, StopCommand.self, UpgradeCommand.self]
    )

    @Option(help: "TCP port to listen on; 0 picks a free port.")
    var port: Int = 3000

    @Option(help: "Numeric address to listen on (default: every interface, IPv6 dual-stack where available).")
    var host: String = ""

    @Option(
        help: """
            Number of worker processes, or auto: the CPUs this process may use (its affinity mask), capped by its \
            cgroup CPU quota rounded up (a container's --cpus, systemd's CPUQuota=).
            """)
    var workers: String = "auto"

    @Option(
        help: """
            Event loop threads per worker (the nio engine, and a SwiftNIO, Hummingbird or Vapor worker's default \
            group): each worker already covers a CPU, so one thread each avoids workers × cores threads.
            """)
    var workerThreads: Int = 1

    @Option(help: "Recycle a worker after this many requests, staggered so workers never recycle together (0: never).")
    var maxRequests: UInt64 = 0

    @Option(
        help: """
            Recycle a worker whose unique memory (USS, not RSS) stays above this (64M, 1G, bytes) in two samples 2 s \
            apart (0: never).
            """)
    var maxWorkerMemory: String = "0"

    @Option(help: "Recycle a worker after it has served this many seconds, staggered (0: never).")
    var maxLifetime: Double = 0

    @Option(help: "listen() backlog: where connections wait while every worker is busy.")
    var backlog: Int = 511

    @Option(
        help: """
            Seconds the kernel holds a new connection until its first bytes arrive (TCP_DEFER_ACCEPT): the request \
            is there when it is accepted, so a worker answers it without waiting in epoll. 0 = off. For protocols \
            where the client speaks first (HTTP, TLS). Default: the listener as it is (off for one switchboard binds).
            """)
    var deferAccept: Int?

    @Option(
        name: [.customLong("max-queued"), .customLong("max-unacked")],
        help: "Most connections waiting in one worker's queue, sent but not yet received (1 = Node's SCHED_RR gate).")
    var maxQueued: Int = 16

    @Option(
        help: "Seconds a connection may wait in a stalled worker's queue before the master serves it elsewhere (0: off)."
    )
    var stealAfter: Double = 0.1

    @Option(help: "How connections reach workers: round-robin, least-connections, reuseport or shared.")
    var mode: String = "round-robin"

    @Option(help: "Seconds workers get to finish in-flight requests on a graceful stop.")
    var drainTimeout: Double = 30

    @Option(help: "Seconds between worker heartbeats (sent from each worker's event loop).")
    var heartbeatInterval: Double = 1

    @Option(help: "Seconds without a heartbeat after which a worker is killed as hung and replaced.")
    var heartbeatTimeout: Double = 10

    @Option(help: "Seconds a new worker may take to report ready (a reload aborts when its new worker misses it).")
    var readyTimeout: Double = 30

    @Option(help: "Seconds before restarting a worker after its first early exit; doubles with each further one.")
    var restartDelay: Double = 0.1

    @Option(help: "Longest delay in seconds between restarts.")
    var restartDelayMax: Double = 10

    @Option(help: "A worker that ran at least this many seconds exited healthy: no backoff.")
    var minUptime: Double = 10

    @Option(help: "Early exits within --crash-loop-window that halt the master with exit code 70; 0 retries forever.")
    var crashLoopLimit: Int = 10

    @Option(help: "Window in seconds for --crash-loop-limit.")
    var crashLoopWindow: Double = 60

    @Option(
        help: """
            Seconds a client has from connecting (or from the end of the previous response) to the end of its \
            request head; then 408 if part of it arrived, else the connection closes. Also the longest pause in a body.
            """)
    var headerTimeout: Double = 30

    @Option(name: .customLong("keepalive-timeout"), help: "Seconds an idle keep-alive connection stays open.")
    var keepAliveTimeout: Double = 75

    @Option(help: "Seconds a client may take no byte of its response before it is cut.")
    var sendTimeout: Double = 60

    @Option(
        help: """
            Most connections one worker holds at once; the master skips a worker at its cap and the backlog holds \
            the rest. 0: the worker's descriptor limit less 64.
            """)
    var maxConnections: Int = 0

    @Option(
        help: """
            The built-in worker: native (its own epoll loop, the default) or nio (SwiftNIO's HTTP/1.1 pipeline, as \
            an embedding program serves).
            """)
    var worker: String = "native"

    @Option(
        help: """
            host:port where the master answers load balancers: GET /livez, GET /readyz and HAProxy's agent-check             (e.g. 127.0.0.1:8081, [::1]:8081, :8081). Off by default.
            """)
    var health: String?

    @Option(help: "host:port answering HAProxy's agent-check alone, at once on connect. Off by default.")
    var agent: String?

    @Option(help: "host:port where the master serves GET /metrics in the Prometheus text format. Off by default.")
    var metrics: String?

    @Option(help: "Run workers as this user (its groups too); the master binds first, so a port below 1024 works as root.")
    var user: String?

    @Option(help: "Run workers with this group instead of the user's primary group.")
    var group: String?

    @Option(
        help: """
            Pin worker i to one CPU: auto (CPU i mod n of the CPUs this process may use) or a list such as 0,2-3.             Off by default.
            """)
    var cpuAffinity: String?

    @Option(
        help: """
            The master's scheduling policy: batch (SCHED_BATCH: its wake-ups wait for the running task's turn instead \
            of preempting a worker, and accept what came meanwhile at once; workers keep the normal policy) or \
            inherit (the policy it was started with).
            """)
    var masterScheduling: String = "batch"

    @Option(
        help: """
            UNIX socket (mode 0600) for 'switchboard status|reload|scale|stop'; only this uid and root may use it.             Off by default.
            """)
    var controlSocket: String?

    @Option(
        help: """
            Seconds a stop is announced to load balancers (/readyz 503, agent drain) while serving goes on, before             the drain begins.
            """)
    var shutdownDelay: Double = 0

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(
        help: """
            Log lines as text, journal (sd-daemon <N> priority prefix, no timestamp) or json (one object per line);             auto: journal when stderr is the journal (JOURNAL_STREAM), text otherwise.
            """)
    var logFormat: String = "auto"

    @Flag(help: .hidden)
    var testHooks = false

    func validate() throws {
        guard maxConnections >= 0 else {
            throw ValidationError("--max-connections must be 0 (the descriptor limit) or more (got \(maxConnections))")
        }
        guard crashLoopLimit >= 0 else {
            throw ValidationError("--crash-loop-limit must be 0 (retry forever) or more (got \(crashLoopLimit))")
        }
        do {
            try makeConfiguration().validate()
        } catch {
            throw ValidationError(error.message)
        }
        guard MasterScheduling(rawValue: masterScheduling) != nil else {
            throw ValidationError("--master-scheduling '\(masterScheduling)' is not a policy: pass batch or inherit")
        }
        guard DispatchMode(name: mode) != nil else {
            throw ValidationError(
                "--mode '\(mode)' is not a mode: pass round-robin, least-connections, reuseport or shared")
        }
        guard BuiltinWorker.Engine(rawValue: worker) != nil else {
            throw ValidationError("--worker '\(worker)' is not a built-in worker: pass native or nio")
        }
        guard SwitchboardLogHandler.Format(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format '\(logFormat)' is not a format: pass auto, text, journal or json")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError(
                "--log-level '\(logLevel)' is not a level: pass trace, debug, info, notice, warning, error or critical")
        }
        let seconds: [(String, Double)] = [
            ("--drain-timeout", drainTimeout), ("--heartbeat-interval", heartbeatInterval),
            ("--heartbeat-timeout", heartbeatTimeout), ("--ready-timeout", readyTimeout),
            ("--restart-delay", restartDelay), ("--restart-delay-max", restartDelayMax), ("--min-uptime", minUptime),
            ("--crash-loop-window", crashLoopWindow), ("--header-timeout", headerTimeout),
            ("--keepalive-timeout", keepAliveTimeout), ("--send-timeout", sendTimeout), ("--steal-after", stealAfter),
            ("--shutdown-delay", shutdownDelay), ("--max-lifetime", maxLifetime),
        ]
        for (flag, value) in seconds where !(value.isFinite && value >= 0 && value <= 86_400 * 365) {
            throw ValidationError("\(flag) must be a number of seconds, 0 or more (got \(value))")
        }
    }

    /// `64M`, `512K`, `1G` or plain bytes.
    static func bytes(_ text: String) -> UInt64? {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        if let last = text.uppercased().last, let unit = units[last] {
            return UInt64(text.dropLast()).flatMap { $0.multipliedReportingOverflow(by: unit).overflow ? nil : $0 * unit }
        }
        return UInt64(text)
    }

    func makeConfiguration() throws(SwitchboardError) -> Configuration {
        var configuration = Configuration()
        configuration.port = port
        configuration.host = host
        if workers == "auto" {
            // `--test-hooks` may point the reader at a fixture tree of /proc and /sys (cgroup v2 tests).
            let root = testHooks ? Syscalls.environment("SWITCHBOARD_TEST_HOST_ROOT") ?? "/" : "/"
            let budget = CPUBudget.current(root: root)
            configuration.cpuBudget = budget
            configuration.workers = budget.workers
            configuration.workerCountNote = budget.summary
        } else {
            guard let count = Int(workers) else {
                throw SwitchboardError(.usage, "--workers '\(workers)' is not a number: pass a count such as 4, or auto")
            }
            configuration.workers = count
        }
        configuration.backlog = backlog
        configuration.deferAcceptSeconds = deferAccept
        configuration.reapsOrphans = true
        configuration.workerThreads = workerThreads
        configuration.maxRequests = maxRequests
        guard let memory = Self.bytes(maxWorkerMemory) else {
            throw SwitchboardError(
                .usage, "--max-worker-memory '\(maxWorkerMemory)' is not a size: pass bytes or a number with K, M or G (64M)")
        }
        configuration.maxWorkerMemory = memory
        configuration.maxQueued = maxQueued
        configuration.stealAfter = duration(stealAfter)
        configuration.health = health
        configuration.controlSocket = controlSocket
        configuration.metrics = metrics
        configuration.user = user
        configuration.group = group
        configuration.cpuAffinity = cpuAffinity
        configuration.agent = agent
        configuration.shutdownDelay = duration(shutdownDelay)
        configuration.maxLifetime = duration(maxLifetime)
        configuration.mode = DispatchMode(name: mode) ?? .roundRobin
        configuration.masterScheduling = MasterScheduling(rawValue: masterScheduling) ?? .batch
        func duration(_ seconds: Double) -> Duration {
            seconds.isFinite && seconds >= 0 && seconds <= 86_400 * 365 ? .milliseconds(Int64(seconds * 1000)) : .zero
        }
        configuration.heartbeatInterval = duration(heartbeatInterval)
        configuration.heartbeatTimeout = duration(heartbeatTimeout)
        configuration.readyTimeout = duration(readyTimeout)
        configuration.restart.baseDelay = duration(restartDelay)
        configuration.restart.maxDelay = duration(restartDelayMax)
        configuration.restart.healthyUptime = duration(minUptime)
        configuration.restart.crashLoopWindow = duration(crashLoopWindow)
        configuration.restart.crashLoopLimit = crashLoopLimit == 0 ? nil : crashLoopLimit
        configuration.drainTimeout = duration(drainTimeout)
        configuration.limits.headerTimeout = duration(headerTimeout)
        configuration.limits.keepAliveTimeout = duration(keepAliveTimeout)
        configuration.limits.sendTimeout = duration(sendTimeout)
        configuration.limits.maxConnections = maxConnections == 0 ? nil : maxConnections
        return configuration
    }

    var level: Logger.Level { Logger.Level(rawValue: logLevel) ?? .info }

    mutating func run() throws {
        if WorkerRuntime.isWorker {
            BuiltinWorker(engine: BuiltinWorker.Engine(rawValue: worker) ?? .native, testHooks: testHooks, logLevel: level)
                .run()
        }
        var logger = Logger(label: "switchboard")
        logger.logLevel = level
        let configuration = try makeConfiguration()
        let supervisor = try Supervisor(configuration: configuration, logger: logger)
        supervisor.onListening { host, port in
            Output.line("listening on \(host):\(port) with \(configuration.workers) workers (\(configuration.mode))")
        }
        let code = try supervisor.run()
        if code != 0 { throw ExitCode(code) }
    }
}
