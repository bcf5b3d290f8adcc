@testable import SwitchboardHTTP1

/// The request-head parser as it was before it was rewritten to index the bytes directly (2026-12-03), kept unchanged
/// as the oracle of `RequestHeadDifferentialTests` (it shares the parser's `endsWithLineFeed` and `equalsIgnoringCase`,
/// and keeps its own token test since the parser's became bit masks): the rewrite must give the same answer for every
/// input.
enum ReferenceRequestHead {
    /// Parses the request line and headers in `bytes[start..<headEnd]` (`headEnd` is where `\r\n\r\n` starts).
    static func parse(_ bytes: [UInt8], _ start: Int, _ headEnd: Int) -> Result<RequestHead, RequestHead.Failure> {
        // Request line: method SP target SP HTTP/1.x
        var lineEnd = start
        while lineEnd < headEnd && bytes[lineEnd] != 13 { lineEnd += 1 }
        guard RequestHead.endsWithLineFeed(bytes, lineEnd, headEnd),
            let firstSpace = bytes[start..<lineEnd].firstIndex(of: 32), firstSpace > start,
            let secondSpace = bytes[(firstSpace + 1)..<lineEnd].firstIndex(of: 32), secondSpace > firstSpace + 1
        else { return .failure(.malformed) }
        let method = bytes[start..<firstSpace]
        guard method.allSatisfy({ $0 >= 65 && $0 <= 90 }) else { return .failure(.malformed) }
        let version = bytes[(secondSpace + 1)..<lineEnd]
        guard version.count == 8, Self.equalsIgnoringCase(version.prefix(5), "http/") else { return .failure(.malformed) }
        let major = version[version.startIndex + 5]
        let minor = version[version.startIndex + 7]
        guard version[version.startIndex + 6] == 46, (48...57).contains(major), (48...57).contains(minor) else {
            return .failure(.malformed)
        }
        guard major == 49 else { return .failure(.version) }
        let isHTTP10 = minor == 48
        let target = bytes[(firstSpace + 1)..<secondSpace]
        guard !target.contains(where: { $0 < 33 || $0 == 127 }) else { return .failure(.malformed) }

        var connectionClose = false
        var connectionKeepAlive = false
        var contentLength: Int?
        var expectsContinue = false
        var cursor = lineEnd + 2
        while cursor < headEnd + 2 {
            var end = cursor
            while end < headEnd && bytes[end] != 13 { end += 1 }
            guard RequestHead.endsWithLineFeed(bytes, end, headEnd) else { return .failure(.malformed) }
            if end == cursor { break }
            // Obsolete line folding, lines without a colon and names that are not a token (whitespace before the
            // colon, RFC 9112 5.1) are malformed.
            guard let colon = bytes[cursor..<end].firstIndex(of: 58), colon > cursor,
                bytes[cursor..<colon].allSatisfy(Self.isTokenByte)
            else { return .failure(.malformed) }
            let name = bytes[cursor..<colon]
            var valueStart = colon + 1
            var valueEnd = end
            while valueStart < valueEnd && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
            while valueEnd > valueStart && (bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9) { valueEnd -= 1 }
            let value = bytes[valueStart..<valueEnd]
            // A value with a NUL or a line feed in it is rejected, not passed on (RFC 9110 5.5).
            guard !value.contains(0) && !value.contains(10) else { return .failure(.malformed) }
            if Self.equalsIgnoringCase(name, "connection") {
                var tokenStart = valueStart
                while tokenStart < valueEnd {
                    var tokenEnd = tokenStart
                    while tokenEnd < valueEnd && bytes[tokenEnd] != 44 { tokenEnd += 1 }
                    var first = tokenStart
                    var last = tokenEnd
                    while first < last && (bytes[first] == 32 || bytes[first] == 9) { first += 1 }
                    while last > first && (bytes[last - 1] == 32 || bytes[last - 1] == 9) { last -= 1 }
                    if Self.equalsIgnoringCase(bytes[first..<last], "close") { connectionClose = true }
                    if Self.equalsIgnoringCase(bytes[first..<last], "keep-alive") { connectionKeepAlive = true }
                    tokenStart = tokenEnd + 1
                }
            } else if Self.equalsIgnoringCase(name, "content-length") {
                guard !value.isEmpty, value.count <= 18, value.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
                    return .failure(.malformed)
                }
                let length = value.reduce(0) { $0 * 10 + Int($1 - 48) }
                if let earlier = contentLength, earlier != length { return .failure(.malformed) }
                contentLength = length
            } else if Self.equalsIgnoringCase(name, "transfer-encoding") {
                return .failure(.transferEncoding)
            } else if Self.equalsIgnoringCase(name, "expect") {
                expectsContinue = Self.equalsIgnoringCase(value, "100-continue")
            }
            cursor = end + 2
        }
        return .success(
            RequestHead(
                target: target.indices,
                isHead: method.elementsEqual("HEAD".utf8),
                isHTTP10: isHTTP10,
                keepAlive: isHTTP10 ? connectionKeepAlive && !connectionClose : !connectionClose,
                contentLength: contentLength ?? 0,
                expectsContinue: expectsContinue))
    }

    static func equalsIgnoringCase(_ bytes: ArraySlice<UInt8>, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        return lowercase.withUTF8Buffer { expected in
            var index = bytes.startIndex
            for byte in expected {
                let actual = bytes[index]
                let folded = actual >= 65 && actual <= 90 ? actual + 32 : actual
                if folded != byte { return false }
                index += 1
            }
            return true
        }
    }

    /// A `tchar` (RFC 9110 5.6.2), as the parser tested it before its bit masks: the reference keeps its own.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 48...57, 65...90, 97...122: true  // digits and letters
        case 33, 35, 36, 37, 38, 39, 42, 43, 45, 46, 94, 95, 96, 124, 126: true  // !#$%&'*+-.^_`|~
        default: false
        }
    }
}
