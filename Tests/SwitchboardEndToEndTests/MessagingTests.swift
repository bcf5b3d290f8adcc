import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    @Suite struct Messaging {
        @Test func messagesRoundTripMasterToWorkerToMasterInOrder() throws {
            let server = try SwitchboardProcess.start(
                ["--workers", "2", "--pings", "100", "--events", "on"],
                executable: SwitchboardProcess.sibling("switchboard-nio-example"))
            defer { server.cleanUp() }
            func replies() -> [String] {
                server.stdout.split(separator: "\n").filter { $0.hasPrefix("message from worker ") }.map(String.init)
            }
            #expect(waitUntil { replies().count == 200 }, "got \(replies().count) replies")
            var perWorker: [String: [Int]] = [:]
            for line in replies() {
                // message from worker <id>: echo from <pid>: ping <n>
                let parts = line.split(separator: " ")
                let worker = String(parts[3].dropLast())
                perWorker[worker, default: []].append(Int(parts.last!)!)
            }
            #expect(perWorker.count == 2)
            for (worker, numbers) in perWorker {
                #expect(numbers == Array(1...100), "worker \(worker) replies out of order")
            }
            // Lifecycle events come in Node's order for every worker: fork, online, ready.
            let events = server.stdout.split(separator: "\n").filter { $0.hasPrefix("event: ") }
            for id in 1...2 {
                let mine = events.compactMap { line -> String? in
                    guard line.contains("(worker \(id) (pid ") else { return nil }
                    return String(line.dropFirst("event: ".count).prefix { $0 != "(" })
                }
                #expect(Array(mine.prefix(3)) == ["fork", "online", "ready"], "worker \(id): \(mine)")
            }
            #expect(events.contains { $0.hasPrefix("event: listening(port: \(server.port))") })
            let response = try get(port: server.port)
            #expect(response.body.hasPrefix("Hello from NIO worker "))
            server.stopAndCheckNoOrphans()
        }

        @Test func anOversizedFrameFromAWorkerReplacesItAndTheMasterKeepsServing() throws {
            let server = try SwitchboardProcess.start(["--workers", "2", "--test-hooks"])
            defer { server.cleanUp() }
            let before = Set(server.workerPIDs)
            let connection = try TestConnection(port: server.port)
            try connection.request(path: "/test/oversized-frame")
            _ = try? connection.readResponse()
            #expect(server.waitForLog("worker sent a frame over"), "\(server.stderr)")
            #expect(waitUntil { Set(server.workerPIDs).subtracting(before).count == 1 && server.workerPIDs.count == 2 })
            for _ in 0..<10 { #expect(try get(port: server.port).status == 200) }
            server.stopAndCheckNoOrphans()
        }
    }
}
