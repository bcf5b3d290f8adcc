// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import Foundation
import SwitchboardTestSupport
import Testing

/// The master's upgrade in place in a program that embeds the library: `switchboard-hummingbird-example` runs its
/// master through `SwitchboardCluster` (signals forwarded by Dispatch sources, not the supervisor's own handlers), and
/// SIGUSR2 upgrades it the way it upgrades `switchboard`. Serialized so the 2-core machine is not oversubscribed.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct HummingbirdUpgradeTests {
    /// A new build renamed over the example's file, then SIGUSR2, under a client loop: the master keeps its PID and
    /// runs the new file, a rolling reload moves both workers onto it, not one request fails, and SIGTERM still stops
    /// the whole cluster gracefully afterwards (each new worker drains and its application services report).
    @Test func sigusr2UpgradesTheEmbeddedMasterInPlaceWithoutAFailedRequest() throws {
        let run = try ExampleUpgrade.run(example: SwitchboardProcess.sibling("switchboard-hummingbird-example"))
        try run.expectUpgradedInPlace()
        for worker in run.after {
            #expect(run.stderr.contains("worker \(worker) shut down gracefully after "), "\(run.stderr)")
        }
    }
}

#endif
