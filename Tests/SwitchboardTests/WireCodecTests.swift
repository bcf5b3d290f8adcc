import SwitchboardTestSupport
import SwitchboardSimulation
import Testing

@testable import Switchboard

@Suite struct WireCodecTests {
    static let messages: [WireMessage] = [
        .hello(pid: 4242, build: "0.7.0+1a2b3c4d5e6f"),
        .hello(pid: -1, build: ""),
        .hello(pid: 7, build: String(repeating: "x", count: WireCodec.maxBuildLength)),
        .ready,
        .connections(firstSequence: 1, count: 1),
        .connections(firstSequence: .max - 10, count: 64),
        .ack(sequence: 99, open: 7),
        .connections(firstSequence: 12, count: 3, reportReceipt: true),
        .heartbeat(open: 3, handled: 1 << 40),
        .drain(deadlineMilliseconds: 30_000),
        .message([]),
        .message(Array(0...255)),
        .message([UInt8](repeating: 0xAB, count: WireCodec.maxPayload)),
    ]

    @Test(arguments: messages)
    func roundTrips(_ message: WireMessage) throws {
        let frame = WireCodec.encode(message)
        #expect(frame.count >= WireCodec.headerSize)
        #expect(try WireCodec.decode(frame, descriptorCount: message.descriptorCount) == message)
    }

    @Test func headerLayoutIsLittleEndian() {
        let frame = WireCodec.encode(.ack(sequence: 0x0102_0304_0506_0708, open: 0x0A0B_0C0D))
        #expect(frame == [2, 4, 0, 0, 4, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0x0D, 0x0C, 0x0B, 0x0A])
    }

    @Test func patchingAConnectionsFrameMatchesEncoding() {
        var frame = WireCodec.encode(.connections(firstSequence: 1, count: 1))
        WireCodec.patchConnections(&frame, firstSequence: 77, count: 3, reportReceipt: false)
        #expect(frame == WireCodec.encode(.connections(firstSequence: 77, count: 3)))
        WireCodec.patchConnections(&frame, firstSequence: 78, count: 2, reportReceipt: true)
        #expect(frame == WireCodec.encode(.connections(firstSequence: 78, count: 2, reportReceipt: true)))
        #expect(frame.count == WireCodec.connectionsFrameSize)
    }

    /// What a reader peeks before it receives (the worker for its room, the master before taking a queue back).
    @Test func theConnectionCountIsReadFromAPeekedHeaderOnlyOfAConnectionsFrame() {
        let frame = WireCodec.encode(.connections(firstSequence: 9, count: 70_000, reportReceipt: true))
        #expect(WireCodec.connectionCount(peeked: frame, bytes: frame.count) == 70_000)
        #expect(WireCodec.connectionCount(peeked: frame, bytes: frame.count - 1) == nil, "a short peek")
        var drain = WireCodec.encode(.drain(deadlineMilliseconds: 700))
        drain += [UInt8](repeating: 0, count: max(0, WireCodec.connectionsFrameSize - drain.count))
        #expect(WireCodec.connectionCount(peeked: drain, bytes: WireCodec.connectionsFrameSize) == nil)
    }

    @Test(arguments: 0..<WireCodec.headerSize)
    func shortFramesAreRejected(_ length: Int) {
        let frame = Array(WireCodec.encode(.ready).prefix(length))
        #expect(throws: WireError.truncated(bytes: length)) { try WireCodec.decode(frame) }
    }

    @Test(arguments: [1, 3, 255] as [UInt8])
    func otherVersionsAreRejected(_ version: UInt8) {
        var frame = WireCodec.encode(.hello(pid: 1, build: "0.7.0"))
        frame[0] = version
        #expect(throws: WireError.unsupportedVersion(version)) { try WireCodec.decode(frame) }
    }

    @Test func aHelloOfProtocolOneIsAnOtherVersion() {
        // What a build of the first protocol sends: the master names the version instead of misreading the frame.
        let frame: [UInt8] = [1, 1, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x39, 0x30, 0, 0]
        #expect(throws: WireError.unsupportedVersion(1)) { try WireCodec.decode(frame) }
    }

    @Test(arguments: ["has space", "tab\t", "ünïcode", String(repeating: "y", count: WireCodec.maxBuildLength + 1)])
    func aHelloWithAnUnprintableOrLongBuildIsRejected(_ build: String) {
        var frame = WireCodec.encode(.hello(pid: 1, build: ""))
        frame.append(contentsOf: Array(build.utf8))
        let length = UInt32(frame.count - WireCodec.headerSize)
        for offset in 0..<4 { frame[4 + offset] = UInt8(truncatingIfNeeded: length >> (8 * offset)) }
        #expect(throws: WireError.badPayloadSize(type: 1, size: Int(length))) { try WireCodec.decode(frame) }
    }

