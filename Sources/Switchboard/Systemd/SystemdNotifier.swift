import Logging

#if canImport(Glibc)
import Glibc
#endif

/// What the master tells systemd: READY/STATUS/RELOADING/STOPPING/WATCHDOG/EXTEND_TIMEOUT_USEC/ERRNO, and the
/// listener in the fd store. Everything is a no-op when systemd did not start the master.
///
/// It owns its deadline (the next watchdog ping, drain check or status refresh) and what it remembers between them:
/// the last notable event for the STATUS= line, the watchdog policy and whether pings are withheld, the drain's
/// progress. The figures it sends come from its owner, asked when it sends (``Source``). It holds no descriptors:
/// libsystemd opens a socket per message, and a listener systemd passed is handed to the owner.
///
/// One thread; every call is non-blocking.
final class SystemdNotifier {
    /// What the notifier asks its owner, when it has something to send.
    protocol Source {
        /// Ready workers, the target and connections dispatched: the figures of the STATUS= line.
        var systemdFigures: SystemdNotifier.Figures { get }
        /// Running, stopping (until the drain deadline) or finished.
        var runState: SupervisorMachine.RunState { get }
        /// The workers as the watchdog policy sees them.
        var watchdogWorkers: [WatchdogPolicy.Worker] { get }
        /// Workers still running plus the connections they hold open: the drain made progress when it went down.
        var drainRemaining: Int { get }
    }

    /// The figures of the STATUS= line.
    struct Figures {
        var ready: Int
        var target: Int
        var dispatched: UInt64
    }

    static let storeName = "switchboard-listener"

    private let configuration: Configuration
    private let logger: Logger
    /// `NOTIFY_SOCKET` was set.
    private var notifying = false
    /// Half the watchdog interval, when systemd's watchdog is on for this process.
    private var watchdogPeriod: UInt64?
    /// When systemd's watchdog is on: whether the master may ping it.
    private var watchdog: WatchdogPolicy?
    /// When ``runTimers(now:source:)`` runs next; 0: never (not notifying).
    private var nextTick: UInt64 = 0
    private var lastEvent = "starting"
    private var withheld = false
    /// Live workers plus their open connections at the last drain check (progress means it went down).
    private var stopExtension = StopExtension()

