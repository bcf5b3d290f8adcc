// Built only with the package trait `Hummingbird` (`swift build --traits Hummingbird`).
#if Hummingbird
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The current time as an HTTP `Date` header value (RFC 9110 IMF-fixdate), formatted at most once a second.
final class HTTPDateCache: Sendable {
    private let cache = Mutex<(second: Int, text: String)>((-1, ""))

    /// Now, like `Sun, 06 Nov 1994 08:49:37 GMT`.
    var current: String {
        let now = Int(time(nil))
        return cache.withLock { cache in
            if cache.second != now {
                cache = (now, Self.format(secondsSinceEpoch: now))
            }
            return cache.text
        }
    }

    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Formats a time as an IMF-fixdate.
    /// - Parameter seconds: Seconds since 1970-01-01 00:00:00 UTC.
    /// - Returns: The date, like `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func format(secondsSinceEpoch seconds: Int) -> String {
        let (day, second) = seconds.quotientAndRemainder(dividingBy: 86_400)
        let days = second < 0 ? day - 1 : day
        let time = second < 0 ? second + 86_400 : second
        // The proleptic Gregorian date of a day number (H. Hinnant's civil_from_days).
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let dayOfMonth = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let weekday = ((days % 7) + 11) % 7  // 1970-01-01 was a Thursday
        func twoDigits(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(Self.days[weekday]), \(twoDigits(dayOfMonth)) \(months[month - 1]) \(year) "
            + "\(twoDigits(time / 3600)):\(twoDigits(time / 60 % 60)):\(twoDigits(time % 60)) GMT"
    }
}
#endif
