import Foundation
import SwitchboardTestSupport

/// A client loop on its own thread: one request per new connection, until stopped. Records every outcome with the
/// time it started and ended.
final class LoadLoop: @unchecked Sendable {
    // @unchecked: `outcomes` and `running` are only touched under `lock`.
    struct Outcome {
        var started: ContinuousClock.Instant
        var ended: ContinuousClock.Instant
        var result: Result<HTTPResponse, any Error>
    }

    private let lock = NSLock()
    private var outcomes: [Outcome] = []
    private var running = true
    private let done = DispatchSemaphore(value: 0)

    init(port: Int, path: String = "/") {
        Thread.detachNewThread { [self] in
            let clock = ContinuousClock()
            while lock.withLock({ running }) {
                let started = clock.now
                let result = Result { try get(port: port, path: path) }
                lock.withLock { outcomes.append(Outcome(started: started, ended: clock.now, result: result)) }
            }
            done.signal()
        }
    }

    /// Stops the loop and returns every outcome.
    func stop() -> [Outcome] {
        lock.withLock { running = false }
        done.wait()
        return lock.withLock { outcomes }
    }

    var count: Int { lock.withLock { outcomes.count } }
    var failures: [Outcome] {
        lock.withLock { outcomes.filter { if case .failure = $0.result { true } else { false } } }
    }
}
