// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
import HummingbirdTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SwitchboardTestSupport
import Testing

@testable import SwitchboardHummingbird

/// A worker applies the child channel of the application's own server builder to every passed connection. Hummingbird
/// keeps the builder's function to itself, so the adapter reads the child channel of an unstarted `Server`: this
/// checks that it finds the right one for every builder Hummingbird ships, so that a Hummingbird release that stores
/// it differently fails here rather than in production.
@Suite struct ServerBuilderTests {
    static let responder: HTTPChannelHandler.Responder = { _, _, _ in }

    static func childChannelType(of builder: HTTPServerBuilder) throws -> String {
        let child = try builder.childChannel(
            responder: responder, eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "test"))
        return String(describing: type(of: child))
    }

    @Test func everyBuilderHummingbirdShipsGivesItsChildChannel() throws {
        #expect(try Self.childChannelType(of: .http1()) == "HTTP1Channel")
        #expect(try Self.childChannelType(of: .plaintextHTTP2()) == "HTTP2Channel")
        guard toolsInstalled("/usr/bin/openssl") else { return }
        let certificate = try TestCertificate()
        defer { certificate.remove() }
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificate.certificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: certificate.key, format: .pem)))
        #expect(try Self.childChannelType(of: .tls(.http1(), tlsConfiguration: tls)) == "TLSChannel<HTTP1Channel>")
        #expect(try Self.childChannelType(of: .http2Upgrade(tlsConfiguration: tls)) == "HTTP2UpgradeChannel")
    }

    /// The drain's GOAWAY barrier follows the client's frames to find the ACK of its PING, wherever reads split them.
    @Test func theGoAwayBarrierFindsItsPingAckAcrossReads() {
        let preface = HTTP2GoAwayBarrier.preface
        let settings: [UInt8] = [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]
        let otherAck: [UInt8] = [0, 0, 8, 6, 1, 0, 0, 0, 0] + Array("someone!".utf8)
        let ping: [UInt8] = [0, 0, 8, 6, 0, 0, 0, 0, 0] + HTTP2GoAwayBarrier.pingData  // not an ACK
        let ack: [UInt8] = [0, 0, 8, 6, 1, 0, 0, 0, 0] + HTTP2GoAwayBarrier.pingData
        // A DATA frame whose payload happens to hold the ACK's bytes: payload, not a frame.
        let data: [UInt8] = [0, 0, UInt8(ack.count), 0, 0, 0, 0, 0, 1] + ack
        let stream = preface + settings + otherAck + ping + data + ack
        for split in [1, 7, 24, 30, stream.count - 5, stream.count - 1] {
            var scanner = HTTP2GoAwayBarrier.FrameScanner()
            let first = scanner.scan(ByteBuffer(bytes: stream[..<split]), lookingFor: HTTP2GoAwayBarrier.pingData)
            let second = scanner.scan(ByteBuffer(bytes: stream[split...]), lookingFor: HTTP2GoAwayBarrier.pingData)
            #expect(!first && second, "split at \(split)")
        }
        var scanner = HTTP2GoAwayBarrier.FrameScanner()
        let found = scanner.scan(
            ByteBuffer(bytes: preface + settings + otherAck + ping + data), lookingFor: HTTP2GoAwayBarrier.pingData)
        #expect(!found, "no ACK of ours in that stream")
    }

    @Test func aBuilderThatThrowsIsAOneLineError() throws {
        struct NoCertificate: Error {}
        let failing = HTTPServerBuilder { _ in throw NoCertificate() }
        #expect {
            _ = try Self.childChannelType(of: failing)
        } throws: { error in
            "\(error)".contains("the application's server builder failed: NoCertificate")
        }
    }
}
#endif
