// Built only with the package trait `Vapor` (`swift build --traits Vapor`).
#if Vapor
import Foundation
import SwitchboardTestSupport
import Testing

/// The master's upgrade in place in `switchboard-vapor-example` (its master runs through `SwitchboardCluster` and
/// `ClusterMain`, as in the Hummingbird example; its pre-check must answer before Vapor builds anything). Serialized
/// so the 2-core machine is not oversubscribed.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct VaporUpgradeTests {
    /// A new build renamed over the example's file, then SIGUSR2, under a client loop: the same PID runs the new file,
    /// a rolling reload moves both workers onto it, not one request fails, and SIGTERM stops the cluster afterwards.
    @Test func sigusr2UpgradesTheVaporMasterInPlaceWithoutAFailedRequest() throws {
        let run = try ExampleUpgrade.run(example: VaporClusterTests.example)
        try run.expectUpgradedInPlace()
    }
}
#endif
