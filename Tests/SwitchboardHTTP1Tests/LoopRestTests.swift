import Testing

@testable import SwitchboardHTTP1

/// When the engine's loop yields the CPU (issue 23): after 100 µs without resting, having answered a kept-alive
/// connection meanwhile, but not right after taking new connections.
@Suite struct LoopRestTests {
    let us: UInt64 = 1_000
    let start: UInt64 = 1_000_000_000

    /// Runs iterations of `length` µs back to back, none blocking, from `start`; returns the indices that yielded.
    /// Every iteration answers a kept-alive connection unless `keptAlive` says which do.
    func yields(
        _ rest: inout LoopRest, iterations: Int, length: UInt64, adopting: Set<Int> = [], keptAlive: Set<Int>? = nil
    ) -> [Int] {
        var time = start
        var out: [Int] = []
        for index in 0..<iterations {
            let woke = time
            time += length * us
            if rest.iterationEnded(
                blocked: false, woke: woke, end: time, adopted: adopting.contains(index),
                answeredKeptAlive: keptAlive?.contains(index) ?? true)
            {
                out.append(index)
                rest.yielded(at: time)
            }
        }
        return out
    }

    @Test func aLoopThatNeverBlocksYieldsEvery100Microseconds() {
        var rest = LoopRest(yieldAfter: 100 * us)
        _ = rest.iterationEnded(
            blocked: true, woke: start, end: start, adopted: false, answeredKeptAlive: false)
        // 30 µs iterations: the fourth ends 120 µs after the rest, and so on after each yield.
        let yielded = yields(&rest, iterations: 12, length: 30)
        #expect(yielded == [3, 7, 11])
    }

    @Test func aBlockingWaitIsARest() {
        var rest = LoopRest(yieldAfter: 100 * us)
        var time = start
        for _ in 0..<20 {
            let woke = time + 25 * us  // blocked 25 µs
            time = woke + 30 * us
            let yield = rest.iterationEnded(
                blocked: true, woke: woke, end: time, adopted: false, answeredKeptAlive: true)
            #expect(!yield)
        }
        #expect(rest.lastRest == time - 30 * us)
    }

    @Test func anIterationThatAdoptedConnectionsDoesNotYield() {
        var rest = LoopRest(yieldAfter: 100 * us)
        _ = rest.iterationEnded(
            blocked: true, woke: start, end: start, adopted: false, answeredKeptAlive: false)
        let adoptingEveryIteration = yields(&rest, iterations: 50, length: 60, adopting: Set(0..<50))
        #expect(adoptingEveryIteration.isEmpty)
        // Every other iteration adopting: only the others yield, once 100 µs have passed since the last rest.
        var other = LoopRest(yieldAfter: 100 * us)
        _ = other.iterationEnded(
            blocked: true, woke: start, end: start, adopted: false, answeredKeptAlive: false)
        let everyOther = yields(&other, iterations: 8, length: 60, adopting: Set(stride(from: 0, to: 8, by: 2)))
        #expect(everyOther == [1, 3, 5, 7])
    }

    /// Under a load of one request per connection nothing is answered twice on one connection: the loop keeps the
    /// CPU however long it runs.
    @Test func aLoopThatAnswersOnlyNewConnectionsNeverYields() {
        var rest = LoopRest(yieldAfter: 100 * us)
        _ = rest.iterationEnded(
            blocked: true, woke: start, end: start, adopted: false, answeredKeptAlive: false)
        let yielded = yields(&rest, iterations: 40, length: 30, keptAlive: [])
        #expect(yielded.isEmpty)
    }

    /// One kept-alive answer anywhere in the run counts (the 100 µs are from the rest, not from that answer); a
    /// rest, blocking or a yield, forgets it.
    @Test func aKeptAliveAnswerCountsUntilTheNextRest() {
        var rest = LoopRest(yieldAfter: 100 * us)
        _ = rest.iterationEnded(
            blocked: true, woke: start, end: start, adopted: false, answeredKeptAlive: false)
        // 30 µs iterations, only the second answers a kept-alive connection: the fourth is 120 µs after the rest and
        // yields; after the yield none does again.
        #expect(yields(&rest, iterations: 12, length: 30, keptAlive: [1]) == [3])
        // A kept-alive answer just before a blocking wait does not count after it; one in the blocking iteration's
        // own work does.
        var other = LoopRest(yieldAfter: 100 * us)
        _ = other.iterationEnded(
            blocked: false, woke: start, end: start + 10 * us, adopted: false, answeredKeptAlive: true)
        _ = other.iterationEnded(
            blocked: true, woke: start + 50 * us, end: start + 60 * us, adopted: false, answeredKeptAlive: false)
        #expect(!other.keptAliveSinceRest)
        _ = other.iterationEnded(
            blocked: true, woke: start + 90 * us, end: start + 95 * us, adopted: false, answeredKeptAlive: true)
        #expect(other.keptAliveSinceRest)
        let yield = other.iterationEnded(
            blocked: false, woke: start + 95 * us, end: start + 200 * us, adopted: false, answeredKeptAlive: false)
        #expect(yield)
    }

    @Test func zeroNeverYields() {
        var rest = LoopRest(yieldAfter: 0)
        let yielded = yields(&rest, iterations: 100, length: 500)
        #expect(yielded.isEmpty)
    }

    /// The calls a wait makes, in order: `poll(ms)` and `yield`.
    func calls(timeout: Int, yieldingFirst: Bool, yields: Int = 1, ready: [Int]) -> (count: Int, calls: [String]) {
        var calls: [String] = []
        var ready = ready
        let count = LoopRest.wait(
            timeout: timeout, yieldingFirst: yieldingFirst, yields: yields,
            poll: { calls.append("poll(\($0))"); return ready.removeFirst() },
            yield: { calls.append("yield") })
        return (count, calls)
    }

