import Logging

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Whether this process is the primary (the master) or a worker, decided from the environment like Node's
/// `cluster.isPrimary` / `cluster.isWorker`.
public enum Cluster {
    /// True in a process started by a Switchboard master as a worker (`SWITCHBOARD_WORKER_ID` is set).
    public static var isWorker: Bool { WorkerRuntime.isWorker }
    /// True in every other process: it should run a ``Supervisor``.
    public static var isPrimary: Bool { !isWorker }
    /// This build's version (`switchboard --version`).
    public static let version = "0.7.0"
    /// This build: ``version`` and, where the linker recorded one, the first 12 hex digits of the program's GNU build
    /// id (`0.7.0+1a2b3c4d5e6f`), so two builds of one version tell apart. Workers report it in their hello;
    /// `switchboard status` shows it per worker, so a half-rolled cluster is visible.
    public static let build: String = {
        let id = Syscalls.mainBuildID().prefix(6)
        guard !id.isEmpty else { return version }
        let digits = Array("0123456789abcdef")
        return version + "+" + String(id.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xf)]] })
    }()
}

/// The master of a Switchboard cluster: binds, accepts, passes connections to worker processes and supervises them.
///
/// Create it, consume ``events`` from a task, then call ``run(listener:)`` on a thread that may block:
///
/// ```swift
/// let supervisor = try Supervisor(configuration: configuration)
/// Task { for await event in supervisor.events { print(event) } }
/// let exitCode = try supervisor.run()
/// ```
///
/// Every other method is safe from any thread or task.
///
/// ## Signals
///
/// With `handleSignals` (the default) the supervisor installs process-wide handlers for TERM, INT and QUIT (stop),
/// HUP (reload), TTIN and TTOU (scale) and CHLD while it exists, and puts the previous ones back when it is
/// deinitialized. As in libuv, a handler only counts its signal and wakes the master's loop through an eventfd, which
/// is all a signal handler may safely do; the loop acts on it. The kernel delivers a signal sent to the process to
/// any thread that does not block it, so blocking the signals on one thread (with a signalfd) would leave them to the
/// default action on threads started earlier (an async `main`, an `EventLoopGroup`, Dispatch): a HUP would kill the
/// master, a TTIN stop it. A handler runs on whichever thread the kernel picks, so the program may start threads
/// before or after it. One supervisor per process can handle signals. Whatever `handleSignals` says, a SIGCHLD the
/// process inherited ignored (`SIG_IGN` survives exec) is reset to its default: ignored, the kernel would reap the
/// workers before the master could.
public final class Supervisor: @unchecked Sendable {
    // @unchecked: `master` is only touched by run(), on the one thread that calls it (run() traps if called twice);
    // the other methods go through `control` (a Mutex plus an eventfd) and the stream's continuation, both thread-safe.
    private let master: Master
    private let control: MasterControl
    private let continuation: AsyncStream<SupervisorEvent>.Continuation
    private let started = AtomicFlag()

    /// Lifecycle events and worker messages, in order. Finishes when ``run(listener:)`` returns.
    public let events: AsyncStream<SupervisorEvent>

    /// Creates a supervisor.
    /// - Parameters:
    ///   - configuration: Where to listen, how many workers, dispatch mode and timeouts.
    ///   - logger: Where lifecycle log lines go.
    ///   - handleSignals: Handle TERM/INT/QUIT (stop), HUP (reload), TTIN/TTOU (scale) itself, on whichever thread
    ///     they arrive (see Signals above). Pass false when the program handles signals itself (for example through
    ///     swift-service-lifecycle) and calls ``stop()``.
    /// - Throws: ``SwitchboardError`` when the configuration is invalid, or when another supervisor in this process
    ///   handles signals.
    public init(
        configuration: Configuration,
        logger: Logger = Logger(label: "switchboard"),
        handleSignals: Bool = true
    ) throws(SwitchboardError) {
        master = try Master(configuration: configuration, logger: logger, handleSignals: handleSignals)
        control = master.control
        (events, continuation) = AsyncStream.makeStream(of: SupervisorEvent.self, bufferingPolicy: .bufferingNewest(4096))
        let continuation = self.continuation
        master.eventSink = { continuation.yield($0) }
    }

    /// Binds the listener (or uses `listener`), starts the workers and supervises them until stopped. Blocks.
    /// - Parameter listener: An already listening socket to use instead of binding (socket activation).
    /// - Returns: The process exit code: 0 after a graceful stop, 70 after a crash loop.
    /// - Throws: ``SwitchboardError`` when the port cannot be bound or the first workers cannot be started.
    public func run(listener: CInt? = nil) throws(SwitchboardError) -> Int32 {
        precondition(started.setOnce(), "Supervisor.run() called twice")
        defer { continuation.finish() }
        return try master.run(inheritedListener: listener)
    }

