import NIOCore
import NIOHTTP1
import Switchboard

/// Closes an HTTP/1 connection that keeps a worker waiting for a request: no request head within the header timeout
/// of the connection's arrival, or none within the keep-alive timeout of the end of the previous response.
///
/// The SwiftNIO form of `ConnectionLimits.headerTimeout` and
/// `ConnectionLimits.keepAliveTimeout`. Add it right after the HTTP server codec, as
/// `configureHTTPServerPipeline` leaves it:
///
/// ```swift
/// try channel.pipeline.syncOperations.configureHTTPServerPipeline()
/// try channel.pipeline.syncOperations.addHandler(HTTPTimeoutsHandler(limits: runtime.limits))
/// ```
///
/// While a request is being answered nothing is timed here (a slow handler is the application's business); a client
/// that does not read its response is cut by the send timeout that ``SwitchboardWorkerServer`` applies to every
/// connection. A `101 Switching Protocols` response (a WebSocket upgrade) takes the connection out of HTTP: the
/// handler removes itself once it has flushed that response.
public final class HTTPTimeoutsHandler<RequestPart, ResponsePart>: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = RequestPart
    public typealias InboundOut = RequestPart
    public typealias OutboundIn = ResponsePart
    public typealias OutboundOut = ResponsePart

    private var timer = RequestWaitTimer()
    private let isHead: (RequestPart) -> Bool
    private let isEnd: (ResponsePart) -> Bool
    private let isUpgrade: (ResponsePart) -> Bool
    private var upgraded = false

    /// For request and response parts of another HTTP codec than NIOHTTP1's (Hummingbird's swift-http-types parts).
    /// - Parameters:
    ///   - limits: The worker's limits (`WorkerRuntime.limits`).
    ///   - isHead: Whether a request part is a head.
    ///   - isEnd: Whether a response part ends a response.
    ///   - isUpgrade: Whether a response part is the head of a 101 response.
    package init(
        limits: ConnectionLimits, isHead: @escaping (RequestPart) -> Bool, isEnd: @escaping (ResponsePart) -> Bool,
        isUpgrade: @escaping (ResponsePart) -> Bool = { _ in false }
    ) {
        timer.limits = limits
        self.isHead = isHead
        self.isEnd = isEnd
        self.isUpgrade = isUpgrade
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { timer.arm(context: context, afterResponse: false) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        timer.arm(context: context, afterResponse: false)
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // After a 101 what arrives is not a request part: pass it on untouched until the handler has left.
        if !upgraded, isHead(unwrapInboundIn(data)) { timer.requestStarted() }
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = unwrapOutboundIn(data)
        if isUpgrade(part) {
            // No longer HTTP: no request to wait for. The handler leaves at the flush that sends the 101 (leaving
            // inside this write would lose the flush of a `writeAndFlush`).
            upgraded = true
            timer.cancel()
        } else if isEnd(part) {
            timer.responseEnded(context: context)
        }
        context.write(data, promise: promise)
    }

    public func flush(context: ChannelHandlerContext) {
        context.flush()
        if upgraded { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timer.cancel()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer.cancel()
    }
}

extension HTTPTimeoutsHandler where RequestPart == HTTPServerRequestPart, ResponsePart == HTTPServerResponsePart {
    /// Times NIOHTTP1's request and response parts.
    /// - Parameter limits: The worker's limits (`WorkerRuntime.limits`).
    public convenience init(limits: ConnectionLimits) {
        self.init(
            limits: limits,
            isHead: { if case .head = $0 { true } else { false } },
            isEnd: { if case .end = $0 { true } else { false } },
            isUpgrade: { if case .head(let head) = $0 { head.status == .switchingProtocols } else { false } })
    }
}

/// The timer behind ``HTTPTimeoutsHandler``, shared with the Hummingbird adapter (whose request parts are another
/// type): armed while no request is in flight, cancelled when a request head arrives.
package struct RequestWaitTimer {
    package var limits = ConnectionLimits()
    private var inFlight = 0
    private var scheduled: Scheduled<Void>?

    package init() {}

    /// Starts waiting for a request: the header timeout for a new connection, the keep-alive timeout after a
    /// response.
    package mutating func arm(context: ChannelHandlerContext, afterResponse: Bool) {
        scheduled?.cancel()
        let wait = afterResponse ? limits.keepAliveTimeout : limits.headerTimeout
        let amount = TimeAmount.nanoseconds(Int64(wait.nanoseconds))
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        scheduled = context.eventLoop.scheduleTask(in: amount) { loopBound.value.close(promise: nil) }
    }

    package mutating func requestStarted() {
        inFlight += 1
        cancel()
    }

    package mutating func responseEnded(context: ChannelHandlerContext) {
        inFlight = max(inFlight - 1, 0)
        if inFlight == 0 { arm(context: context, afterResponse: true) }
    }

    package mutating func cancel() {
        scheduled?.cancel()
        scheduled = nil
    }
}

/// Cuts a connection whose client takes no byte of its response for the send timeout: the channel stays unwritable
/// (NIO's write buffer above its high watermark) that long. Together with NIO's `BackPressureHandler`, which stops
/// reading while the channel is unwritable, a client that sends without reading holds a bounded amount of memory.
final class SendTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    let sendTimeout: TimeAmount
    private var scheduled: Scheduled<Void>?

    init(sendTimeout: Duration) {
        self.sendTimeout = .nanoseconds(Int64(sendTimeout.nanoseconds))
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            scheduled?.cancel()
            scheduled = nil
        } else if scheduled == nil {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            scheduled = context.eventLoop.scheduleTask(in: sendTimeout) { loopBound.value.close(promise: nil) }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        scheduled?.cancel()
        scheduled = nil
        context.fireChannelInactive()
    }
}
