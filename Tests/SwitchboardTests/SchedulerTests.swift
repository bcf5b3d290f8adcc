import Testing

@testable import Switchboard

@Suite struct SchedulerTests {
    func readyScheduler(_ count: Int, bound: Int = 4, policy: Scheduler.Policy = .roundRobin) -> Scheduler {
        var scheduler = Scheduler(policy: policy, bound: bound, slots: count)
        for slot in 0..<count { scheduler.setReady(slot, true) }
        return scheduler
    }

    /// Sends one connection that the worker receives at once, returning the slot.
    func dispatchAndAck(_ scheduler: inout Scheduler) -> Int? {
        guard let slot = scheduler.next() else { return nil }
        scheduler.dispatched(to: slot)
        scheduler.received(slot, count: 1)
        return slot
    }

    @Test func rotatesStrictly() {
        var scheduler = readyScheduler(3)
        let order = (0..<7).compactMap { _ in dispatchAndAck(&scheduler) }
        #expect(order == [0, 1, 2, 0, 1, 2, 0])
    }

    @Test func evenSplitForKConnectionsOverNWorkers() {
        var scheduler = readyScheduler(4)
        var counts = [0, 0, 0, 0]
        for _ in 0..<1001 { counts[dispatchAndAck(&scheduler)!] += 1 }
        #expect(counts.max()! - counts.min()! <= 1)
        #expect(counts.reduce(0, +) == 1001)
    }

    @Test func nextDoesNotAdvanceUntilDispatched() {
        let scheduler = readyScheduler(3)
        #expect(scheduler.next() == 0)
        #expect(scheduler.next() == 0)
    }

    @Test func workerAtItsBoundIsSkippedAndKeepsItsTurn() {
        var scheduler = readyScheduler(3, bound: 1)
        scheduler.dispatched(to: 0)  // slot 0 is now at its bound, nothing received
        #expect(scheduler.next() == 1)
        scheduler.dispatched(to: 1)
        scheduler.received(1, count: 1)
        #expect(scheduler.next() == 2)
        scheduler.dispatched(to: 2)
        scheduler.received(2, count: 1)
        #expect(scheduler.next() == 1, "slot 0 still at its bound is skipped")
        scheduler.received(0, count: 1)
        #expect(scheduler.next() == 0, "slot 0 gets its turn back in rotation order")
    }

    @Test func everyWorkerAtItsBoundMeansNoCapacity() {
        var scheduler = readyScheduler(2, bound: 2)
        for _ in 0..<4 {
            let slot = scheduler.next()!
            scheduler.dispatched(to: slot)
        }
        #expect(scheduler.next() == nil)
        #expect(!scheduler.hasCapacity)
        scheduler.received(1, count: 2)
        #expect(scheduler.next() == 1)
        #expect(scheduler.hasCapacity)
    }

    @Test func blockedAndUnreadyWorkersAreSkipped() {
        var scheduler = readyScheduler(3)
        scheduler.setBlocked(0, true)
        scheduler.setReady(1, false)
        #expect(scheduler.next() == 2)
        scheduler.setBlocked(0, false)
        #expect(scheduler.next() == 0)
    }

    @Test func noReadyWorkerMeansNoCapacity() {
        let scheduler = Scheduler(bound: 4, slots: 2)
        #expect(scheduler.next() == nil)
        #expect(!scheduler.hasCapacity)
    }

    @Test func workerExitResetsTheSlot() {
        var scheduler = readyScheduler(2, bound: 8)
        scheduler.dispatched(to: 0)
        scheduler.dispatched(to: 1)
        scheduler.dispatched(to: 0)
        scheduler.received(0, count: 1)
        scheduler.workerExited(0)
        #expect(scheduler.slots[0] == Scheduler.Slot())
        #expect(scheduler.next() == 1, "the exited slot is not ready until its replacement says so")
    }

