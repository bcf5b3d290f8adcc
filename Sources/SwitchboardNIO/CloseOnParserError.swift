import NIOCore
import NIOHTTP1

/// Closes an HTTP/1 connection whose request could not be parsed, once NIOHTTP1's `HTTPServerProtocolErrorHandler`
/// has answered it 400.
///
/// NIOHTTP1 leaves that close to the application, and its decoder reads nothing more on the connection after the
/// error: without it the connection stays open until the client gives up. ``SwitchboardWorkerServer`` puts it right
/// after the error handler, as the built-in engine closes after its own 400. The error goes on down the pipeline
/// first, so the handlers after this one still see it.
final class CloseOnParserError: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.fireErrorCaught(error)
        if error is HTTPParserError { context.close(promise: nil) }
    }
}
