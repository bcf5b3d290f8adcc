import Testing

@testable import Switchboard

@Suite struct ConfigurationTests {
    func message(_ change: (inout Configuration) -> Void) -> String? {
        var configuration = Configuration()
        change(&configuration)
        do {
            try configuration.validate()
            return nil
        } catch {
            #expect(error.code == .usage)
            return error.message
        }
    }

    @Test func defaultsAreValid() {
        #expect(message { _ in } == nil)
        #expect(Configuration().port == 3000)
        #expect(Configuration().workers == Configuration.availableProcessors)
        #expect(Configuration().mode == .roundRobin)
    }

    @Test func eachInvalidValueSaysWhatAndHowToFixIt() {
        #expect(message { $0.port = -1 } == "port -1 is out of range: pass --port between 0 and 65535 (0 picks a free port)")
        #expect(message { $0.port = 65536 } == "port 65536 is out of range: pass --port between 0 and 65535 (0 picks a free port)")
        #expect(message { $0.workers = 0 } == "--workers must be at least 1 (got 0): pass --workers 1 or more")
        #expect(message { $0.workers = 5000 } == "--workers 5000 is too many: pass at most 1024")
        #expect(message { $0.backlog = 0 } == "--backlog must be at least 1 (got 0)")
        #expect(message { $0.maxQueued = 0 } == "--max-queued must be between 1 and 1024 (got 0)")
        #expect(message { $0.deferAcceptSeconds = 601 } == "--defer-accept must be between 0 and 600 seconds (got 601)")
        #expect(message { $0.drainTimeout = .seconds(-1) } == "--drain-timeout cannot be negative")
    }

    @Test func exitCodesFollowSysexits() {
        #expect(SwitchboardError.Code.usage.exitCode == 64)
        #expect(SwitchboardError.Code.portInUse.exitCode == 69)
        #expect(SwitchboardError.Code.crashLoop.exitCode == 70)
        #expect(SwitchboardError.Code.permissionDenied.exitCode == 77)
        #expect(SwitchboardError.Code.config.exitCode == 78)
    }

    @Test func dispatchModesParseByName() {
        #expect(DispatchMode(name: "round-robin") == .roundRobin)
        #expect(DispatchMode(name: "least-connections") == .leastConnections)
        #expect(DispatchMode(name: "reuseport") == .reusePort)
        #expect(DispatchMode(name: "shared") == .shared)
        #expect(DispatchMode(name: "random") == nil)
        #expect(DispatchMode.allCases.map(\.name) == ["round-robin", "least-connections", "reuseport", "shared"])
    }
}