    /// Calls `body` with the bound address (numeric, IPv6 in brackets) and port once every worker is ready (before
    /// ``SupervisorEvent/listening(port:)``). Set it before ``run(listener:)``.
    public func onListening(_ body: @escaping (_ host: String, _ port: Int) -> Void) {
        precondition(!started.isSet, "set onListening before run()")
        master.onListening = body
    }

    /// Starts a rolling reload (like SIGHUP).
    public func reload() { control.submit(.reload) }

    /// Stops gracefully (like SIGTERM); a second call kills the workers at once.
    public func stop() { control.submit(.stop) }

    /// Upgrades the master in place, as `switchboard upgrade` and SIGUSR2 do: the program's file on disk is
    /// pre-checked (run with this process's arguments, it must answer for this configuration and exit), then this
    /// process execs it, keeping its PID, its listener and its workers, and adopts them in the new image (which runs
    /// ``run(listener:)`` again, as the program's `main` does). A rolling reload then moves the workers onto the new
    /// build, unless `masterOnly`. The outcome is in the log and in `switchboard status`; if the new image cannot
    /// adopt, the old one is execed back and keeps serving.
    public func upgrade(masterOnly: Bool = false) { control.submit(.upgrade(masterOnly: masterOnly)) }

    /// Adds one worker (like SIGTTIN).
    public func addWorker() { control.submit(.addWorker) }

    /// Drains and removes one worker, never the last (like SIGTTOU).
    public func removeWorker() { control.submit(.removeWorker) }

    /// Sends application bytes to one worker (Node's `worker.send`).
    /// - Parameters:
    ///   - bytes: At most 64 KiB.
    ///   - worker: The worker's id (``WorkerInfo/id``).
    /// - Throws: ``SwitchboardError`` when the payload is too large.
    public func send(_ bytes: [UInt8], toWorker worker: Int) throws(SwitchboardError) {
        try Self.checkSize(bytes)
        control.submit(.send(worker: worker, bytes))
    }

    /// Sends application bytes to every worker.
    /// - Parameter bytes: At most 64 KiB.
    /// - Throws: ``SwitchboardError`` when the payload is too large.
    public func broadcast(_ bytes: [UInt8]) throws(SwitchboardError) {
        try Self.checkSize(bytes)
        control.submit(.broadcast(bytes))
    }

    /// Sends a value as JSON to one worker, which decodes it with ``WorkerRuntime/decode(_:fromJSON:)``.
    /// - Parameters:
    ///   - value: Any `Encodable` value whose JSON is at most 64 KiB.
    ///   - worker: The worker's id.
    /// - Throws: ``SwitchboardError`` when encoding fails or the JSON is too large.
    public func send(json value: some Encodable, toWorker worker: Int) throws(SwitchboardError) {
        try send(Self.encode(value), toWorker: worker)
    }

    static func checkSize(_ bytes: [UInt8]) throws(SwitchboardError) {
        guard bytes.count <= WireCodec.maxPayload else {
            throw SwitchboardError(
                .usage, "message of \(bytes.count) bytes is over the \(WireCodec.maxPayload)-byte limit: send less")
        }
    }

    static func encode(_ value: some Encodable) throws(SwitchboardError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(value))
        } catch {
            throw SwitchboardError(.usage, "cannot encode the message as JSON: \(error)")
        }
    }
}

extension WorkerRuntime {
    /// Sends a value as JSON to the master.
    /// - Parameter value: Any `Encodable` value whose JSON is at most 64 KiB.
    /// - Throws: ``SwitchboardError`` when encoding fails, the JSON is too large or the channel failed.
    public func send(json value: some Encodable) throws(SwitchboardError) {
        try send(message: Supervisor.encode(value))
    }

    /// Decodes a JSON message sent with ``Supervisor/send(json:toWorker:)``.
    /// - Parameters:
    ///   - type: The type to decode.
    ///   - bytes: The message.
    /// - Returns: The value.
    /// - Throws: ``SwitchboardError`` when the bytes are not that type's JSON.
    public static func decode<T: Decodable>(_ type: T.Type, fromJSON bytes: [UInt8]) throws(SwitchboardError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw SwitchboardError(.usage, "message is not a \(T.self) in JSON: \(error)")
        }
    }
}

/// A flag that can be set once, from any thread.
final class AtomicFlag: Sendable {
    private let value = Mutex(false)

    /// Sets the flag; returns false when it was already set.
    func setOnce() -> Bool {
        value.withLock { value in
            defer { value = true }
            return !value
        }
    }

    var isSet: Bool { value.withLock { $0 } }
}

import Synchronization