    @Test(arguments: [0, 8, 9, 200, 255] as [UInt8])
    func unknownTypesAreRejected(_ type: UInt8) {
        var frame = WireCodec.encode(.ready)
        frame[1] = type
        #expect(throws: WireError.unknownType(type)) { try WireCodec.decode(frame) }
    }

    @Test func reservedFlagsAreRejected() {
        var frame = WireCodec.encode(.ready)
        frame[3] = 1
        #expect(throws: WireError.reservedFlags(256)) { try WireCodec.decode(frame) }
    }

    @Test func declaredLengthMustMatchTheFrame() {
        var frame = WireCodec.encode(.ack(sequence: 1, open: 0))
        frame.append(0)
        #expect(throws: WireError.lengthMismatch(declared: 4, actual: 5)) { try WireCodec.decode(frame) }
        frame.removeLast(2)
        #expect(throws: WireError.lengthMismatch(declared: 4, actual: 3)) { try WireCodec.decode(frame) }
    }

    @Test func oversizedPayloadIsRejected() {
        var frame = WireCodec.encode(.message([]))
        let size = WireCodec.maxPayload + 1
        frame[4] = UInt8(size & 0xff)
        frame[5] = UInt8((size >> 8) & 0xff)
        frame[6] = UInt8((size >> 16) & 0xff)
        frame.append(contentsOf: [UInt8](repeating: 0, count: size))
        #expect(throws: WireError.payloadTooLarge(size)) { try WireCodec.decode(frame) }
    }

    @Test func wrongPayloadSizeForTheTypeIsRejected() {
        // A `ready` with a 4-byte payload.
        var frame = WireCodec.encode(.ready)
        frame[4] = 4
        frame.append(contentsOf: [0, 0, 0, 0])
        #expect(throws: WireError.badPayloadSize(type: 2, size: 4)) { try WireCodec.decode(frame) }
    }

    @Test func descriptorsOnAMessageThatCarriesNoneAreRejected() {
        let frame = WireCodec.encode(.ack(sequence: 1, open: 0))
        #expect(throws: WireError.unexpectedDescriptors(type: 4, count: 1)) {
            try WireCodec.decode(frame, descriptorCount: 1)
        }
    }

    @Test func connectionCountMustMatchTheDescriptorsThatArrived() {
        let frame = WireCodec.encode(.connections(firstSequence: 5, count: 2))
        #expect(throws: WireError.descriptorCountMismatch(declared: 2, actual: 1)) {
            try WireCodec.decode(frame, descriptorCount: 1)
        }
        #expect(throws: WireError.descriptorCountMismatch(declared: 2, actual: 0)) { try WireCodec.decode(frame) }
    }

    @Test func zeroConnectionsIsRejected() {
        var frame = WireCodec.encode(.connections(firstSequence: 5, count: 1))
        frame[WireCodec.headerSize] = 0
        #expect(throws: WireError.badPayloadSize(type: 3, size: 0)) { try WireCodec.decode(frame) }
    }

    @Test func decodingArbitraryBytesNeverTraps() {
        var generator = SplitMix64(seed: 0x5317C4B0A4D)
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 40)
            var frame = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if length > 2, generator.next() % 2 == 0 {
                frame[0] = WireCodec.version
                frame[1] = UInt8(generator.next() % 9)
            }
            _ = try? WireCodec.decode(frame, descriptorCount: Int(generator.next() % 3))
        }
    }
}

extension WireCodecTests {
    @Test func aConnectionsFrameMayBringFewerDescriptorsOnlyWhenTheyWereDropped() throws {
        let frame = WireCodec.encode(.connections(firstSequence: 5, count: 4))
        #expect(throws: WireError.descriptorCountMismatch(declared: 4, actual: 1)) {
            try WireCodec.decode(frame, descriptorCount: 1)
        }
        #expect(
            try WireCodec.decode(frame, descriptorCount: 1, descriptorsDropped: true)
                == .connections(firstSequence: 5, count: 4))
        #expect(throws: WireError.descriptorCountMismatch(declared: 4, actual: 5)) {
            try WireCodec.decode(frame, descriptorCount: 5, descriptorsDropped: true)
        }
    }

    @Test func onlyAConnectionsFrameMayAskForAReceipt() {
        var frame = WireCodec.encode(.ack(sequence: 3, open: 1))
        frame[2] = 1
        #expect(throws: WireError.reservedFlags(1)) { try WireCodec.decode(frame) }
        var connections = WireCodec.encode(.connections(firstSequence: 3, count: 1))
        connections[2] = 2
        #expect(throws: WireError.reservedFlags(2)) { try WireCodec.decode(connections, descriptorCount: 1) }
    }
}
