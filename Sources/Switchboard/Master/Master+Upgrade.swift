import CSwitchboardLinux
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The master's upgrade in place: `switchboard upgrade`, SIGUSR2 or ``Supervisor/upgrade(masterOnly:)``.
///
/// 1. **Pre-check**, while the master serves on: the file on disk runs with this master's own arguments and
///    ``Handover/checkVariable``; it parses and validates the configuration, answers ``Handover/checkAnswer`` and
///    exits. Anything else (it fails, it is not a Switchboard program, it speaks another channel protocol or hand-over
///    format, it does not answer in 10 s) ends the upgrade with one line; nothing changed.
/// 2. **Hand over and exec**: the state goes into a memfd (``Handover``), close-on-exec is cleared on the descriptors
///    that must survive, systemd is told `RELOADING=1`, and the master execs the file: the same PID, so the workers
///    stay its children and their channels, queues and pidfds stay open.
/// 3. The new image **adopts** (``adopt(_:)``), says `READY=1`, and starts a rolling reload of the workers unless the
///    upgrade was master-only. If it cannot adopt, it execs the old image back (kept open before the exec), which
///    adopts the same state and says why in one line.
struct MasterUpgrade {
    /// The pre-check running.
    struct Check {
        var pid: pid_t
        /// The read end of the pipe its stdout and stderr go to.
        var output: CInt
        var bytes: [UInt8] = []
        var deadline: UInt64
        var upgrade: Handover.Upgrade
    }

    /// How long the pre-check may take.
    static let checkTimeout: UInt64 = 10_000_000_000
    /// How often the pre-check is looked at.
    static let checkPoll: UInt64 = 10_000_000

    var check: Check?
    /// Upgrades asked for in this master's life (across its images).
    var sequence = 0
    /// The last upgrade's outcome, for status.
    var last: MasterStatus.Upgrade?

    /// When ``Master/pollUpgradeCheck(now:)`` is due.
    var nextDeadline: UInt64? {
        check == nil ? nil : Syscalls.monotonicNanoseconds() &+ Self.checkPoll
    }
}

extension Master {
    // MARK: asking

    /// Begins an upgrade: starts the pre-check of the file on disk.
    /// - Returns: The reply for a control client (`ok` and the upgrade's number, or `error: why`).
    @discardableResult
    func beginUpgrade(masterOnly: Bool, asked: String) -> String {
        func refused(_ reason: String) -> String {
            logger.error("upgrade refused: \(reason)")
            return "error: upgrade refused: \(reason)\n"
        }
        guard machine.state == .running, !machine.isStopAnnounced else { return refused("the master is stopping") }
        if let check = upgrade.check {
            return refused("upgrade \(check.upgrade.sequence) is being checked")
        }
        // The program this master was started from, as it is on disk now (an embedding program may start its
        // workers from another file: the master's own is the one to exec).
        let path = LaunchPath.current
        guard path != LaunchPath.fallback else {
            return refused(
                "the path this master was started by is unknown, so the build on disk cannot be found: restart it by its path")
        }
        upgrade.sequence += 1
        let sequence = upgrade.sequence
        let now = Syscalls.monotonicNanoseconds()
        let planned = Handover.Upgrade(
            sequence: sequence, masterOnly: masterOnly, startedAt: now, fromBuild: Cluster.build, path: path)
        let pipe: (read: CInt, write: CInt)
        do {
            pipe = try Syscalls.pipe()
        } catch {
            return failUpgrade(planned, "cannot create the pre-check's pipe: \(error.reason)")
        }
        let environment = Handover.environment(WorkerProcesses.baseEnvironment(), adding: [Handover.checkVariable: "1"])
        let pid: pid_t
        do {
            pid = try Syscalls.spawnCheck(
                path: path, arguments: CommandLine.arguments, environment: environment, output: pipe.write)
        } catch {
            Syscalls.close(pipe.read)
            Syscalls.close(pipe.write)
            return failUpgrade(planned, "cannot run \(path) for its pre-check: \(error.reason)")
        }
        Syscalls.close(pipe.write)
        upgrade.check = MasterUpgrade.Check(
            pid: pid, output: pipe.read, deadline: now &+ MasterUpgrade.checkTimeout, upgrade: planned)
        upgrade.last = MasterStatus.Upgrade(
            sequence: sequence, result: "checking", detail: "pre-check of \(path)", fromBuild: Cluster.build)
        logger.info(
            "upgrade \(sequence) (\(asked)): checking \(path)\(masterOnly ? "; the master only" : "")",
            metadata: ["upgrade.sequence": "\(sequence)"])
        return "ok\nupgrade \(sequence): checking \(path)\n"
    }

