import Testing

@testable import Switchboard

@Suite struct QueuedFramesTests {
    /// Three frames of 2, 1 and 3 connections, 20 bytes each, sent at 10, 20 and 30.
    func threeFrames() -> QueuedFrames {
        var queue = QueuedFrames(capacity: 8)
        queue.sent(2, end: 20, at: 10)
        queue.sent(1, end: 40, at: 20)
        queue.sent(3, end: 60, at: 30)
        return queue
    }

    @Test func framesAreNumberedByConnection() {
        let queue = threeFrames()
        #expect(queue.count == 3)
        #expect(queue.connections == 6)
        #expect(queue.nextSequence == 7)
        #expect(queue.oldest == .init(first: 1, count: 2, end: 20, sentAt: 10))
    }

    @Test func theBytesStillQueuedTellWhichFramesWereReceived() {
        var queue = threeFrames()
        #expect(queue.received(sent: 60, queued: 60) == 0, "nothing taken yet")
        #expect(queue.received(sent: 60, queued: 40) == 2, "the first frame was taken")
        // A message frame (16 bytes) sent after them: the queue holds the third frame and the message.
        #expect(queue.received(sent: 76, queued: 36) == 1)
        #expect(queue.received(sent: 76, queued: 16) == 3)
        #expect(queue.isEmpty && queue.connections == 0)
    }

    @Test func anAcknowledgementCoversEveryFrameUpToItsSequence() throws {
        var queue = threeFrames()
        #expect(try queue.received(upTo: 3) == 3)
        #expect(queue.oldest?.first == 4)
        #expect(try queue.received(upTo: 2) == 0, "an old acknowledgement removes nothing")
        #expect(throws: QueuedFrames.AckError.beyondSent(acknowledged: 7, lastSent: 6)) {
            try queue.received(upTo: 7)
        }
    }

    @Test func aFrameTakenBackRemovesItAndWhatIsOlder() {
        var queue = threeFrames()
        #expect(queue.takenBack(through: 3) == 3)
        #expect(queue.oldest?.first == 4)
        #expect(queue.takenBack(through: 4) == 3)
        #expect(queue.isEmpty)
    }

    @Test func theRingWrapsWithoutLosingOrder() throws {
        var queue = QueuedFrames(capacity: 2)
        var end: UInt64 = 0
        for round in 0..<10 {
            end += 20
            let first = queue.sent(1, end: end, at: UInt64(round))
            #expect(first == UInt64(round + 1))
            #expect(try queue.received(upTo: first) == 1)
        }
        #expect(queue.isEmpty)
        #expect(queue.nextSequence == 11)
    }
}
