import Dispatch
import Foundation
import Logging
import Switchboard

/// What the framework adapters (`SwitchboardHummingbird`, `SwitchboardVapor`) do alike in the process the user
/// starts: run the master and turn its signals into supervisor commands, and end with one line.
package enum ClusterMain {
    /// Runs the master until it stops, then exits with its exit code. Prints
    /// `listening on <host>:<port> with <n> workers (<mode>)` on standard output once every worker is ready.
    package static func runMaster(configuration: Configuration, logger: Logger) async -> Never {
        let supervisor: Supervisor
        do {
            // The signals reach the supervisor through the dispatch sources of forwardSignals, not its own handlers.
            supervisor = try Supervisor(configuration: configuration, logger: logger, handleSignals: false)
        } catch {
            fail(error.message, code: error.code.exitCode)
        }
        let signalSources = forwardSignals(to: supervisor)
        let workers = configuration.workers
        let mode = configuration.mode
        supervisor.onListening { host, port in
            writeLine("listening on \(host):\(port) with \(workers) workers (\(mode))", to: .standardOutput)
        }
        // Supervisor.run() blocks: give it a thread of its own rather than one of the concurrency pool's.
        let code = await withCheckedContinuation { (done: CheckedContinuation<Int32, Never>) in
            Thread.detachNewThread {
                do throws(SwitchboardError) {
                    done.resume(returning: try supervisor.run())
                } catch {
                    writeLine("\(programName): \(error.message)", to: .standardError)
                    done.resume(returning: error.code.exitCode)
                }
            }
        }
        withExtendedLifetime(signalSources) {}
        exit(code)
    }

    /// Turns the master's signals into supervisor commands, like the `switchboard` command does: TERM and INT stop
    /// gracefully (a second one stops at once), QUIT stops gracefully, HUP reloads, TTIN and TTOU add and remove a
    /// worker, USR2 upgrades the master in place (``Supervisor/upgrade(masterOnly:)``).
    private static func forwardSignals(to supervisor: Supervisor) -> [any DispatchSourceSignal] {
        let actions: [(CInt, @Sendable (UInt) -> Void)] = [
            (SIGTERM, { count in for _ in 0..<min(count, 2) { supervisor.stop() } }),
            (SIGINT, { count in for _ in 0..<min(count, 2) { supervisor.stop() } }),
            (SIGQUIT, { _ in supervisor.stop() }),
            (SIGHUP, { _ in supervisor.reload() }),
            (SIGTTIN, { count in for _ in 0..<count { supervisor.addWorker() } }),
            (SIGTTOU, { count in for _ in 0..<count { supervisor.removeWorker() } }),
            (SIGUSR2, { _ in supervisor.upgrade() }),
        ]
        return actions.map { signal, action in
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            source.setEventHandler { action(source.data) }
            source.resume()
            return source
        }
    }

    /// The executable's name, for one-line errors.
    package static var programName: String {
        CommandLine.arguments.first.flatMap { $0.split(separator: "/").last.map(String.init) } ?? "switchboard"
    }

    /// Prints `<program>: <message>` on standard error and exits with `code`.
    package static func fail(_ message: String, code: Int32) -> Never {
        writeLine("\(programName): \(message)", to: .standardError)
        exit(code)
    }

    package static func writeLine(_ text: String, to handle: FileHandle) {
        handle.write(Data((text + "\n").utf8))
    }
}
