import Testing

@testable import Switchboard

/// The scheduler is a pure selector over lane views: these tests give it plain values.
@Suite struct SchedulerTests {
    struct Lane: SchedulingState {
        var ready = true
        var blocked = false
        var stalled = false
        var queued = 0
        var open = 0
    }

    /// Lanes and the scheduler, with the moves the dispatcher makes.
    struct Model {
        var lanes: [Lane]
        var scheduler: Scheduler

        init(
            _ count: Int, bound: Int = 4, capacity: Int = .max, inFlightBudget: Int = .max,
            policy: Scheduler.Policy = .roundRobin
        ) {
            lanes = Array(repeating: Lane(), count: count)
            scheduler = Scheduler(policy: policy, bound: bound, capacity: capacity, inFlightBudget: inFlightBudget)
        }

        func next() -> Int? { scheduler.next(lanes) }
        var hasCapacity: Bool { scheduler.hasCapacity(lanes) }

        mutating func dispatched(to lane: Int) {
            lanes[lane].queued += 1
            scheduler.dispatched(to: lane, of: lanes.count)
        }

        mutating func received(_ lane: Int, count: Int) {
            lanes[lane].queued -= count
            lanes[lane].open += count
        }

        /// Sends one connection that the worker receives at once, returning the lane.
        mutating func dispatchAndAck() -> Int? {
            guard let lane = next() else { return nil }
            dispatched(to: lane)
            received(lane, count: 1)
            return lane
        }
    }

    @Test func rotatesStrictly() {
        var model = Model(3)
        let order = (0..<7).compactMap { _ in model.dispatchAndAck() }
        #expect(order == [0, 1, 2, 0, 1, 2, 0])
    }

    /// Each queue gets an equal share of the descriptors the master may have in flight (its user's limit): workers
    /// that stop receiving fill their shares, never the whole budget, so the one still receiving is still sent to.
    @Test(arguments: [Scheduler.Policy.roundRobin, .leastConnections])
    func stoppedQueuesFillOnlyTheirShareOfTheInFlightBudget(policy: Scheduler.Policy) {
        var model = Model(4, bound: 1024, inFlightBudget: 100, policy: policy)
        var served = 0
        for _ in 0..<400 {
            guard let lane = model.next() else { break }
            model.dispatched(to: lane)
            if lane == 0 {  // lanes 1-3 never receive
                model.received(0, count: 1)
                served += 1
            }
        }
        #expect(model.lanes[1...].map(\.queued) == [25, 25, 25])
        #expect(served == 400 - 75, "the receiving worker got the rest")
        #expect(model.lanes.map(\.queued).reduce(0, +) <= 100, "never more in flight than the budget")
    }

    @Test func theQueueBoundIsTheSmallerOfTheBoundAndTheShare() {
        #expect(Scheduler(bound: 16).queueBound(lanes: 4) == 16, "no budget")
        #expect(Scheduler(bound: 16, inFlightBudget: 20_000).queueBound(lanes: 4) == 16)
        #expect(Scheduler(bound: 1024, inFlightBudget: 100).queueBound(lanes: 4) == 25)
        #expect(Scheduler(bound: 1024, inFlightBudget: 100).queueBound(lanes: 5) == 20, "a reload's extra worker")
        #expect(Scheduler(bound: 16, inFlightBudget: 3).queueBound(lanes: 4) == 1, "at least one")
        #expect(Scheduler(bound: 16, inFlightBudget: 3).queueBound(lanes: 0) == 3)
    }

    @Test func evenSplitForKConnectionsOverNWorkers() {
        var model = Model(4)
        var counts = [0, 0, 0, 0]
        for _ in 0..<1001 { counts[model.dispatchAndAck()!] += 1 }
        #expect(counts.max()! - counts.min()! <= 1)
        #expect(counts.reduce(0, +) == 1001)
    }

    @Test func nextDoesNotAdvanceUntilDispatched() {
        let model = Model(3)
        #expect(model.next() == 0)
        #expect(model.next() == 0)
    }

