import Testing

@testable import Switchboard

@Suite struct InFlightRingTests {
    @Test func cumulativeAckReleasesInOrder() throws {
        var ring = InFlightRing(capacity: 4)
        #expect(ring.push(10) == 1)
        #expect(ring.push(11) == 2)
        #expect(ring.push(12) == 3)
        var released: [CInt] = []
        #expect(try ring.acknowledge(upTo: 2) { released.append($0) } == 2)
        #expect(released == [10, 11])
        #expect(ring.count == 1)
        #expect(ring.firstSequence == 3)
    }

    @Test func staleAckReleasesNothing() throws {
        var ring = InFlightRing(capacity: 4)
        _ = ring.push(10)
        _ = ring.push(11)
        _ = try ring.acknowledge(upTo: 2) { _ in }
        _ = ring.push(12)
        #expect(try ring.acknowledge(upTo: 1) { _ in Issue.record("nothing to release") } == 0)
        #expect(ring.count == 1)
    }

    @Test func ackBeyondWhatWasSentIsAnError() {
        var ring = InFlightRing(capacity: 4)
        _ = ring.push(10)
        #expect(throws: InFlightRing.AckError.beyondSent(acknowledged: 2, lastSent: 1)) {
            try ring.acknowledge(upTo: 2) { _ in }
        }
        #expect(ring.count == 1)
    }

    @Test func wrapsAroundWithoutLosingOrder() throws {
        var ring = InFlightRing(capacity: 3)
        var released: [CInt] = []
        for fd in CInt(0)..<10 {
            let sequence = ring.push(fd)
            if ring.isFull { _ = try ring.acknowledge(upTo: sequence - 1) { released.append($0) } }
        }
        #expect(released == Array(0..<8))
        #expect(ring.removeAll() == [8, 9])
        #expect(ring.count == 0)
        #expect(ring.nextSequence == 11)
    }

    @Test func pendingQueueIsFirstInFirstOut() {
        var queue = PendingQueue()
        queue.append(contentsOf: [1, 2])
        queue.append(3)
        #expect(queue.count == 3)
        #expect(queue.removeFirst() == 1)
        #expect(queue.count == 2)
        #expect(queue.removeAll() == [2, 3])
        #expect(queue.isEmpty)
    }

    @Test func refusedConnectionsAreTakenBackOnlyFromTheFront() throws {
        var ring = InFlightRing(capacity: 8)
        for fd in 10..<15 { _ = ring.push(CInt(fd)) }  // sequences 1...5
        _ = try ring.acknowledge(upTo: 2) { _ in }
        #expect(ring.takeBack(from: 4, count: 1) == nil)  // 3 is older: not a refusal the worker could make
        #expect(ring.takeBack(from: 3, count: 4) == nil)  // only 3 are held
        #expect(ring.takeBack(from: 3, count: 2) == [12, 13])
        #expect(ring.firstSequence == 5)
        #expect(ring.count == 1)
    }
}
