#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a master hands its next image when it upgrades in place (``Master/upgrade(masterOnly:)``): its state as JSON
/// in a memfd, and the descriptor numbers of everything that must survive the exec (the listener, each worker's
/// channel, kept end and pidfd, the connections waiting in `pending`, the health and control listeners).
///
/// The image that execs clears close-on-exec on exactly those descriptors (``descriptors``); everything else the
/// master holds (its epoll set, eventfds, health probes, control clients) closes at the exec. The new image reads the
/// memfd named by ``variable``, checks the format and that every descriptor is open, and adopts each part into its
/// owner; if it cannot, it execs the old image back through the descriptor named by ``rollbackVariable``, which
/// adopts the same state again.
package struct Handover: Codable {
    /// The hand-over format this build writes and reads. A pre-check refuses a build that speaks another.
    package static let format = 1
    /// The memfd holding the hand-over, in the new image's environment.
    package static let variable = "SWITCHBOARD_HANDOVER_FD"
    /// A descriptor of the image that handed over (`/proc/self/exe` before the exec), to exec back on failure.
    package static let rollbackVariable = "SWITCHBOARD_HANDOVER_ROLLBACK_FD"
    /// Set by a new image that could not adopt, for the old one it execs back: why.
    package static let failedVariable = "SWITCHBOARD_HANDOVER_FAILED"
    /// Set for the pre-check: the binary answers ``checkAnswer`` and exits instead of starting a master.
    package static let checkVariable = "SWITCHBOARD_UPGRADE_CHECK"
    /// Test hook: a new image whose file has this inode refuses to adopt (and rolls back).
    package static let refuseVariable = "SWITCHBOARD_TEST_REFUSE_ADOPTION_INODE"
    /// The variables of the hand-over, never passed to workers or kept across a second upgrade.
    package static let variables = [variable, rollbackVariable, failedVariable, checkVariable, LaunchPath.handedVariable]

    /// The pre-check's answer: this build, the channel protocol it speaks and the hand-over format it reads.
    package static var checkAnswer: String {
        "switchboard-upgrade-check build=\(Cluster.build) wire=\(WireCodec.version) handover=\(format)"
    }

    /// The upgrade in progress.
    package struct Upgrade: Codable, Equatable {
        /// Its number in this master's life (``MasterStatus/Upgrade/sequence``).
        var sequence: Int
        /// Skip the rolling reload of the workers afterwards.
        var masterOnly: Bool
        /// When it began (monotonic nanoseconds: the clock goes on across the exec).
        var startedAt: UInt64
        /// The build that handed over.
        var fromBuild: String
        /// The file executed.
        var path: String
    }

    var format: Int
    var upgrade: Upgrade
    /// The dispatch mode (a new image configured for another refuses to adopt: the listener is that mode's).
    var mode: String
    var port: Int
    /// When the master first started (monotonic nanoseconds): uptime goes on.
    var startedAt: UInt64
    var orphansReaped: UInt64
    /// The outcome of the previous upgrade, if any, for status.
    var lastUpgrade: MasterStatus.Upgrade?
    var machine: SupervisorMachine.Snapshot
    var dispatcher: ConnectionDispatcher.Snapshot
    var processes: WorkerProcesses.Snapshot
    var recycler: WorkerRecycler.Snapshot
    var metrics: MasterMetrics.Totals
    var health: HealthServer.Handed
    var control: ControlServer.Handed?

    /// Every descriptor that must survive the exec.
    var descriptors: [CInt] {
        dispatcher.descriptors + processes.descriptors + health.descriptors + (control.map { [$0.fd] } ?? [])
    }

    func encoded() throws(SwitchboardError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(self))
        } catch {
            throw SwitchboardError(.system, "cannot write the hand-over: \(error)")
        }
    }

    static func decode(_ bytes: [UInt8]) throws(SwitchboardError) -> Handover {
        do {
            return try JSONDecoder().decode(Handover.self, from: Data(bytes))
        } catch {
            throw SwitchboardError(.system, "the hand-over cannot be read by this build: \(error)")
        }
    }

    /// What the environment says this image was handed, if anything.
    package struct Inherited {
        /// The memfd holding the hand-over.
        var memfd: CInt
        /// The old image, to exec back (nil in an image that was itself execed back: there is nothing to go back to).
        var rollback: CInt?
        /// Why the new image could not adopt, when this is the old image execed back.
        var failed: String?
    }

    /// The hand-over in this process's environment, if it was execed by an upgrade.
    static func inherited() -> Inherited? {
        guard let text = Syscalls.environment(variable), let memfd = CInt(text), memfd >= 0 else { return nil }
        return Inherited(
            memfd: memfd, rollback: Syscalls.environment(rollbackVariable).flatMap { CInt($0) },
            failed: Syscalls.environment(failedVariable))
    }

    /// `environment` without the hand-over's variables, plus `extra`.
    static func environment(_ environment: [String], adding extra: [String: String]) -> [String] {
        environment.filter { entry in !variables.contains { entry.hasPrefix($0 + "=") } }
            + extra.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}
