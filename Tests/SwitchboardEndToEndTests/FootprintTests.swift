import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    /// What `switchboard` is built from: the run command compiles no TLS library (SwitchboardNIO finds the TLS
    /// handler through its `tlsHandler` parameter, not by naming NIOSSL's type).
    @Suite struct Footprint {
        @Test func theSwitchboardBinaryLinksNoTLSLibrary() throws {
            let binary = try #require(FileManager.default.contents(atPath: SwitchboardProcess.binary))
            #expect(binary.range(of: Data("BoringSSL".utf8)) == nil, "switchboard links BoringSSL")
            // The check can see it: the NIO example, which serves HTTPS, does link it.
            let example = try #require(
                FileManager.default.contents(atPath: SwitchboardProcess.sibling("switchboard-nio-example")))
            #expect(example.range(of: Data("BoringSSL".utf8)) != nil)
        }
    }
}
