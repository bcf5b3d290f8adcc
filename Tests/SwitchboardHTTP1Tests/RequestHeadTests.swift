import Testing

@testable import SwitchboardHTTP1

@Suite struct RequestHeadTests {
    func parse(_ text: String) -> Result<RequestHead, RequestHead.Failure>? {
        let bytes = Array(text.utf8)
        guard let end = RequestHead.headEnd(bytes, 0, bytes.count) else { return nil }
        return RequestHead.parse(bytes, 0, end)
    }

    @Test func keepAliveFollowsTheVersionAndConnectionHeader() throws {
        #expect(try parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n")?.get().keepAlive == true)
        #expect(try parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")?.get().keepAlive == false)
        #expect(try parse("GET / HTTP/1.0\r\n\r\n")?.get().keepAlive == false)
        #expect(try parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")?.get().keepAlive == true)
        #expect(try parse("GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n")?.get().keepAlive == false)
    }

    @Test func headBodyAndContinueAreRead() throws {
        let head = try #require(try parse("HEAD /x HTTP/1.1\r\ncontent-length: 12\r\nExpect: 100-continue\r\n\r\n")?.get())
        #expect(head.isHead)
        #expect(head.contentLength == 12)
        #expect(head.expectsContinue)
        #expect(head.target == 5..<7)
    }

    @Test func badInputHasAStatus() {
        #expect(parse("GET /\r\n\r\n") == .failure(.malformed))
        #expect(parse("get / HTTP/1.1\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/2.0\r\n\r\n") == .failure(.version))
        #expect(parse("GET / HTTX/1.1\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\r\nno colon\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\r\n folded: x\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n") == .failure(.malformed))
        #expect(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == .failure(.transferEncoding))
        #expect(parse("GET /a\u{7f}b HTTP/1.1\r\n\r\n") == .failure(.malformed))
    }

    /// RFC 9112, 2.2: a CR not followed by LF is an error, in the request line or a field line; it used to end the
    /// line and take the next byte with it.
    @Test func aBareCarriageReturnIsMalformed() {
        #expect(parse("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\r\nHost: a\rXX: b\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\rXHost: a\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n") == .failure(.malformed))
    }

    /// RFC 9112, 5.1: whitespace between a field name and its colon is an error (it used to make a name nobody
    /// matched, so `Content-Length :` was ignored); so is any other byte that is not a token character.
    @Test func aFieldNameIsATokenRightBeforeItsColon() throws {
        #expect(parse("GET / HTTP/1.1\r\nHost : a\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n") == .failure(.malformed))
        #expect(parse("POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\r\nX(y): a\r\n\r\n") == .failure(.malformed))
        let fine = try #require(try parse("GET / HTTP/1.1\r\nX-a.b_c~1!#$%&'*+^`|: v:w\r\nHost:a\r\n\r\n")?.get())
        #expect(fine.keepAlive)
    }

    /// The field name's bytes are RFC 9110's `tchar` (5.6.2) and nothing else, for every byte value: the parser tests
    /// them with two bit masks, checked here against the RFC's list.
    @Test func tokenBytesAreExactlyTheRFCsTchar() {
        let tchar = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        for byte in UInt8.min...UInt8.max {
            #expect(RequestHead.isTokenByte(byte) == tchar.contains(byte), "byte \(byte)")
        }
    }

    /// RFC 9110, 5.5: a field value with a NUL or a line feed in it is rejected, not passed on.
    @Test func aFieldValueWithALineFeedOrANulIsMalformed() {
        #expect(parse("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n") == .failure(.malformed))
        #expect(parse("GET / HTTP/1.1\r\nX: a\nHost: b\r\n\r\n") == .failure(.malformed))
    }

    @Test func headEndIsFoundOnlyWhenComplete() {
        let bytes = Array("GET / HTTP/1.1\r\nHost: a\r\n\r\nrest".utf8)
        #expect(RequestHead.headEnd(bytes, 0, bytes.count) == 23)
        #expect(RequestHead.headEnd(bytes, 0, 25) == nil)
    }
}
