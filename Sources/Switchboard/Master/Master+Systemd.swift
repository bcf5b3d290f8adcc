import Logging

#if canImport(Glibc)
import Glibc
#endif

/// What the master tells systemd: READY/STATUS/RELOADING/STOPPING/WATCHDOG/EXTEND_TIMEOUT_USEC/ERRNO, and the
/// listener in the fd store. Everything is a no-op when systemd did not start the master.
struct SystemdLink {
    /// `NOTIFY_SOCKET` was set.
    var notifying = false
    /// Half the watchdog interval, when systemd's watchdog is on for this process.
    var watchdogPeriod: UInt64?
    /// When systemd's watchdog is on: whether the master may ping it.
    var watchdog: WatchdogPolicy?
    var nextTick: UInt64 = 0
    var lastEvent = "starting"
    var withheld = false
    /// Live workers plus their open connections at the last drain check (progress means it went down).
    var stopExtension = StopExtension()

    static let storeName = "switchboard-listener"
}

extension Master {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC`. Call once, before the workers start.
    func setUpSystemd() {
        systemd.notifying = Syscalls.environment("NOTIFY_SOCKET") != nil
        if let interval = Systemd.watchdogInterval() {
            systemd.watchdogPeriod = UInt64(interval.nanoseconds / 2)
            // Hung workers are the master's to replace: the ping stops only when no worker has served for longer than
            // the master could take to bring one back.
            let policy = WatchdogPolicy(configuration: configuration, start: Syscalls.monotonicNanoseconds())
            systemd.watchdog = policy
            logger.info(
                "systemd watchdog on",
                metadata: ["watchdog.interval": "\(interval)", "watchdog.recovery_bound": "\(policy.recoveryBound)"])
        }
        systemd.nextTick = systemd.notifying ? Syscalls.monotonicNanoseconds() : 0
    }

    /// A listener passed by socket activation or kept in the fd store, if systemd passed one. Closes the others.
    func takeSystemdListener() -> (fd: CInt, name: String)? {
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

    /// Keeps the listener in systemd's fd store so a restart of the master never closes the port.
    func storeListener() {
        guard systemd.notifying, listener >= 0 else { return }
        if Systemd.notify("FDSTORE=1\nFDNAME=\(SystemdLink.storeName)", descriptor: listener) {
            logger.info("listener kept in systemd's fd store", metadata: ["listener.name": "\(SystemdLink.storeName)"])
        }
    }

    /// The STATUS= text: ready/total workers, connections dispatched, the last notable event.
    func statusText(_ event: String? = nil) -> String {
        if let event { systemd.lastEvent = event }
        return "\(machine.readyCount)/\(machine.target) workers ready, \(dispatcher.counters.dispatched) connections dispatched; \(systemd.lastEvent)"
    }

    func notifySystemd(_ assignments: String, event: String) {
        guard systemd.notifying else { return }
        Systemd.notify(assignments.isEmpty ? "STATUS=\(statusText(event))" : "\(assignments)\nSTATUS=\(statusText(event))")
    }

    func notifyReady(event: String) {
        notifySystemd("READY=1\nMAINPID=\(getpid())", event: event)
    }

    func notifyReloading() {
        let usec = Syscalls.monotonicNanoseconds() / 1000
        notifySystemd("RELOADING=1\nMONOTONIC_USEC=\(usec)", event: "rolling reload to generation \(machine.generation)")
    }

    func notifyStopping() {
        notifySystemd("STOPPING=1", event: "stopping: draining workers")
    }

    func notifyHalt(earlyExits: Int) {
        notifySystemd("ERRNO=\(ECHILD)", event: "halted: workers exited early \(earlyExits) times (crash loop)")
    }

    /// Runs from the loop's timers: watchdog pings (withheld only when no worker has served past the recovery bound),
    /// drain progress, status refresh.
    func systemdTick(now: UInt64) {
        guard systemd.nextTick > 0, now >= systemd.nextTick else { return }
        var period: UInt64 = 5_000_000_000
        if let watchdogPeriod = systemd.watchdogPeriod {
            period = min(period, watchdogPeriod)
            pingWatchdog(now: now)
        }
        if case .stopping(let deadline) = machine.state {
            period = min(period, 1_000_000_000)
            let marker = machine.workers.filter(\.hasProcess).count + dispatcher.lanes.reduce(0) { $0 + $1.open }
            if let extra = systemd.stopExtension.extendedTimeout(marker: marker, deadline: deadline, now: now) {
                Systemd.notify("EXTEND_TIMEOUT_USEC=\(extra)")
            }
        } else if systemd.watchdogPeriod == nil {
            Systemd.notify("STATUS=\(statusText())")
        }
        systemd.nextTick = now + period
    }

    /// The workers as the watchdog policy sees them.
    private var watchdogWorkers: [WatchdogPolicy.Worker] {
        machine.workers.filter(\.isAttached).map { worker in
            WatchdogPolicy.Worker(
                serving: worker.phase == .ready || worker.phase == .draining, lastHeartbeat: worker.lastHeartbeat)
        }
    }

    /// Shows the watchdog policy the workers before a health check may kill one, so an outage runs from the last
    /// worker's last heartbeat.
    func observeWorkersForWatchdog(now: UInt64) {
        guard systemd.watchdog != nil else { return }
        let workers = watchdogWorkers
        systemd.watchdog?.observe(now: now, workers: workers)
    }

    private func pingWatchdog(now: UInt64) {
        guard var policy = systemd.watchdog else { return }
        let verdict = policy.verdict(now: now, workers: watchdogWorkers, stopping: machine.state != .running)
        systemd.watchdog = policy
        switch verdict {
        case .ping:
            if systemd.withheld {
                systemd.withheld = false
                logger.notice("watchdog pings resume: a worker serves again")
            }
            Systemd.notify("WATCHDOG=1\nSTATUS=\(statusText())")
        case .withhold(let outage):
            let text =
                "watchdog withheld: no worker has served for \(outage.milliseconds) ms "
                + "(recovery bound \(policy.recoveryBound.milliseconds) ms)"
            if !systemd.withheld {
                logger.warning("\(text)")
            }
            systemd.withheld = true
            Systemd.notify("STATUS=\(statusText(text))")
        }
    }
}
