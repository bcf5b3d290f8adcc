import Dispatch
import class Foundation.Thread
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Switchboard

#if canImport(Glibc)
import Glibc
#endif

/// Serves the connections a Switchboard master passes to this worker on a SwiftNIO `EventLoopGroup`.
///
/// Each passed descriptor becomes a NIO `Channel` (through `ClientBootstrap.withConnectedSocket`) set up by your
/// channel initializer, spread over the group's loops. The server heartbeats from an event loop, drains on request
/// (firing `ChannelShouldQuiesceEvent` into every open channel, which NIOHTTP1's server pipeline answers by closing
/// idle keep-alive connections and closing the others after their response) and exits when the last connection
/// closes or the deadline passes. For HTTPS (the worker does the handshake on the passed TCP connection) pass the TLS
/// handler as `tlsHandler` rather than adding it in your initializer: the server puts it first, its drain gate right
/// behind it (so a drain waits for the first decrypted request, not the ClientHello) and closes a connection whose
/// handshake is not done within `ConnectionLimits.headerTimeout`. (This module does not link a TLS library: any
/// handler that fires NIOTLS's `TLSUserEvent.handshakeCompleted`, such as NIOSSL's `NIOSSLServerHandler`, works.)
/// When your initializer adds NIOHTTP1's
/// `HTTPServerProtocolErrorHandler` (`configureHTTPServerPipeline()` does), the server closes a connection once that
/// handler has answered a malformed request 400.
public final class SwitchboardWorkerServer: Sendable {
    struct State {
        var listener: (any Channel)?
        var channels: [ObjectIdentifier: any Channel] = [:]
        var handled: UInt64 = 0
        var draining = false
        /// Passed connections handed to `ClientBootstrap` whose channel is not set up yet.
        var adopting = 0
        /// Serving has ended (drained, or the drain deadline passed).
        var finished = false
        /// What ending does: exit the process (``run()``) or return from ``serveUntilDrained()``.
        var onFinished: (@Sendable () -> Void)?
        var heartbeats: RepeatedTask?
    }

    /// The channel to the master.
    public let runtime: WorkerRuntime
    /// The loops connections are served on.
    public let group: any EventLoopGroup
    let heartbeatInterval: TimeAmount
    let logger: Logger
    let initializer: @Sendable (any Channel) -> EventLoopFuture<Void>
    let tlsHandler: (@Sendable (any Channel) throws -> any ChannelHandler)?
    /// For adapters whose framework adds its own TLS handler in the initializer (Hummingbird's `TLSChannel`): finds
    /// it there, so that the drain gate and the handshake deadline go right behind it.
    let findTLSHandler: (@Sendable (any Channel) -> (any ChannelHandler)?)?
    let onMessage: @Sendable ([UInt8]) -> Void
    let state = NIOLockedValueBox(State())

    /// Creates a server.
    /// - Parameters:
    ///   - runtime: This worker's runtime (`WorkerRuntime/current(logger:)`).
    ///   - group: The event loops to serve on.
    ///   - heartbeatInterval: How often to tell the master this worker is alive; nil takes the master's setting.
    ///   - logger: Where to log.
    ///   - onMessage: Called (on the channel thread) with each message from the master; answer with
    ///     `WorkerRuntime/send(message:)`.
    ///   - tlsHandler: Makes the TLS handler of each passed connection (`{ _ in NIOSSLServerHandler(context:
    ///     context) }`); the server puts it first in the pipeline, before `childChannelInitializer` runs. Nil (the
    ///     default) serves cleartext.
    ///   - childChannelInitializer: Sets up the pipeline of each passed connection (after the TLS handler, if any).
    public init(
        runtime: WorkerRuntime,
        group: any EventLoopGroup,
        heartbeatInterval: TimeAmount? = nil,
        logger: Logger = Logger(label: "switchboard.worker"),
        onMessage: @escaping @Sendable ([UInt8]) -> Void = { _ in },
        tlsHandler: (@Sendable (any Channel) throws -> any ChannelHandler)? = nil,
        childChannelInitializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) {
        self.tlsHandler = tlsHandler
        self.findTLSHandler = nil
        self.onMessage = onMessage
        self.runtime = runtime
        self.group = group
        self.heartbeatInterval =
            heartbeatInterval ?? .nanoseconds(Int64(runtime.heartbeatInterval.nanoseconds))
        self.logger = logger
        self.initializer = childChannelInitializer
    }

