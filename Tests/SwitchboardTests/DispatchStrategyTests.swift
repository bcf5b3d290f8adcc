import Testing

@testable import Switchboard

@Suite struct DispatchStrategyTests {
    @Test func eachModeSaysWhatItDoesOnBothSides() throws {
        let roundRobin = DispatchMode.roundRobin.strategy
        #expect(roundRobin.scheduling == .roundRobin && roundRobin.masterListens && !roundRobin.sharesListener)
        #expect(DispatchMode.leastConnections.strategy.scheduling == .leastConnections)
        #expect(try roundRobin.workerListener(host: "127.0.0.1", port: 0, backlog: 1, deferAcceptSeconds: 1) == nil)

        let reusePort = DispatchMode.reusePort.strategy
        #expect(reusePort.scheduling == nil && !reusePort.masterListens && reusePort.masterReusesPort)
        #expect(!reusePort.usesInheritedListener)

        let shared = DispatchMode.shared.strategy
        #expect(shared.scheduling == nil && shared.masterListens && shared.sharesListener)
        #expect(try shared.workerListener(host: "", port: 0, backlog: 1, deferAcceptSeconds: 1) == WorkerRuntime.sharedListenerDescriptor)

        #expect(DispatchMode.allCases.filter(\.passesDescriptors) == [.roundRobin, .leastConnections])
    }

    /// A reuseport worker binds its own listener in the master's group, with `--defer-accept` when asked (the master
    /// does not listen in that mode, so the worker's listener is where the option has to reach).
    @Test(arguments: [0, 3]) func aReusePortWorkerBindsItsOwnListenerInTheMastersGroup(deferAcceptSeconds: Int) throws {
        let master = try Syscalls.listenTCP(host: "127.0.0.1", port: 0, backlog: 4, reusePort: true, listening: false)
        defer { Syscalls.close(master.fd) }
        let own = try #require(
            try DispatchMode.reusePort.strategy.workerListener(
                host: "127.0.0.1", port: master.port, backlog: 4, deferAcceptSeconds: deferAcceptSeconds))
        defer { Syscalls.close(own) }
        #expect(try Syscalls.localPort(own) == master.port)
        let held = try #require(Syscalls.deferAccept(own))
        #expect(deferAcceptSeconds == 0 ? held == 0 : held >= deferAcceptSeconds)
    }
}
