/// Whether the built-in engine reads a connection as soon as it adopts it (issue 23).
///
/// A connection accepted by a listener that defers (`--defer-accept`, a socket unit's `DeferAcceptSec=`) comes with
/// its request, and reading it at once answers it without the connection ever joining the epoll set. Without
/// deferral the master (or a reuseport worker) accepts as soon as the handshake completes and the request follows:
/// under a load of one request per connection more than nine reads at adoption in ten found nothing, a system call
/// each (BENCHMARKS.md, "Tail latency", fourteenth part). So the engine keeps score of what its reads at adoption
/// found and reads at once only while at least half of them found data; otherwise a new connection goes straight
/// into the epoll set (level-triggered, so a request already there is reported at the next wait), and one adoption
/// in ``sampleEvery`` still reads at once, so that the score follows a listener or clients that change.
struct AdoptRead {
    /// While skipping, one adoption in this many reads at once anyway.
    static var sampleEvery: Int { 8 }
    /// The share of recent reads at adoption that found data, in 1/1024: each read moves it an eighth of the way to
    /// 1024 (found) or 0 (nothing). It starts at 1024: read until shown otherwise.
    private(set) var foundShare = 1024
    /// Adoptions since the last read at adoption, while skipping.
    private var sinceRead = 0

    /// Whether to read the connection being adopted now.
    mutating func readNow() -> Bool {
        if foundShare >= 512 { return true }
        sinceRead += 1
        guard sinceRead >= Self.sampleEvery else { return false }
        sinceRead = 0
        return true
    }

    /// What a read at adoption found: data or the end of the stream (`true`), or nothing yet.
    mutating func record(found: Bool) {
        foundShare += ((found ? 1024 : 0) - foundShare) / 8
    }
}
