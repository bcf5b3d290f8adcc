// Built only with the package trait `Vapor` (`swift build --traits Vapor`).
#if Vapor
import Foundation
import SwitchboardTestSupport

/// Reads straight from a test connection's socket, with the time each read returned.
extension TestConnection {
    /// One read of up to 64 KiB: the bytes and when they arrived; empty when the peer closed.
    func readChunk() throws -> (bytes: [UInt8], at: Date) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
        if count < 0 { throw ProbeError.io("read: errno \(errno)") }
        return (Array(chunk[0..<count]), Date())
    }

    /// Reads until `done` holds for everything read so far, or the peer closes; every read with its arrival time.
    func read(until done: ([UInt8]) -> Bool) throws -> [(bytes: [UInt8], at: Date)] {
        var reads: [(bytes: [UInt8], at: Date)] = []
        var all: [UInt8] = []
        while !done(all) {
            let next = try readChunk()
            if next.bytes.isEmpty { break }
            reads.append(next)
            all += next.bytes
        }
        return reads
    }
}

extension Array where Element == UInt8 {
    var text: String { String(decoding: self, as: UTF8.self) }

    func contains(_ text: String) -> Bool {
        self.text.contains(text)
    }

    /// The index just past the first blank line (`\r\n\r\n`).
    var headEnd: Int? {
        guard count >= 4 else { return nil }
        for index in 0...(count - 4) where self[index..<(index + 4)].elementsEqual([13, 10, 13, 10]) {
            return index + 4
        }
        return nil
    }
}

#endif
