import Testing

@testable import SwitchboardHTTP1

/// When the engine's loop yields the CPU (issue 23): after 100 µs without resting, but not within 100 µs of taking
/// new connections.
@Suite struct LoopRestTests {
    let us: UInt64 = 1_000
    let start: UInt64 = 1_000_000_000

    /// Runs iterations of `length` µs back to back, none blocking, from `start`; returns the indices that yielded.
    func yields(_ rest: inout LoopRest, iterations: Int, length: UInt64, adopting: Set<Int> = []) -> [Int] {
        var time = start
        var out: [Int] = []
        for index in 0..<iterations {
            let woke = time
            time += length * us
            if rest.iterationEnded(blocked: false, woke: woke, end: time, adopted: adopting.contains(index)) {
                out.append(index)
                rest.yielded(at: time)
            }
        }
        return out
    }

    @Test func aLoopThatNeverBlocksYieldsEvery100Microseconds() {
        var rest = LoopRest(yieldAfter: 100 * us)
        _ = rest.iterationEnded(blocked: true, woke: start, end: start, adopted: false)
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
            let yield = rest.iterationEnded(blocked: true, woke: woke, end: time, adopted: false)
            #expect(!yield)
        }
        #expect(rest.lastRest == time - 30 * us)
    }

    @Test func noYieldWithin100MicrosecondsOfTakingConnections() {
        var rest = LoopRest(yieldAfter: 100 * us)
        _ = rest.iterationEnded(blocked: true, woke: start, end: start, adopted: false)
        // A 150 µs iteration that adopted a burst, then short ones without adoptions: the first yield comes once
        // 100 µs have passed since the adopting iteration ended, not right after it.
        var time = start + 150 * us
        let yieldAtOnce = rest.iterationEnded(blocked: false, woke: start, end: time, adopted: true)
        #expect(!yieldAtOnce)
        var yieldedAfter: UInt64?
        for _ in 0..<10 {
            let woke = time
            time += 30 * us
            if rest.iterationEnded(blocked: false, woke: woke, end: time, adopted: false) {
                yieldedAfter = time - (start + 150 * us)
                break
            }
        }
        #expect(yieldedAfter == 120 * us)
    }

    @Test func connectionsThatKeepComingNeverYield() {
        var rest = LoopRest(yieldAfter: 100 * us)
        _ = rest.iterationEnded(blocked: true, woke: start, end: start, adopted: false)
        let everyIteration = yields(&rest, iterations: 50, length: 60, adopting: Set(0..<50))
        #expect(everyIteration.isEmpty)
        // Every other iteration adopting: 60 µs between adoptions is still within the window.
        let everyOther = yields(&rest, iterations: 50, length: 60, adopting: Set(stride(from: 0, to: 50, by: 2)))
        #expect(everyOther.isEmpty)
    }

    @Test func zeroNeverYields() {
        var rest = LoopRest(yieldAfter: 0)
        let yielded = yields(&rest, iterations: 100, length: 500)
        #expect(yielded.isEmpty)
    }

    @Test func whatCountsAsBlocking() {
        #expect(LoopRest.blocked(waitStart: start, woke: start + 5 * us, count: 0))  // a timeout
        #expect(!LoopRest.blocked(waitStart: start, woke: start + 5 * us, count: 3))
        #expect(LoopRest.blocked(waitStart: start, woke: start + 25 * us, count: 3))
    }
}
