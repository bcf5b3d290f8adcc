import Foundation

/// Waits for a condition to hold, checking every 20 ms, up to `timeout`. Returns whether it held.
/// Tests wait on events this way; the bound is generous and never a pass/fail timing criterion.
@discardableResult
package func waitUntil(timeout: Duration = .seconds(20), _ condition: () throws -> Bool) rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.02)
    }
    return try condition()
}