    /// A server for an adapter whose framework puts its own TLS handler in the pipeline: `findTLSHandler` finds it
    /// after `childChannelInitializer` has run (nil: cleartext).
    package init(
        runtime: WorkerRuntime,
        group: any EventLoopGroup,
        logger: Logger,
        findTLSHandler: @escaping @Sendable (any Channel) -> (any ChannelHandler)?,
        childChannelInitializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) {
        self.onMessage = { _ in }
        self.runtime = runtime
        self.group = group
        self.heartbeatInterval = .nanoseconds(Int64(runtime.heartbeatInterval.nanoseconds))
        self.logger = logger
        self.initializer = childChannelInitializer
        self.tlsHandler = nil
        self.findTLSHandler = findTLSHandler
    }

    /// The number of open connections.
    public var openConnections: Int { state.withLockedValue { $0.channels.count } }

    /// Announces readiness and serves until the master says drain (or disappears); then exits the process with 0.
    ///
    /// To return instead, so that the program's other services can shut down after the worker has drained, use
    /// ``serveUntilDrained()`` or put a ``SwitchboardWorkerService`` in a `ServiceGroup`.
    ///
    /// In `DispatchMode/shared` mode the worker accepts on the listener it inherited at fd 4, and in
    /// `DispatchMode/reusePort` mode on a `SO_REUSEPORT` listener of its own; otherwise it serves the connections the
    /// master passes.
    public func run() -> Never {
        serve(announcingReady: true)
    }

    /// Serves like ``run()`` but never reports ready (for tests of the master's ready deadline).
    package func runWithoutAnnouncingReady() -> Never {
        serve(announcingReady: false)
    }

    private func serve(announcingReady: Bool) -> Never {
        let term = watchTerminationSignal()
        do {
            try startOwnListener()
        } catch {
            logger.critical("cannot listen in \(runtime.mode) mode: \(error)")
            exit(1)
        }
        guard arm(onFinished: { exit(0) }) else {
            logger.critical("this server is already serving")
            exit(1)
        }
        startHeartbeats()
        if announcingReady { runtime.announceReady() }
        receiveFromMaster()
        // The master is gone: the drain exits the process; park until it does.
        while true {
            withExtendedLifetime(term) { _ = pause() }
        }
    }

