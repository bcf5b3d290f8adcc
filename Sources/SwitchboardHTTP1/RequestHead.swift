/// What the engine needs from a request head, parsed without allocating.
package struct RequestHead: Equatable {
    package enum Failure: Error, Equatable {
        case malformed
        case version
        case transferEncoding
    }

    /// Where the request target is in the parsed bytes (made a `String` only for the test hooks).
    package var target: Range<Int>
    package var isHead: Bool
    package var isHTTP10: Bool
    package var keepAlive: Bool
    package var contentLength: Int
    package var expectsContinue: Bool

    /// Parses the request line and headers in `bytes[start..<headEnd]` (`headEnd` is where `\r\n\r\n` starts).
    ///
    /// Runs once per request on every worker's hot path, so it reads `bytes` by index: no slices (each would retain
    /// the array), no closures, and a field name is compared only with the names of its length.
    package static func parse(_ bytes: [UInt8], _ start: Int, _ headEnd: Int) -> Result<RequestHead, Failure> {
        // Request line: method SP target SP HTTP/1.x, up to its CR; the first two spaces split it.
        var lineEnd = start
        var firstSpace = -1
        var secondSpace = -1
        while lineEnd < headEnd {
            let byte = bytes[lineEnd]
            if byte > 32 {
                lineEnd += 1
                continue
            }
            if byte == 13 { break }
            if byte == 32 {
                if firstSpace < 0 {
                    firstSpace = lineEnd
                } else if secondSpace < 0 {
                    secondSpace = lineEnd
                }
            }
            lineEnd += 1
        }
        guard Self.endsWithLineFeed(bytes, lineEnd, headEnd), firstSpace > start, secondSpace > firstSpace + 1 else {
            return .failure(.malformed)
        }
        for index in start..<firstSpace where bytes[index] < 65 || bytes[index] > 90 { return .failure(.malformed) }
        // The version: exactly `HTTP/d.d`, the name in any case.
        let version = secondSpace + 1
        guard lineEnd - version == 8, Self.equalsIgnoringCase(bytes, version, version + 5, "http/") else {
            return .failure(.malformed)
        }
        let major = bytes[version + 5]
        let minor = bytes[version + 7]
        guard bytes[version + 6] == 46, major >= 48 && major <= 57, minor >= 48 && minor <= 57 else {
            return .failure(.malformed)
        }
        guard major == 49 else { return .failure(.version) }
        let isHTTP10 = minor == 48
        for index in (firstSpace + 1)..<secondSpace where bytes[index] < 33 || bytes[index] == 127 {
            return .failure(.malformed)
        }

        var connectionClose = false
        var connectionKeepAlive = false
        var contentLength: Int?
        var expectsContinue = false
        var cursor = lineEnd + 2
        while cursor < headEnd + 2 {
            // One pass over each line. The name is a token right before the colon: obsolete line folding, lines
            // without a colon and whitespace before the colon (RFC 9112 5.1) are malformed.
            let colon = Self.tokenEnd(bytes, cursor, headEnd)
            guard colon < headEnd, bytes[colon] == 58 else {
                // No colon: the empty line that ends the head, or a malformed line.
                guard colon == cursor, colon == headEnd || bytes[colon] == 13,
                    Self.endsWithLineFeed(bytes, colon, headEnd)
                else { return .failure(.malformed) }
                break
            }
            guard colon > cursor else { return .failure(.malformed) }
            // The value runs to the CR, which must have its LF; a NUL or a line feed in it is rejected, not passed
            // on (RFC 9110 5.5).
            guard let end = Self.valueEnd(bytes, colon + 1, headEnd) else { return .failure(.malformed) }
            guard Self.endsWithLineFeed(bytes, end, headEnd) else { return .failure(.malformed) }
            var valueStart = colon + 1
            var valueEnd = end
            while valueStart < valueEnd && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
            while valueEnd > valueStart && (bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9) { valueEnd -= 1 }
            switch colon - cursor {
            case 10 where Self.equalsIgnoringCase(bytes, cursor, colon, "connection"):
                var tokenStart = valueStart
                while tokenStart < valueEnd {
                    var tokenEnd = tokenStart
                    while tokenEnd < valueEnd && bytes[tokenEnd] != 44 { tokenEnd += 1 }
                    var first = tokenStart
                    var last = tokenEnd
                    while first < last && (bytes[first] == 32 || bytes[first] == 9) { first += 1 }
                    while last > first && (bytes[last - 1] == 32 || bytes[last - 1] == 9) { last -= 1 }
                    if Self.equalsIgnoringCase(bytes, first, last, "close") { connectionClose = true }
                    if Self.equalsIgnoringCase(bytes, first, last, "keep-alive") { connectionKeepAlive = true }
                    tokenStart = tokenEnd + 1
                }
            case 14 where Self.equalsIgnoringCase(bytes, cursor, colon, "content-length"):
                guard valueEnd > valueStart, valueEnd - valueStart <= 18 else { return .failure(.malformed) }
                var length = 0
                for index in valueStart..<valueEnd {
                    let digit = bytes[index]
                    guard digit >= 48 && digit <= 57 else { return .failure(.malformed) }
                    length = length * 10 + Int(digit - 48)
                }
                if let earlier = contentLength, earlier != length { return .failure(.malformed) }
                contentLength = length
            case 17 where Self.equalsIgnoringCase(bytes, cursor, colon, "transfer-encoding"):
                return .failure(.transferEncoding)
            case 6 where Self.equalsIgnoringCase(bytes, cursor, colon, "expect"):
                expectsContinue = Self.equalsIgnoringCase(bytes, valueStart, valueEnd, "100-continue")
            default:
                break
            }
            cursor = end + 2
        }
        let isHead =
            firstSpace - start == 4 && bytes[start] == 72 && bytes[start + 1] == 69 && bytes[start + 2] == 65
            && bytes[start + 3] == 68  // HEAD
        return .success(
            RequestHead(
                target: (firstSpace + 1)..<secondSpace,
                isHead: isHead,
                isHTTP10: isHTTP10,
                keepAlive: isHTTP10 ? connectionKeepAlive && !connectionClose : !connectionClose,
                contentLength: contentLength ?? 0,
                expectsContinue: expectsContinue))
    }

    /// Whether the line that stops at `end` (a CR, or `headEnd`) ends with CRLF: a CR without its LF is malformed
    /// (RFC 9112 2.2), not a line end that takes the next byte with it. At `headEnd` the final CRLF CRLF follows.
    static func endsWithLineFeed(_ bytes: [UInt8], _ end: Int, _ headEnd: Int) -> Bool {
        end == headEnd || bytes[end + 1] == 10
    }

    /// Where the token that starts at `from` ends: the first byte in `bytes[from..<to]` that is not a `tchar`, or `to`.
    /// Out of line: inside `parse` its loop shared the registers with the whole parser, and spilled.
    @inline(never)
    static func tokenEnd(_ bytes: [UInt8], _ from: Int, _ to: Int) -> Int {
        var index = from
        while index < to && isTokenByte(bytes[index]) { index += 1 }
        return index
    }

    /// Where the field value that starts at `from` ends: its CR, or `to`; nil when a NUL or a line feed comes first.
    @inline(never)
    static func valueEnd(_ bytes: [UInt8], _ from: Int, _ to: Int) -> Int? {
        var index = from
        while index < to {
            let byte = bytes[index]
            if byte > 13 {
                index += 1
                continue
            }
            if byte == 13 { break }
            if byte == 0 || byte == 10 { return nil }
            index += 1
        }
        return index
    }

    /// A `tchar` (RFC 9110 5.6.2), what a field name is made of.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        if byte < 64 { return (tokenBytesBelow64 >> UInt64(byte)) & 1 != 0 }
        if byte < 128 { return (tokenBytesFrom64 >> UInt64(byte &- 64)) & 1 != 0 }
        return false
    }

    /// Bit n is set when byte n is a `tchar`: !#$%&'*+-. and the digits.
    static let tokenBytesBelow64: UInt64 = 0x03ff_6cfa_0000_0000
    /// Bit n is set when byte 64 + n is a `tchar`: the letters and ^_`|~.
    static let tokenBytesFrom64: UInt64 = 0x57ff_ffff_c7ff_fffe

    /// Whether `bytes[from..<to]` is `lowercase`, ASCII letters in any case.
    package static func equalsIgnoringCase(_ bytes: [UInt8], _ from: Int, _ to: Int, _ lowercase: StaticString) -> Bool {
        guard to - from == lowercase.utf8CodeUnitCount else { return false }
        return lowercase.withUTF8Buffer { expected in
            var index = from
            for byte in expected {
                let actual = bytes[index]
                let folded = actual >= 65 && actual <= 90 ? actual + 32 : actual
                if folded != byte { return false }
                index += 1
            }
            return true
        }
    }
}

extension RequestHead {
    /// Where the `\r\n\r\n` that ends a request head starts in `bytes[start..<end]`, if it is there.
    package static func headEnd(_ bytes: [UInt8], _ start: Int, _ end: Int) -> Int? {
        var index = start
        while index + 3 < end {
            if bytes[index + 3] == 10 {
                if bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 { return index }
                index += 1
            } else if bytes[index + 3] == 13 {
                index += 1
            } else {
                index += 4
            }
        }
        return nil
    }
}
