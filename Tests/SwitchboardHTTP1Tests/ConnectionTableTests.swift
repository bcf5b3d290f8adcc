import Testing

@testable import SwitchboardHTTP1

/// The built-in worker's table of connections (issue 23): slots by descriptor, each worked on in place.
@Suite struct ConnectionTableTests {
    let limits = HTTP1Limits(headerTimeout: 1_000, keepAliveTimeout: 2_000, sendTimeout: 3_000)

    func entry(at now: UInt64 = 0) -> HTTP1ServerEntry {
        HTTP1ServerEntry(machine: HTTP1Connection(limits: limits, now: now), watching: nil)
    }

    @Test func insertGrowsToTheDescriptorAndCounts() {
        var table = ConnectionTable()
        #expect(table.count == 0 && table.end == 0)
        #expect(!table.contains(0) && !table.contains(-1))
        table.insert(9, entry())
        #expect(table.count == 1)
        #expect(table.end >= 10)
        #expect(table.contains(9))
        #expect(!table.contains(8) && !table.contains(10) && !table.contains(table.end))
        table.insert(3, entry())
        #expect(table.count == 2 && table.contains(3))
        // Far beyond the end: the table grows to hold it.
        table.insert(1_000, entry())
        #expect(table.count == 3 && table.contains(1_000) && table.end > 1_000)
    }

    @Test func removeTakesTheSlotOnceAndGivesTheEntryBack() {
        var table = ConnectionTable()
        table.insert(4, entry(at: 10))
        table.insert(5, entry(at: 20))
        #expect(table.withEntry(5) { $0.watching = 0x5 } != nil)

        let unwatched = table.remove(4)
        #expect(unwatched != nil && unwatched?.watching == nil)
        #expect(unwatched?.machine.deadline == 10 + limits.headerTimeout, "not the entry of descriptor 4")
        let watched = table.remove(5)
        #expect(watched?.watching == 0x5 && watched?.machine.deadline == 20 + limits.headerTimeout)
        #expect(table.count == 0 && !table.contains(4) && !table.contains(5))

        // A second removal, or one of a descriptor never there, finds nothing and leaves the count alone.
        #expect(table.remove(5) == nil)
        #expect(table.remove(77) == nil)
        #expect(table.count == 0)

        // The slot is free for the next connection with the same number.
        table.insert(4, entry())
        #expect(table.count == 1 && table.contains(4))
    }

    @Test func withEntryChangesTheSlotItselfAndSkipsEmptyOnes() {
        var table = ConnectionTable()
        table.insert(6, entry(at: 100))
        let before = table.withEntry(6) { $0.machine.deadline }
        #expect(before == 100 + limits.headerTimeout)

        // A change made in the body is the table's: once the client closed, the machine has no deadline.
        #expect(table.withEntry(6) { $0.machine.receivedEnd(now: 500) } != nil)
        let after = table.withEntry(6) { $0.machine.deadline }
        #expect(after == .max, "the change was made on a copy (deadline \(String(describing: after)))")
        #expect(table.withEntry(6) { entry -> UInt32? in
            entry.watching = 0x1
            return entry.watching
        } == 0x1)
        #expect(table.remove(6)?.watching == 0x1)

        var ran = false
        #expect(table.withEntry(6) { _ in ran = true } == nil)
        #expect(table.withEntry(-3) { _ in ran = true } == nil)
        #expect(!ran)
    }
}
