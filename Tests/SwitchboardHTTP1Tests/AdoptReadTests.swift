import Testing

@testable import SwitchboardHTTP1

/// When the engine reads a connection as soon as it adopts it (issue 23): while reads at adoption usually find the
/// request (a deferring listener), always; once they usually find nothing (the default listener), one adoption in
/// eight, and every adoption again once those samples find data.
@Suite struct AdoptReadTests {
    /// Adopts `count` connections whose reads at adoption find data when `found` says so; returns which were read.
    func adopt(_ policy: inout AdoptRead, _ count: Int, found: Bool) -> [Bool] {
        (0..<count).map { _ in
            let read = policy.readNow()
            if read { policy.record(found: found) }
            return read
        }
    }

    @Test func connectionsThatComeWithTheirRequestAreAlwaysReadAtOnce() {
        var policy = AdoptRead()
        #expect(adopt(&policy, 1000, found: true).allSatisfy { $0 })
    }

    @Test func connectionsThatComeBeforeTheirRequestWaitInEpollButOneInEight() {
        var policy = AdoptRead()
        let reads = adopt(&policy, 806, found: false)
        // The first reads find nothing; after six of them the score is below a half and reading stops.
        #expect(reads.prefix(6).allSatisfy { $0 })
        #expect(!reads[6])
        let later = reads.dropFirst(6)
        #expect(later.filter { $0 }.count == 100, "one in \(AdoptRead.sampleEvery) of 800: \(later.filter { $0 }.count)")
    }

    @Test func aListenerThatStartsDeferringIsReadAtOnceAgainAfterAFewSamples() {
        var policy = AdoptRead()
        _ = adopt(&policy, 200, found: false)
        let reads = adopt(&policy, 200, found: true)
        // Six sampled reads that found data (at most 48 adoptions) bring the score back above a half.
        let everyTimeFrom = reads.indices.first { start in reads[start...].allSatisfy { $0 } }
        #expect(everyTimeFrom.map { $0 <= 6 * AdoptRead.sampleEvery } == true, "\(String(describing: everyTimeFrom))")
    }
}
