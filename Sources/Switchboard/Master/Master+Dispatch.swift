import CSwitchboardLinux
import Logging

#if canImport(Glibc)
import Glibc
#endif

extension Master {
    /// Hands waiting connections to workers, then accepts new ones while some worker has room.
    /// The hot path: no allocation, no logging, no locks per connection.
    func pump() {
        while let fd = pending.first {
            guard let index = scheduler.next() else { break }
            if send(fd, to: index) {
                _ = pending.removeFirst()
            }
        }
        if configuration.mode.passesDescriptors && pending.isEmpty && listener >= 0 && state == .running
            && acceptResumeAt == nil
        {
            acceptLoop()
        }
        updateListenerInterest()
    }

    private func acceptLoop() {
        while scheduler.next() != nil {
            let fd: CInt
            do {
                guard case .done(let accepted) = try Syscalls.accept(listener) else { return }
                fd = accepted
            } catch {
                acceptFailed(error)
                return
            }
            // Find a worker that takes it; a failed worker is detached and the next one tried.
            while true {
                guard let index = scheduler.next() else {
                    pending.append(fd)
                    return
                }
                if send(fd, to: index) { break }
            }
        }
    }

    /// Sends `fd` to the worker in `slot`. Returns true when it was sent (the master keeps its copy until the ack).
    /// Returns false when the worker's channel would block (the slot is marked blocked) or failed (the slot is
    /// detached); the caller still owns `fd`.
    private func send(_ fd: CInt, to index: Int) -> Bool {
        guard let channel = slots[index].channel else {
            scheduler.setReady(index, false)
            return false
        }
        let sequence = slots[index].inFlight.nextSequence
        do {
            switch try channel.sendConnection(sequence: sequence, fd) {
            case .done:
                _ = slots[index].inFlight.push(fd)
                scheduler.dispatched(to: index)
                dispatched &+= 1
                return true
            case .wouldBlock:
                scheduler.setBlocked(index, true)
                watchWritable(slot: index, true)
                return false
            }
        } catch {
            detach(slot: index, reason: "channel failed while sending a connection: \(error)")
            return false
        }
    }

    private func acceptFailed(_ error: SystemCallError) {
        switch error.code {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
            // Out of descriptors or memory: back off so the backlog holds the connections meanwhile.
            logger.warning("accept failed: \(error.reason); pausing accepts for 100 ms")
            acceptResumeAt = Syscalls.monotonicNanoseconds() + 100_000_000
        default:
            logger.warning("accept failed: \(error.reason)")
        }
    }

    func writable(slot index: Int) {
        scheduler.setBlocked(index, false)
        watchWritable(slot: index, false)
    }

    private func watchWritable(slot index: Int, _ on: Bool) {
        guard slots[index].watchingWritable != on, let channel = slots[index].channel else { return }
        slots[index].watchingWritable = on
        let events = on ? sb_EPOLLIN | sb_EPOLLOUT : sb_EPOLLIN
        try? Syscalls.epollModify(
            epoll, channel.fd, events: events, token: Token.worker(slot: index, id: slots[index].id))
    }

    /// Watches the listener only while a connection could be handed on: when every worker is at its bound the kernel
    /// backlog holds new connections (backpressure) instead of the master.
    func updateListenerInterest() {
        let wanted =
            configuration.mode.passesDescriptors && listener >= 0 && state == .running && pending.isEmpty && acceptResumeAt == nil && scheduler.hasCapacity
        guard wanted != listenerWatched else { return }
        if wanted {
            do {
                try Syscalls.epollAdd(epoll, listener, events: sb_EPOLLIN, token: Token.listener)
                listenerWatched = true
            } catch {
                logger.error("cannot watch the listener: \(error)")
            }
        } else {
            unwatchListener()
        }
    }

    func unwatchListener() {
        guard listenerWatched else { return }
        Syscalls.epollRemove(epoll, listener)
        listenerWatched = false
    }
}