    @Test func workerAtItsBoundIsSkippedAndKeepsItsTurn() {
        var model = Model(3, bound: 1)
        model.dispatched(to: 0)  // lane 0 is now at its bound, nothing received
        #expect(model.next() == 1)
        model.dispatched(to: 1)
        model.received(1, count: 1)
        #expect(model.next() == 2)
        model.dispatched(to: 2)
        model.received(2, count: 1)
        #expect(model.next() == 1, "lane 0 still at its bound is skipped")
        model.received(0, count: 1)
        #expect(model.next() == 0, "lane 0 gets its turn back in rotation order")
    }

    @Test func everyWorkerAtItsBoundMeansNoCapacity() {
        var model = Model(2, bound: 2)
        for _ in 0..<4 { model.dispatched(to: model.next()!) }
        #expect(model.next() == nil)
        #expect(!model.hasCapacity)
        model.received(1, count: 2)
        #expect(model.next() == 1)
        #expect(model.hasCapacity)
    }

    @Test func blockedUnreadyAndStalledWorkersAreSkipped() {
        var model = Model(4)
        model.lanes[0].blocked = true
        model.lanes[1].ready = false
        model.lanes[2].stalled = true
        #expect(model.next() == 3)
        model.lanes[0].blocked = false
        #expect(model.next() == 0)
    }

    @Test func noReadyWorkerMeansNoCapacity() {
        var model = Model(2)
        model.lanes[0].ready = false
        model.lanes[1].ready = false
        #expect(model.next() == nil)
        #expect(!model.hasCapacity)
        #expect(Scheduler(bound: 1).next([Lane]()) == nil)
    }

    @Test func leastConnectionsPicksTheFewestOpenPlusQueued() {
        var model = Model(3, bound: 8, policy: .leastConnections)
        model.lanes[0].open = 5
        model.lanes[1].open = 1
        model.lanes[2].open = 2
        #expect(model.next() == 1)
        model.dispatched(to: 1)
        model.dispatched(to: 1)
        #expect(model.next() == 2, "lane 1 now has 1 open + 2 queued")
    }

    @Test func leastConnectionsBreaksTiesByRotation() {
        var model = Model(3, bound: 8, policy: .leastConnections)
        let order = (0..<6).compactMap { _ in model.dispatchAndAck() }
        #expect(order == [0, 1, 2, 0, 1, 2])
    }

    @Test func aWorkerAtItsConnectionCapIsSkippedUntilItHasRoom() {
        var model = Model(2, bound: 8, capacity: 2)
        model.dispatched(to: 0)
        model.received(0, count: 1)
        model.dispatched(to: 1)
        model.received(1, count: 1)
        model.dispatched(to: 0)  // open 1 + queued 1 = the cap
        #expect(model.next() == 1)
        model.dispatched(to: 1)
        #expect(model.next() == nil)
        #expect(!model.hasCapacity)
        model.lanes[1].open = 0  // a heartbeat: it closed one
        #expect(model.next() == 1)
    }

    /// Connections are taken from a stalled worker only when another serves: during a stop none does.
    @Test func anotherServesOnlyWhenAnotherLaneIsReadyAndNotStalled() {
        var model = Model(3)
        model.lanes[1].ready = false
        model.lanes[2].ready = false
        let scheduler = model.scheduler
        #expect(!scheduler.anotherServes(besides: 0, in: model.lanes), "alone")
        model.lanes[1].ready = true
        #expect(scheduler.anotherServes(besides: 0, in: model.lanes))
        model.lanes[1].stalled = true
        #expect(!scheduler.anotherServes(besides: 0, in: model.lanes), "a stalled worker serves nobody")
        model.lanes[1].stalled = false
        #expect(scheduler.anotherServes(besides: 0, in: model.lanes))
        model.lanes[1].ready = false
        model.lanes[0].ready = false  // a stop: every worker drains
        #expect(!scheduler.anotherServes(besides: 0, in: model.lanes) && !scheduler.anotherServes(besides: 1, in: model.lanes))
    }
}
