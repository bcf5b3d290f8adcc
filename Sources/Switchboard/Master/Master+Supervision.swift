import Logging

#if canImport(Glibc)
import Glibc
#endif

extension Master {
    // MARK: slots

    /// A slot for a new worker: a retired empty one if there is any, otherwise a new one.
    func allocateSlot() -> Int {
        if let index = slots.indices.first(where: { slots[$0].retired && slots[$0].phase == .empty }) {
            slots[index].retired = false
            slots[index].respawnAt = nil
            return index
        }
        slots.append(WorkerSlot(bound: configuration.maxQueued))
        let index = scheduler.addSlot()
        precondition(index == slots.count - 1)
        return index
    }

    /// Slots whose worker counts toward the target (not retired, not draining away).
    var activeSlots: [Int] {
        slots.indices.filter { !slots[$0].retired && slots[$0].phase != .draining }
    }

    /// Slots that count toward the target: a worker starting, ready or about to be reaped and refilled, or a
    /// restart that is due (not retired, not draining away).
    var countedSlots: Int {
        var counted = 0
        for slot in slots where !slot.retired && ((slot.hasProcess && slot.phase != .draining) || slot.respawnAt != nil) {
            counted += 1
        }
        return counted
    }

    /// The target worker count is what the master keeps, whatever path lost a worker: outside a reload, a shortfall
    /// gets new workers (a reload that aborted after the worker it was replacing died left one slot short). Checked
    /// with the health checks, not on every wakeup.
    func convergeToTarget(now: UInt64) {
        guard reload == nil else { return }
        let missing = targetWorkers - countedSlots
        guard missing > 0 else { return }
        logger.warning("\(missing) worker(s) short of the target of \(targetWorkers): starting replacements")
        for _ in 0..<missing {
            let index = allocateSlot()
            slots[index].respawnAt = now
        }
    }

    // MARK: health

    /// Kills workers that missed their ready deadline, stopped heartbeating, or outlived their drain deadline.
    func checkHealth(now: UInt64) {
        let readyTimeout = UInt64(configuration.readyTimeout.nanoseconds)
        let heartbeatTimeout = UInt64(configuration.heartbeatTimeout.nanoseconds)
        for index in slots.indices where slots[index].isAttached {
            let slot = slots[index]
            let metadata: Logger.Metadata = ["worker.id": "\(slot.id)", "worker.pid": "\(slot.pid)"]
            switch slot.phase {
            case .starting where now - slot.startedAt > readyTimeout:
                logger.warning("worker did not become ready within \(configuration.readyTimeout); killing it", metadata: metadata)
                detach(slot: index, reason: nil, verdict: true)
            case .ready where now - slot.lastHeartbeat > heartbeatTimeout,
                .draining where now - slot.lastHeartbeat > heartbeatTimeout:
                logger.warning(
                    "worker sent no heartbeat for \(configuration.heartbeatTimeout) (hung); killing it", metadata: metadata)
                detach(slot: index, reason: nil, verdict: true)
            case .draining where slot.drainDeadline.map { now > $0 } ?? false:
                logger.notice("worker did not finish draining in time; killing it", metadata: metadata)
                detach(slot: index, reason: nil, verdict: true)
            default:
                break
            }
        }
    }

    // MARK: rolling reload

    /// SIGHUP: replace every worker, one at a time, each gated on its replacement's readiness.
    func requestReload() {
        guard state == .running else { return }
        if reload != nil {
            reloadQueued = true
            logger.info("reload requested during a reload: queued")
            return
        }
        generation += 1
        let old = slots.indices.filter { !slots[$0].retired && slots[$0].hasProcess && slots[$0].phase != .draining }
        logger.info("rolling reload started", metadata: ["reload.generation": "\(generation)", "workers": "\(old.count)"])
        notifyReloading()
        var plan = RollingReload(oldSlots: old)
        let step = plan.start()
        reload = plan
        perform(step)
    }

    private func perform(_ step: RollingReload.Step) {
        switch step {
        case .spawnReplacement:
            let index = allocateSlot()
            do {
                try spawn(slot: index)
                reload?.replacementStarted(new: index)
            } catch {
                slots[index].retired = true
                logger.error("cannot start a replacement worker: \(error.message)")
                if let abort = reload?.replacementFailed(nil) { perform(abort) }
            }
        case .drain(let old):
            slots[old].retired = true
            if slots[old].isAttached {
                drain(slot: old, deadlineMilliseconds: UInt32(clamping: configuration.drainTimeout.milliseconds))
            }
        case .finished:
            let replaced = reload?.replaced ?? 0
            reload = nil
            logger.info("rolling reload finished", metadata: ["reload.generation": "\(generation)", "workers": "\(replaced)"])
            reloadFinished(aborted: false)
        case .aborted(let new):
            reload = nil
            if let new {
                slots[new].retired = true
                slots[new].exitIntended = true
                detach(slot: new, reason: nil)
            }
            logger.error(
                "rolling reload aborted: a new worker failed or was not ready within \(configuration.readyTimeout); the running workers keep serving",
                metadata: ["reload.generation": "\(generation)"])
            reloadFinished(aborted: true)
        }
    }

    private func reloadFinished(aborted: Bool) {
        notifyReady(
            event: aborted
                ? "reload to generation \(generation) aborted: a new worker failed or was not ready in time; old workers keep serving"
                : "reload to generation \(generation) finished")
        if reloadQueued {
            reloadQueued = false
            requestReload()
        }
    }

    /// A worker in `slot` reported ready: if it is a reload's replacement, go on with the reload.
    func replacementReady(slot index: Int) {
        guard reload?.isReplacement(index) == true, let steps = reload?.replacementReady(index) else { return }
        for step in steps { perform(step) }
    }

    /// The worker in `slot` was reaped. Returns true when the reload took care of it (no ordinary restart).
    func reloadReplacementExited(slot index: Int) -> Bool {
        guard var plan = reload else { return false }
        if plan.isReplacement(index) {
            slots[index].retired = true
            let step = plan.replacementFailed(index)
            reload = plan
            perform(step)
            return true
        }
        if plan.current?.old == index {
            // The worker being replaced died first: its replacement takes its place, no restart here.
            slots[index].retired = true
            return true
        }
        plan.oldWorkerExited(index)
        reload = plan
        return false
    }

    // MARK: scaling

    /// SIGTTIN: one worker more.
    func scaleUp() {
        guard state == .running else { return }
        targetWorkers += 1
        logger.info("adding a worker (SIGTTIN)", metadata: ["workers.target": "\(targetWorkers)"])
        let index = allocateSlot()
        do {
            try spawn(slot: index)
        } catch {
            logger.error("cannot start a worker: \(error.message); retrying")
            slots[index].respawnAt = Syscalls.monotonicNanoseconds() + 1_000_000_000
        }
    }

    /// SIGTTOU: one worker fewer, drained gracefully; never below one.
    func scaleDown() {
        guard state == .running else { return }
        let candidates = activeSlots.filter { slots[$0].hasProcess || slots[$0].respawnAt != nil }
        guard targetWorkers > 1, let index = candidates.last else {
            logger.notice("SIGTTOU ignored: keeping at least one worker")
            return
        }
        targetWorkers -= 1
        logger.info("removing a worker (SIGTTOU)", metadata: ["workers.target": "\(targetWorkers)"])
        slots[index].retired = true
        slots[index].respawnAt = nil
        if slots[index].isAttached {
            drain(slot: index, deadlineMilliseconds: UInt32(clamping: configuration.drainTimeout.milliseconds))
        }
    }
}