    @Test func aWaitThatYieldsFirstLooksFirstAndYieldsOnlyWhenNothingIsReady() {
        // Nothing ready: a look, the yield, then the wait.
        #expect(calls(timeout: 40, yieldingFirst: true, ready: [0, 3]) == (3, ["poll(0)", "yield", "poll(40)"]))
        // Something ready at the look: no yield, no second call.
        #expect(calls(timeout: 40, yieldingFirst: true, ready: [2]) == (2, ["poll(0)"]))
        // Not yielding first: the wait alone.
        #expect(calls(timeout: 40, yieldingFirst: false, ready: [5]) == (5, ["poll(40)"]))
        #expect(calls(timeout: -1, yieldingFirst: false, ready: [0]) == (0, ["poll(-1)"]))
    }

    @Test func aWaitYieldsUpToItsBudgetWhileNothingIsReady() {
        // Nothing ready at any look: every yield of the budget, then the wait.
        #expect(
            calls(timeout: 40, yieldingFirst: true, yields: 3, ready: [0, 0, 0, 5])
                == (5, ["poll(0)", "yield", "poll(0)", "yield", "poll(0)", "yield", "poll(40)"]))
        // Events at the third look: no third yield, no wait.
        #expect(
            calls(timeout: 40, yieldingFirst: true, yields: 3, ready: [0, 0, 2])
                == (2, ["poll(0)", "yield", "poll(0)", "yield", "poll(0)"]))
        // A budget below one is one.
        #expect(
            calls(timeout: 40, yieldingFirst: true, yields: 0, ready: [0, 1]) == (1, ["poll(0)", "yield", "poll(40)"]))
        // Not yielding first, the budget does not matter.
        #expect(calls(timeout: 40, yieldingFirst: false, yields: 4, ready: [0]) == (0, ["poll(40)"]))
    }

    /// Up to the most while yielding finds the next requests; one after a wait that blocked anyway, so a light load
    /// (every wait blocks) yields once per wait, as before the budget.
    @Test func theYieldBudgetGrowsWhileYieldingFindsEventsAndFallsToOneAfterABlockedWait() {
        var rest = LoopRest(yieldAfter: 100 * us, yieldBeforeWaiting: true)
        #expect(rest.maxYieldsBeforeWaiting == LoopRest.defaultMaxYieldsBeforeWaiting)
        #expect(rest.yieldBudget == 1)
        rest.waitedAfterYielding(blocked: false)
        #expect(rest.yieldBudget == LoopRest.defaultMaxYieldsBeforeWaiting)
        rest.waitedAfterYielding(blocked: false)
        #expect(rest.yieldBudget == LoopRest.defaultMaxYieldsBeforeWaiting)
        rest.waitedAfterYielding(blocked: true)
        #expect(rest.yieldBudget == 1)

        var once = LoopRest(yieldAfter: 100 * us, yieldBeforeWaiting: true, maxYieldsBeforeWaiting: 1)
        once.waitedAfterYielding(blocked: false)
        #expect(once.yieldBudget == 1)
        var none = LoopRest(yieldAfter: 100 * us, yieldBeforeWaiting: true, maxYieldsBeforeWaiting: 0)
        #expect(none.maxYieldsBeforeWaiting == 1)
        none.waitedAfterYielding(blocked: false)
        #expect(none.yieldBudget == 1)
    }

    /// Only where it is told to (workers outnumber their CPUs), only after a kept-alive answer since the last rest,
    /// and not before a wait that would not block anyway (a timer is due).
    @Test func whenTheLoopYieldsBeforeWaiting() {
        var rest = LoopRest(yieldAfter: 100 * us, yieldBeforeWaiting: true)
        _ = rest.iterationEnded(
            blocked: true, woke: start, end: start + 10 * us, adopted: false, answeredKeptAlive: false)
        #expect(!rest.yieldsBeforeWaiting(timeout: 40))  // only new connections answered
        _ = rest.iterationEnded(
            blocked: false, woke: start + 10 * us, end: start + 20 * us, adopted: true, answeredKeptAlive: true)
        #expect(rest.yieldsBeforeWaiting(timeout: 40))
        #expect(rest.yieldsBeforeWaiting(timeout: -1))
        #expect(!rest.yieldsBeforeWaiting(timeout: 0))
        rest.yielded(at: start + 30 * us)  // a rest forgets the answer
        #expect(!rest.yieldsBeforeWaiting(timeout: 40))
        _ = rest.iterationEnded(
            blocked: true, woke: start + 60 * us, end: start + 70 * us, adopted: false, answeredKeptAlive: true)
        #expect(rest.yieldsBeforeWaiting(timeout: 40))

        var own = LoopRest(yieldAfter: 100 * us)
        _ = own.iterationEnded(
            blocked: true, woke: start, end: start + 10 * us, adopted: false, answeredKeptAlive: true)
        #expect(own.keptAliveSinceRest)
        #expect(!own.yieldsBeforeWaiting(timeout: 40))
    }

    @Test func whatCountsAsBlocking() {
        #expect(LoopRest.blocked(waitStart: start, woke: start + 5 * us, count: 0))  // a timeout
        #expect(!LoopRest.blocked(waitStart: start, woke: start + 5 * us, count: 3))
        #expect(LoopRest.blocked(waitStart: start, woke: start + 25 * us, count: 3))
    }
}