    /// Announces readiness and serves until the master says drain (or disappears) and every connection has closed,
    /// or the drain deadline has passed (the connections still open are closed then); then returns.
    ///
    /// Unlike ``run()`` it leaves the process running, so whatever called it can shut the rest of the program down
    /// gracefully. It installs no signal handler: call ``beginDrain(deadline:)`` to stop from your own (a
    /// ``SwitchboardWorkerService`` does on a `ServiceGroup`'s graceful shutdown). The thread that receives from
    /// the master stays blocked on the channel afterwards; it ends with the process.
    /// - Throws: `SwitchboardError` when the worker's own listener (`shared` and `reuseport` modes) cannot start, or
    ///   when this server is already serving.
    public func serveUntilDrained() async throws {
        do {
            try startOwnListener()
        } catch {
            throw SwitchboardError(.system, "cannot listen in \(runtime.mode) mode: \(error)")
        }
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            guard arm(onFinished: { done.resume() }) else {
                done.resume(throwing: SwitchboardError(.usage, "this server is already serving"))
                return
            }
            startHeartbeats()
            runtime.announceReady()
            // WorkerRuntime.run blocks its thread on the channel: give it one of its own, not the concurrency pool's.
            Thread.detachNewThread { self.receiveFromMaster() }
        }
    }

    /// Sets what finishing does; false when serving already began.
    private func arm(onFinished: @escaping @Sendable () -> Void) -> Bool {
        state.withLockedValue { state in
            guard state.onFinished == nil, !state.finished else { return false }
            state.onFinished = onFinished
            return true
        }
    }

    /// Receives connections, drains and messages from the master until it is gone (blocks the calling thread).
    private func receiveFromMaster() {
        runtime.run(openConnections: { self.openConnections }) { event in
            switch event {
            case .connections(let descriptors):
                for descriptor in descriptors { adopt(descriptor) }
            case .drain(let deadline):
                beginDrain(deadline: deadline)
            case .message(let bytes):
                onMessage(bytes)
            case .masterGone:
                beginDrain(deadline: runtime.drainTimeout)
            }
        }
    }

    /// Adopts one passed descriptor as a channel. On failure the descriptor is closed (exactly once).
    /// - Parameter descriptor: A connected stream socket; this server owns it from now on.
    public func adopt(_ descriptor: CInt) {
        guard WorkerRuntime.isStreamSocket(descriptor) else {
            logger.warning("a passed descriptor is not a connected stream socket; closing it")
            WorkerRuntime.closeDescriptor(descriptor)
            return
        }
        // From here NIO owns the descriptor: it closes it when the channel cannot be set up, and when it closes.
        state.withLockedValue { $0.adopting += 1 }
        let future = ClientBootstrap(group: group)
            .channelInitializer { channel in self.setUp(channel) }
            .withConnectedSocket(descriptor)
        future.whenFailure { error in
            self.logger.warning("cannot adopt a passed connection: \(error)")
        }
        // The channel is tracked (or failed) by now; a drain that found no channel waited for this one.
        future.whenComplete { _ in
            let idle = self.state.withLockedValue { state in
                state.adopting -= 1
                return state.draining && state.adopting == 0 && state.channels.isEmpty
            }
            if idle { self.finish() }
        }
    }

    private func startOwnListener() throws {
        guard let own = try runtime.ownListener() else { return }
        let listener = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: Int32(clamping: runtime.backlog))
            .childChannelInitializer { channel in self.setUp(channel) }
            .withBoundSocket(own)
            .wait()
        state.withLockedValue { $0.listener = listener }
    }

    private func setUp(_ channel: any Channel) -> EventLoopFuture<Void> {
        let limits = runtime.limits
        let behindTLS: Bool
        do {
            // The limits that hold whatever the protocol: stop reading while the client does not take its output,
            // and cut it when it takes none for the send timeout. HTTP's own timeouts need the HTTP codec: see
            // HTTPTimeoutsHandler.
            let operations = channel.pipeline.syncOperations
            try operations.addHandlers(
                [BackPressureHandler(), SendTimeoutHandler(sendTimeout: limits.sendTimeout)], position: .first)
            // The drain gate waits for the first bytes of a request. Behind TLS those are the first decrypted bytes,
            // not the ClientHello, so the gate goes right after the TLS handler, with the handshake's deadline.
            if let tlsHandler {
                let gate = DrainGate(logger: nil)
                try operations.addHandler(tlsHandler(channel))
                try operations.addHandler(gate)
                try operations.addHandler(TLSHandshakeDeadline(timeout: limits.headerTimeout))
                behindTLS = true
            } else {
                behindTLS = false
            }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return initializer(channel).flatMapThrowing {
            let operations = channel.pipeline.syncOperations
            // The gate behind a TLS handler the framework's initializer added (Hummingbird's), or first.
            if !behindTLS, let found = self.findTLSHandler?(channel) {
                let gate = DrainGate(logger: nil)
                try operations.addHandler(gate, position: .after(found))
                try operations.addHandler(TLSHandshakeDeadline(timeout: limits.headerTimeout), position: .after(gate))
            } else if !behindTLS {
                // Only where nothing says where TLS is does the gate tell of a handshake it sees.
                try operations.addHandler(DrainGate(logger: self.findTLSHandler == nil ? self.logger : nil), position: .first)
            }
            // NIOHTTP1's error handler answers a request it cannot parse 400 but leaves the connection open.
            if let errors = try? operations.context(handlerType: HTTPServerProtocolErrorHandler.self) {
                try operations.addHandler(CloseOnParserError(), position: .after(errors.handler))
            }
            // Tracked only now, so that a drain already under way reaches the gate rather than the protocol.
            self.track(channel)
        }
    }

    private func track(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        let cap = runtime.maxConnections
        let (draining, fullListener) = state.withLockedValue { state in
            state.channels[key] = channel
            state.handled &+= 1
            return (state.draining, state.channels.count == cap ? state.listener : nil)
        }
        // At the cap a worker with its own listener stops accepting; the backlog holds the rest (in the passing
        // modes the master sends no more than the cap).
        fullListener?.setOption(.autoRead, value: false).whenFailure { _ in }
        channel.closeFuture.whenComplete { _ in
            let (left, draining, roomAgain) = self.state.withLockedValue { state in
                state.channels[key] = nil
                return (state.channels.count + state.adopting, state.draining,
                        state.channels.count == cap - 1 ? state.listener : nil)
            }
            roomAgain?.setOption(.autoRead, value: true).whenFailure { _ in }
            if draining && left == 0 { self.finish() }
        }
        if draining {
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
    }

    private func startHeartbeats() {
        let loop = group.next()
        let task = loop.scheduleRepeatedTask(initialDelay: .zero, delay: heartbeatInterval) { _ in
            let (open, handled) = self.state.withLockedValue { ($0.channels.count, $0.handled) }
            self.runtime.heartbeat(open: open, handled: handled)
        }
        state.withLockedValue { $0.heartbeats = task }
    }

    private func watchTerminationSignal() -> any DispatchSourceSignal {
        signal(SIGTERM, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        source.setEventHandler { self.beginDrain(deadline: self.runtime.drainTimeout) }
        source.resume()
        return source
    }

    /// Stops serving: every open connection is told to quiesce; the process exits when none is left or at the
    /// deadline.
    public func beginDrain(deadline: Duration) {
        let snapshot: (listener: (any Channel)?, channels: [any Channel], adopting: Int)? = state.withLockedValue {
            state in
            guard !state.draining else { return nil }
            state.draining = true
            defer { state.listener = nil }
            return (state.listener, Array(state.channels.values), state.adopting)
        }
        guard let (listener, channels, adopting) = snapshot else { return }
        // Stop accepting first. A reuseport listener that closes resets the connections still in its accept queue
        // unless net.ipv4.tcp_migrate_req=1 moves them to the other workers' listeners.
        listener?.close(promise: nil)
        logger.info("draining", metadata: ["connections.open": "\(channels.count)"])
        if channels.isEmpty && adopting == 0 { finish() }
        for channel in channels {
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(deadline.nanoseconds))) {
            let open = self.state.withLockedValue { $0.finished ? [] : Array($0.channels.values) }
            guard !open.isEmpty else { return self.finish() }
            self.logger.notice("drain deadline passed with \(open.count) connections open; closing them")
            for channel in open { channel.close(promise: nil) }
            self.finish()
        }
    }

    /// Ends serving once: stops the heartbeats and exits the process (``run()``) or returns from
    /// ``serveUntilDrained()``.
    private func finish() {
        let onFinished: (@Sendable () -> Void)? = state.withLockedValue { state in
            guard !state.finished else { return nil }
            state.finished = true
            state.heartbeats?.cancel()
            state.heartbeats = nil
            return state.onFinished
        }
        onFinished?()
    }
}