    /// Ends an upgrade that changed nothing: one line, and status says why.
    @discardableResult
    private func failUpgrade(_ planned: Handover.Upgrade, _ reason: String) -> String {
        logger.error(
            "upgrade \(planned.sequence) failed: \(reason); this master (\(Cluster.build)) keeps serving",
            metadata: ["upgrade.sequence": "\(planned.sequence)"])
        upgrade.last = MasterStatus.Upgrade(
            sequence: planned.sequence, result: "failed", detail: reason, fromBuild: planned.fromBuild)
        return "error: upgrade \(planned.sequence) failed: \(reason)\n"
    }

    // MARK: the pre-check

    /// Reads what the pre-check wrote and, once it exited, judges its answer.
    func pollUpgradeCheck(now: UInt64) {
        guard var check = upgrade.check else { return }
        readCheckOutput(&check)
        let status = Syscalls.reap(check.pid)
        if case .running = status {
            guard now >= check.deadline else {
                upgrade.check = check
                return
            }
            Syscalls.kill(check.pid, SIGKILL)
            Syscalls.waitForExit(check.pid)
            Syscalls.close(check.output)
            upgrade.check = nil
            failUpgrade(check.upgrade, "the pre-check of \(check.upgrade.path) did not answer within 10 s")
            return
        }
        readCheckOutput(&check)
        Syscalls.close(check.output)
        upgrade.check = nil
        let text = String(decoding: check.bytes, as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init)
        let last = lines.last { !$0.hasPrefix("switchboard-upgrade-check ") }.map { ": \($0.prefix(300))" } ?? ""
        if case .exited(let code, let signaled, _) = status, code != 0 {
            let how = signaled ? "was killed by signal \(code - 128)" : "exited with code \(code)"
            failUpgrade(check.upgrade, "the pre-check of \(check.upgrade.path) \(how)\(last)")
            return
        }
        guard let answer = lines.last(where: { $0.hasPrefix("switchboard-upgrade-check ") }) else {
            failUpgrade(
                check.upgrade,
                "\(check.upgrade.path) did not answer the pre-check (not a Switchboard master of this build line?)\(last)")
            return
        }
        var fields: [String: String] = [:]
        for part in answer.split(separator: " ").dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1)
            if pair.count == 2 { fields[String(pair[0])] = String(pair[1]) }
        }
        let build = fields["build"] ?? "?"
        guard fields["wire"] == "\(WireCodec.version)" else {
            failUpgrade(
                check.upgrade,
                "\(check.upgrade.path) (\(build)) speaks channel protocol \(fields["wire"] ?? "?") and this master \(WireCodec.version): restart instead")
            return
        }
        guard fields["handover"] == "\(Handover.format)" else {
            failUpgrade(
                check.upgrade,
                "\(check.upgrade.path) (\(build)) reads hand-over format \(fields["handover"] ?? "?") and this master writes \(Handover.format): restart instead")
            return
        }
        execUpgrade(check.upgrade, to: build)
    }

    private func readCheckOutput(_ check: inout MasterUpgrade.Check) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while check.bytes.count < 64 * 1024 {
            guard case .done(let count)? = try? Syscalls.read(check.output, into: &chunk, at: 0), count > 0 else { return }
            check.bytes.append(contentsOf: chunk[0..<count])
        }
    }

    // MARK: the exec

    /// Writes the hand-over and execs the file on disk. Returns only when the exec failed (nothing changed then).
    private func execUpgrade(_ planned: Handover.Upgrade, to build: String) {
        let handover = Handover(
            format: Handover.format, upgrade: planned, mode: configuration.mode.name, port: port, startedAt: startedAt,
            orphansReaped: orphansReaped, lastUpgrade: upgrade.last, machine: machine.snapshot,
            dispatcher: dispatcher.snapshot, processes: processes.snapshot, recycler: recycler.snapshot,
            metrics: metrics.totals, health: health.handed, control: controlServer.handed)
        let memfd: CInt
        let image: CInt
        do {
            memfd = try Syscalls.memoryFile(named: "switchboard-handover", holding: try handover.encoded())
        } catch let error as SwitchboardError {
            failUpgrade(planned, error.message)
            return
        } catch {
            failUpgrade(planned, "cannot write the hand-over: \(error)")
            return
        }
        do {
            image = try Syscalls.openOwnImage()
        } catch {
            Syscalls.close(memfd)
            failUpgrade(planned, "cannot keep the running image for a rollback: \(error.reason)")
            return
        }
        let kept = handover.descriptors
        for fd in kept { try? Syscalls.setCloseOnExec(fd, false) }
        systemd.upgrading(to: build, source: self)
        logger.notice(
            "upgrading the master in place: \(Cluster.build) -> \(build), exec \(planned.path) as pid \(getpid())",
            metadata: ["upgrade.sequence": "\(planned.sequence)"])
        let environment = Handover.environment(
            Syscalls.environment(),
            adding: [
                Handover.variable: "\(memfd)", Handover.rollbackVariable: "\(image)",
                LaunchPath.handedVariable: planned.path,
            ])
        // The new image starts from the policy this one was started with (``MasterSchedulingState``).
        let restored = scheduling.restore()
        let error = Syscalls.execute(
            path: planned.path, arguments: CommandLine.arguments, environment: environment,
            blocking: Self.handledSignals, ignoring: signalsIgnoredAcrossExec)
        // Still this image: put everything back as it was.
        if restored { scheduling.reapply() }
        for fd in kept { try? Syscalls.setCloseOnExec(fd, true) }
        Syscalls.close(memfd)
        Syscalls.close(image)
        failUpgrade(planned, "\(error)")
        notifyReady(event: "upgrade \(planned.sequence) failed: \(error.reason)")
    }

    /// The signals ignored across the exec. A master that installs its own handlers does so before anything can
    /// unblock a signal in the new image, so every signal arrives pending and is taken. A program that handles
    /// signals itself (``ClusterMain``'s dispatch sources) takes them only once its `main` got there; meanwhile a
    /// runtime thread may unblock them, and the default action of HUP and USR2 would end the master, of TTIN and TTOU
    /// stop it. Those four (commands, harmless to lose) are ignored until the program's own handling replaces it.
    /// TERM, INT and QUIT keep their default: a stop asked in that window stops the master, and its workers drain on
    /// their parent-death signal.
    var signalsIgnoredAcrossExec: [CInt] {
        ownsSignalHandlers ? [] : [SIGHUP, SIGUSR2, SIGTTIN, SIGTTOU]
    }

    // MARK: the new image

    /// Answers the pre-check and ends the process: this build parsed the configuration and speaks these versions.
    func answerUpgradeCheck() -> Never {
        Syscalls.writeAll(1, Handover.checkAnswer + "\n")
        Syscalls.exitNow(0)
    }

    /// Adopts what the previous image handed over, then runs the loop.
    func adopt(_ inherited: Handover.Inherited) -> Int32 {
        let handover: Handover
        do {
            handover = try Handover.decode(try readHandover(inherited.memfd))
            try checkAdoptable(handover)
            try takeOver(handover)
        } catch {
            rollBack(inherited, reason: error.message)
        }
        for fd in handover.descriptors { try? Syscalls.setCloseOnExec(fd, true) }
        Syscalls.close(inherited.memfd)
        if let image = inherited.rollback { Syscalls.close(image) }
        if ownsSignalHandlers { Syscalls.unblock(Self.handledSignals) }
        // The image before gave its policy back before the exec: this one decides, before its reload starts workers.
        scheduling.apply(configuration.masterScheduling, logger: logger)

        let planned = handover.upgrade
        let elapsed = (Syscalls.monotonicNanoseconds() &- planned.startedAt) / 1_000_000
        if let failed = inherited.failed {
            upgrade.last = MasterStatus.Upgrade(
                sequence: planned.sequence, result: "rolled back", detail: failed, fromBuild: planned.fromBuild,
                milliseconds: Int(elapsed))
            logger.error(
                "upgrade \(planned.sequence) rolled back: the new image could not adopt the master (\(failed)); this build (\(Cluster.build)) serves on as pid \(getpid())",
                metadata: ["upgrade.sequence": "\(planned.sequence)"])
            notifyReady(event: "upgrade \(planned.sequence) rolled back: \(failed)")
        } else {
            let workers = planned.masterOnly ? "the workers keep their build (--master-only)" : "rolling reload of the workers next"
            upgrade.last = MasterStatus.Upgrade(
                sequence: planned.sequence, result: "done", detail: workers, fromBuild: planned.fromBuild,
                toBuild: Cluster.build, milliseconds: Int(elapsed))
            logger.notice(
                "master upgraded in place: \(planned.fromBuild) -> \(Cluster.build) in \(elapsed) ms, pid \(getpid()); \(workers)",
                metadata: ["upgrade.sequence": "\(planned.sequence)"])
            notifyReady(event: "master upgraded to \(Cluster.build)")
        }
        reapChildren()  // workers that exited while the image changed
        if inherited.failed == nil && !planned.masterOnly && machine.state == .running {
            submit(.reload(now: Syscalls.monotonicNanoseconds()))
        }
        pump()
        return loop()
    }

    private func readHandover(_ memfd: CInt) throws(SwitchboardError) -> [UInt8] {
        do {
            return try Syscalls.readToEnd(memfd)
        } catch {
            throw SwitchboardError(.system, "cannot read the hand-over: \(error.reason)")
        }
    }

    /// What the new image checks before it takes anything over.
    private func checkAdoptable(_ handover: Handover) throws(SwitchboardError) {
        guard handover.format == Handover.format else {
            throw SwitchboardError(.system, "hand-over format \(handover.format), this build reads \(Handover.format)")
        }
        guard handover.mode == configuration.mode.name else {
            throw SwitchboardError(
                .usage, "this build is configured for --mode \(configuration.mode.name), the master ran \(handover.mode)")
        }
        if let closed = handover.descriptors.first(where: { !Syscalls.isOpen($0) }) {
            throw SwitchboardError(.system, "descriptor \(closed) of the hand-over is not open")
        }
        if let inode = Syscalls.environment(Handover.refuseVariable).flatMap(UInt64.init),
            Syscalls.deviceAndInode(path: "/proc/self/exe")?.inode == inode
        {
            throw SwitchboardError(.system, "refused by the test hook \(Handover.refuseVariable)")
        }
    }

    /// Puts each part of the hand-over into its owner.
    private func takeOver(_ handover: Handover) throws(SwitchboardError) {
        machine = SupervisorMachine(settings: SupervisorMachine.Settings(configuration), restoring: handover.machine)
        port = handover.port
        startedAt = handover.startedAt
        orphansReaped = handover.orphansReaped
        upgrade.sequence = handover.upgrade.sequence
        upgrade.last = handover.lastUpgrade
        let workers = machine.workers
        func id(_ slot: Int) -> Int { slot < workers.count ? workers[slot].id : 0 }
        do {
            try dispatcher.restore(
                handover.dispatcher, token: { Token.worker(slot: $0, id: id($0)) },
                metadata: { ["worker.id": "\(id($0))", "worker.pid": "\($0 < workers.count ? workers[$0].pid : 0)"] })
        } catch {
            throw SwitchboardError(.system, "cannot watch the workers' channels: \(error)")
        }
        processes.restore(handover.processes, ids: id)
        recycler.restore(handover.recycler)
        metrics.restore(handover.metrics)
        try health.adopt(handover.health)
        if let control = handover.control { try controlServer.adopt(control) }
        systemd.start()
        if configuration.reapsOrphans { try? Syscalls.becomeChildSubreaper() }
        do {
            if signals >= 0 { try Syscalls.epollAdd(epoll, signals, events: sb_EPOLLIN, token: Token.signals) }
            try Syscalls.epollAdd(epoll, control.eventFD, events: sb_EPOLLIN, token: Token.control)
        } catch {
            throw SwitchboardError(.system, "cannot watch signals: \(error)")
        }
    }

    /// The new image cannot adopt: exec the old one back with the same hand-over, and why.
    private func rollBack(_ inherited: Handover.Inherited, reason: String) -> Never {
        let why = String(reason.split(separator: "\n").first ?? "").prefix(400)
        guard let image = inherited.rollback else {
            let context = inherited.failed.map { "after the upgrade failed (\($0)), " } ?? ""
            logger.critical(
                "cannot adopt the hand-over in \(Handover.variable)=\(inherited.memfd) (\(why)); \(context)nothing to go back to: stopping (its workers stop with it)")
            Syscalls.exitNow(SwitchboardError.Code.system.exitCode)
        }
        try? Syscalls.rewind(inherited.memfd)
        var extra = [Handover.variable: "\(inherited.memfd)", Handover.failedVariable: String(why)]
        if let path = Syscalls.environment(LaunchPath.handedVariable) { extra[LaunchPath.handedVariable] = path }
        let error = Syscalls.execute(
            descriptor: image, arguments: CommandLine.arguments,
            environment: Handover.environment(Syscalls.environment(), adding: extra), blocking: Self.handledSignals,
            ignoring: signalsIgnoredAcrossExec)
        logger.critical("cannot exec the previous image back (\(error)) after the upgrade failed (\(why)); stopping")
        Syscalls.exitNow(SwitchboardError.Code.system.exitCode)
    }
}
