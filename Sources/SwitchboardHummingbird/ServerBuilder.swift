// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle
import NIOCore
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOSSL
import NIOTLS
import Switchboard
import SwitchboardNIO

extension HTTPServerBuilder {
    /// The child channel Hummingbird's own server sets every accepted connection up with, for `responder`.
    ///
    /// Hummingbird 2 keeps the builder's function `package`; its one public use is `buildServer(...)`, which calls it
    /// and returns a `Server` that has not started (nothing is bound until it runs). The child channel is read from
    /// that server through reflection and the server is dropped unstarted. `SwitchboardHummingbirdTests` checks this
    /// for every builder Hummingbird ships (`.http1()`, `.tls(...)`, `.http2Upgrade(...)`, `.plaintextHTTP2()`);
    /// should a release store it differently, a worker stops at start with one line instead of serving without the
    /// application's protocol.
    func childChannel(
        responder: @escaping HTTPChannelHandler.Responder, eventLoopGroup: any EventLoopGroup, logger: Logger
    ) throws(SwitchboardError) -> any ServerChildChannel {
        let server: any Service
        do {
            server = try buildServer(
                configuration: .init(), eventLoopGroup: eventLoopGroup, logger: logger, responder: responder)
        } catch {
            throw SwitchboardError(.usage, "the application's server builder failed: \(error)")
        }
        guard let childChannel = Self.unstartedChildChannel(of: server) else {
            throw SwitchboardError(
                .usage,
                "this Hummingbird version's server does not show its child channel; "
                    + "pass the HTTP/1 settings with `http1:` instead")
        }
        return childChannel
    }

    /// The child channel in an unstarted `Server`'s `initial` state.
    static func unstartedChildChannel(of server: Any) -> (any ServerChildChannel)? {
        for property in Mirror(reflecting: server).children {
            for state in Mirror(reflecting: property.value).children where state.label == "initial" {
                for field in Mirror(reflecting: state.value).children {
                    if let childChannel = field.value as? any ServerChildChannel { return childChannel }
                }
            }
        }
        return nil
    }
}
#endif
