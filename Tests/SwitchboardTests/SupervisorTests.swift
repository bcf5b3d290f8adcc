import Testing

@testable import Switchboard

@Suite struct SupervisorTests {
    struct Greeting: Codable, Equatable {
        var text: String
        var count: Int
    }

    @Test func jsonMessagesRoundTrip() throws {
        let bytes = try Supervisor.encode(Greeting(text: "hi", count: 3))
        #expect(try WorkerRuntime.decode(Greeting.self, fromJSON: bytes) == Greeting(text: "hi", count: 3))
    }

    @Test func malformedJSONIsATypedError() {
        #expect(throws: SwitchboardError.self) { try WorkerRuntime.decode(Greeting.self, fromJSON: Array("{".utf8)) }
    }

    @Test func oversizedMessagesAreRefusedBeforeSending() {
        let big = [UInt8](repeating: 0, count: WireCodec.maxPayload + 1)
        #expect(throws: SwitchboardError(.usage, "message of 65537 bytes is over the 65536-byte limit: send less")) {
            try Supervisor.checkSize(big)
        }
        #expect(throws: Never.self) { try Supervisor.checkSize([UInt8](repeating: 0, count: WireCodec.maxPayload)) }
    }

    @Test func rollingReloadReplacesOneAtATimeGatedOnReadiness() {
        var plan = RollingReload(oldSlots: [0, 1])
        #expect(plan.start() == .spawnReplacement(old: 0))
        plan.replacementStarted(new: 2)
        #expect(plan.replacementReady(3) == [], "another slot's readiness does not move the plan")
        #expect(plan.replacementReady(2) == [.drain(old: 0), .spawnReplacement(old: 1)])
        plan.replacementStarted(new: 0)
        #expect(plan.replacementReady(0) == [.drain(old: 1), .finished])
        #expect(plan.replaced == 2)
    }

    @Test func aFailedReplacementAbortsAndLeavesTheRestAlone() {
        var plan = RollingReload(oldSlots: [0, 1, 2])
        _ = plan.start()
        plan.replacementStarted(new: 3)
        _ = plan.replacementReady(3)
        plan.replacementStarted(new: 4)
        #expect(plan.replacementFailed(4) == .aborted(new: 4))
        #expect(plan.remaining.isEmpty)
        #expect(plan.replaced == 1)
    }

    @Test func anOldWorkerThatDiesBeforeItsTurnIsNotReplacedTwice() {
        var plan = RollingReload(oldSlots: [0, 1])
        _ = plan.start()
        plan.oldWorkerLeft(1)
        plan.replacementStarted(new: 2)
        #expect(plan.replacementReady(2) == [.drain(old: 0), .finished])
    }

    @Test func anEmptyReloadFinishesAtOnce() {
        var plan = RollingReload(oldSlots: [])
        #expect(plan.start() == .finished)
    }
}