    /// - Parameter configuration: What the watchdog policy's recovery bound is derived from.
    init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC`. Call once, before the workers start.
    func start() {
        notifying = Syscalls.environment("NOTIFY_SOCKET") != nil
        if let interval = Systemd.watchdogInterval() {
            watchdogPeriod = UInt64(interval.nanoseconds / 2)
            // Hung workers are the master's to replace: the ping stops only when no worker has served for longer than
            // the master could take to bring one back.
            let policy = WatchdogPolicy(configuration: configuration, start: Syscalls.monotonicNanoseconds())
            watchdog = policy
            logger.info(
                "systemd watchdog on",
                metadata: ["watchdog.interval": "\(interval)", "watchdog.recovery_bound": "\(policy.recoveryBound)"])
        }
        nextTick = notifying ? Syscalls.monotonicNanoseconds() : 0
    }

    // MARK: the listener

    /// A listener passed by socket activation or kept in the fd store, if systemd passed one; the caller owns it.
    /// Closes the others.
    func takeListener() -> (fd: CInt, name: String)? {
        let passed = Systemd.listenDescriptors()
        guard !passed.isEmpty else { return nil }
        var chosen: (fd: CInt, name: String)?
        for (fd, name) in passed {
            if chosen == nil && Systemd.isListeningStreamSocket(fd) {
                chosen = (fd, name)
                logger.info(
                    "using the listener systemd passed; --port and --host are ignored",
                    metadata: ["listener.name": "\(name)", "listener.fd": "\(fd)"])
            } else {
                // A duplicate (the socket unit's listener also kept in the store) or not a listening stream socket.
                Syscalls.close(fd)
            }
        }
        return chosen
    }

    /// Keeps `listener` in systemd's fd store so a restart of the master never closes the port.
    func storeListener(_ listener: CInt) {
        guard notifying, listener >= 0 else { return }
        if Systemd.notify("FDSTORE=1\nFDNAME=\(Self.storeName)", descriptor: listener) {
            logger.info("listener kept in systemd's fd store", metadata: ["listener.name": "\(Self.storeName)"])
        }
    }

    // MARK: notifications

    /// Sends `assignments` (none: only the STATUS= line) with the STATUS= line, which now names `event`.
    func notify(_ assignments: String, event: String, source: some Source) {
        guard notifying else { return }
        let status = statusText(event, source: source)
        Systemd.notify(assignments.isEmpty ? "STATUS=\(status)" : "\(assignments)\nSTATUS=\(status)")
    }

    /// READY=1: every configured worker is ready, or a reload ended.
    func ready(event: String, source: some Source) {
        notify("READY=1\nMAINPID=\(getpid())", event: event, source: source)
    }

    /// RELOADING=1: a rolling reload to `generation` began.
    func reloading(generation: Int, source: some Source) {
        let usec = Syscalls.monotonicNanoseconds() / 1000
        let event = "rolling reload to generation \(generation)"
        notify("RELOADING=1\nMONOTONIC_USEC=\(usec)", event: event, source: source)
    }

    /// RELOADING=1: the master execs `build` (the same PID: systemd's MAINPID stays); READY=1 follows once the new
    /// image has adopted the workers.
    func upgrading(to build: String, source: some Source) {
        let usec = Syscalls.monotonicNanoseconds() / 1000
        notify("RELOADING=1\nMONOTONIC_USEC=\(usec)", event: "upgrading the master to \(build)", source: source)
    }

    /// STOPPING=1, and the drain checks begin now.
    func stopping(source: some Source) {
        notify("STOPPING=1", event: "stopping: draining workers", source: source)
        if nextTick > 0 { nextTick = Syscalls.monotonicNanoseconds() }
    }

    /// ERRNO=: the master halts in a crash loop.
    func halted(earlyExits: Int, source: some Source) {
        let event = "halted: workers exited early \(earlyExits) times (crash loop)"
        notify("ERRNO=\(ECHILD)", event: event, source: source)
    }

    /// The STATUS= text: ready/total workers, connections dispatched, the last notable event (`event`, if given).
    private func statusText(_ event: String? = nil, source: some Source) -> String {
        if let event { lastEvent = event }
        let figures = source.systemdFigures
        let workers = "\(figures.ready)/\(figures.target) workers ready"
        return "\(workers), \(figures.dispatched) connections dispatched; \(lastEvent)"
    }

    // MARK: timers

    /// When ``runTimers(now:source:)`` has something to do next (monotonic nanoseconds), or nil.
    func nextDeadline(now: UInt64) -> UInt64? {
        nextTick > 0 ? nextTick : nil
    }

    /// Watchdog pings (withheld only when no worker has served past the recovery bound), drain progress, status
    /// refresh.
    func runTimers(now: UInt64, source: some Source) {
        guard nextTick > 0, now >= nextTick else { return }
        var period: UInt64 = 5_000_000_000
        if let watchdogPeriod {
            period = min(period, watchdogPeriod)
            pingWatchdog(now: now, source: source)
        }
        if case .stopping(let deadline) = source.runState {
            period = min(period, 1_000_000_000)
            if let extra = stopExtension.extendedTimeout(marker: source.drainRemaining, deadline: deadline, now: now) {
                Systemd.notify("EXTEND_TIMEOUT_USEC=\(extra)")
            }
        } else if watchdogPeriod == nil {
            Systemd.notify("STATUS=\(statusText(source: source))")
        }
        nextTick = now + period
    }

    /// Shows the watchdog policy the workers before a health check may kill one, so an outage runs from the last
    /// worker's last heartbeat.
    func observeWorkers(now: UInt64, source: some Source) {
        guard watchdog != nil else { return }
        let workers = source.watchdogWorkers
        watchdog?.observe(now: now, workers: workers)
    }

    private func pingWatchdog(now: UInt64, source: some Source) {
        guard var policy = watchdog else { return }
        let verdict = policy.verdict(now: now, workers: source.watchdogWorkers, stopping: source.runState != .running)
        watchdog = policy
        switch verdict {
        case .ping:
            if withheld {
                withheld = false
                logger.notice("watchdog pings resume: a worker serves again")
            }
            Systemd.notify("WATCHDOG=1\nSTATUS=\(statusText(source: source))")
        case .withhold(let outage):
            let text =
                "watchdog withheld: no worker has served for \(outage.milliseconds) ms "
                + "(recovery bound \(policy.recoveryBound.milliseconds) ms)"
            if !withheld {
                logger.warning("\(text)")
            }
            withheld = true
            Systemd.notify("STATUS=\(statusText(text, source: source))")
        }
    }
}
