import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    @Suite struct Modes {
        @Test(arguments: ["round-robin", "least-connections", "reuseport", "shared"])
        func everyModeServesFromItsWorkers(_ mode: String) throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--mode", mode])
            defer { server.cleanUp() }
            #expect(server.stdout.contains("with 2 workers (\(mode))"), "\(server.stdout)")
            let workers = Set(server.workerPIDs)
            #expect(workers.count == 2)
            var seen: Set<pid_t> = []
            for _ in 0..<40 {
                let response = try get(port: server.port)
                #expect(response.status == 200)
                seen.insert(try #require(response.workerPID))
            }
            #expect(seen.isSubset(of: workers), "answered by \(seen), workers \(workers)")
            if mode != "shared" {
                // Shared mode lets the first idle worker win the accept race, so any split is correct there.
                #expect(seen == workers, "every worker served in \(mode) mode")
            }
            server.stopAndCheckNoOrphans()
        }

        @Test func onlyTheMasterListensInRoundRobinMode() throws {
            let server = try SwitchboardProcess.start(["--workers", "2"])
            defer { server.cleanUp() }
            let listening = try listeningSocketInodes(port: server.port)
            #expect(listening.count == 1)
            let masterSockets = Set(ProcFS.descriptors(server.pid).values)
            #expect(listening.allSatisfy { masterSockets.contains("socket:[\($0)]") })
            server.stopAndCheckNoOrphans()
        }

        @Test func reusePortGivesEachWorkerItsOwnListener() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--mode", "reuseport"])
            defer { server.cleanUp() }
            let listening = try listeningSocketInodes(port: server.port)
            #expect(listening.count == 2)
            for worker in server.workerPIDs {
                let sockets = Set(ProcFS.descriptors(worker).values)
                #expect(listening.contains { sockets.contains("socket:[\($0)]") }, "worker \(worker) has a listener")
            }
            server.stopAndCheckNoOrphans()
        }

        @Test func leastConnectionsSendsNewConnectionsAwayFromABusyWorker() throws {
            let server = try SwitchboardProcess.start([
                "--workers", "2", "--mode", "least-connections", "--heartbeat-interval", "0.05",
            ])
            defer { server.cleanUp() }
            // Twelve long-lived keep-alive connections split six and six.
            var held: [pid_t: [TestConnection]] = [:]
            for _ in 0..<12 {
                let connection = try TestConnection(port: server.port)
                try connection.request(keepAlive: true)
                let pid = try #require(try connection.readResponse().workerPID)
                held[pid, default: []].append(connection)
            }
            #expect(held.count == 2 && held.values.allSatisfy { $0.count == 6 }, "split: \(held.mapValues(\.count))")
            // The idle worker's clients leave; the busy worker keeps six.
            let (idle, _) = try #require(held.first)
            held[idle] = nil
            // Wait until the master has heard that the idle worker's connections closed: two new connections in a row
            // land there (while both look equally loaded, rotation alternates between them).
            let noticed = waitUntil {
                (try? get(port: server.port).workerPID) == idle && (try? get(port: server.port).workerPID) == idle
            }
            #expect(noticed)
            // Every new long-lived connection now goes to the idle worker (round-robin would alternate).
            var next: [pid_t] = []
            var kept: [TestConnection] = []
            for _ in 0..<3 {
                let connection = try TestConnection(port: server.port)
                try connection.request(keepAlive: true)
                next.append(try #require(try connection.readResponse().workerPID))
                kept.append(connection)
            }
            #expect(next == [idle, idle, idle])
            withExtendedLifetime((held, kept)) {}
            server.stopAndCheckNoOrphans()
        }
    }
}

/// Inodes of TCP sockets listening on `port` (from /proc/net/tcp and tcp6).
func listeningSocketInodes(port: Int) throws -> Set<String> {
    var inodes: Set<String> = []
    let hexPort = String(format: ":%04X", port)
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        guard let text = ProcFS.read(table) else { continue }
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            // local_address is field 1, st is field 3 (0A = LISTEN), inode is field 9.
            guard fields.count > 9, fields[1].hasSuffix(hexPort), fields[3] == "0A" else { continue }
            inodes.insert(String(fields[9]))
        }
    }
    return inodes
}
