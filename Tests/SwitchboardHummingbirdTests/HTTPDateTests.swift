// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import Foundation
import Testing

@testable import SwitchboardHummingbird

struct HTTPDateTests {
    @Test func formatsIMFFixdates() {
        #expect(HTTPDateCache.format(secondsSinceEpoch: 784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDateCache.format(secondsSinceEpoch: 0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDateCache.format(secondsSinceEpoch: 951_782_400) == "Tue, 29 Feb 2000 00:00:00 GMT")
        #expect(HTTPDateCache.format(secondsSinceEpoch: -1) == "Wed, 31 Dec 1969 23:59:59 GMT")
    }

    @Test func agreesWithFoundationOverManyDays() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        // Every 7 hours and 13 seconds from 1970 to 2100, about 160,000 instants.
        for seconds in stride(from: 0, to: 4_102_444_800, by: 25_213) {
            let expected = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
            let actual = HTTPDateCache.format(secondsSinceEpoch: seconds)
            guard actual == expected else {
                Issue.record("\(seconds): \(actual) != \(expected)")
                return
            }
        }
    }

    @Test func currentIsNow() {
        let now = HTTPDateCache().current
        #expect(now.hasSuffix(" GMT") && now.count == 29, "\(now)")
    }
}
#endif