    @Test func leastConnectionsPicksTheFewestOpenPlusQueued() {
        var scheduler = readyScheduler(3, bound: 8, policy: .leastConnections)
        scheduler.reportOpen(0, open: 5)
        scheduler.reportOpen(1, open: 1)
        scheduler.reportOpen(2, open: 2)
        #expect(scheduler.next() == 1)
        scheduler.dispatched(to: 1)
        scheduler.dispatched(to: 1)
        #expect(scheduler.next() == 2, "slot 1 now has 1 open + 2 queued")
    }

    @Test func leastConnectionsBreaksTiesByRotation() {
        var scheduler = readyScheduler(3, bound: 8, policy: .leastConnections)
        let order = (0..<6).compactMap { _ in dispatchAndAck(&scheduler) }
        #expect(order == [0, 1, 2, 0, 1, 2])
    }

    @Test func aWorkerAtItsConnectionCapIsSkippedUntilItReportsRoom() {
        var scheduler = Scheduler(policy: .roundRobin, bound: 8, capacity: 2, slots: 2)
        scheduler.setReady(0, true)
        scheduler.setReady(1, true)
        scheduler.dispatched(to: 0)
        scheduler.received(0, count: 1)
        scheduler.dispatched(to: 1)
        scheduler.received(1, count: 1)
        scheduler.dispatched(to: 0)  // open 1 + queued 1 = the cap
        #expect(scheduler.next() == 1)
        scheduler.dispatched(to: 1)
        #expect(scheduler.next() == nil)
        #expect(!scheduler.hasCapacity)
        scheduler.reportOpen(1, open: 0)  // a heartbeat: it closed one
        #expect(scheduler.next() == 1)
    }

    @Test func whatAWorkerReceivesCountsAsOpenUntilItReports() {
        var scheduler = readyScheduler(1, bound: 8)
        scheduler.dispatched(to: 0)
        scheduler.dispatched(to: 0)
        scheduler.received(0, count: 2)
        #expect(scheduler.slots[0].queued == 0)
        #expect(scheduler.slots[0].open == 2)
        scheduler.reportOpen(0, open: 1)
        #expect(scheduler.slots[0].open == 1)
    }

    @Test func aStalledWorkerIsSkippedUntilItReportsOrReceives() {
        var scheduler = readyScheduler(2)
        scheduler.dispatched(to: 0)
        scheduler.dispatched(to: 1)
        scheduler.takenBack(0, count: 1)
        scheduler.setStalled(0)
        #expect(scheduler.slots[0].queued == 0)
        #expect(scheduler.next() == 1)
        scheduler.dispatched(to: 1)
        #expect(scheduler.next() == 1, "slot 0 stays out, even when its turn comes")
        scheduler.reportOpen(0, open: 3)
        #expect(scheduler.next() == 0)
        scheduler.setStalled(0)
        scheduler.dispatched(to: 1)
        scheduler.received(0, count: 0)
        #expect(scheduler.next() == 1, "receiving nothing is no sign of life")
    }

    /// Connections are taken from a stalled worker only when another serves: during a stop none does.
    @Test func anotherServesOnlyWhenAnotherSlotIsReadyAndNotStalled() {
        var scheduler = Scheduler(bound: 4, slots: 3)
        scheduler.setReady(0, true)
        #expect(!scheduler.anotherServes(besides: 0), "alone")
        scheduler.setReady(1, true)
        #expect(scheduler.anotherServes(besides: 0))
        scheduler.setStalled(1)
        #expect(!scheduler.anotherServes(besides: 0), "a stalled worker serves nobody")
        scheduler.reportOpen(1, open: 0)
        #expect(scheduler.anotherServes(besides: 0))
        scheduler.setReady(1, false)
        scheduler.setReady(0, false)  // a stop: every worker drains
        #expect(!scheduler.anotherServes(besides: 0) && !scheduler.anotherServes(besides: 1))
    }
}
