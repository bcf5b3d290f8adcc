/// Answers every request with 200 and one body, from responses built once (no allocation per request).
package struct FixedResponder: HTTP1Responder {
    let ok: [UInt8]
    let okClose: [UInt8]
    let okKeepAlive10: [UInt8]
    let head: [UInt8]
    let headClose: [UInt8]
    let headKeepAlive10: [UInt8]

    /// - Parameter body: The response body (`text/plain`).
    package init(body: String) {
        let start = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
        func make(_ extra: String, _ withBody: Bool) -> [UInt8] {
            Array((start + extra + "\r\n" + (withBody ? body : "")).utf8)
        }
        ok = make("", true)
        okClose = make("Connection: close\r\n", true)
        okKeepAlive10 = make("Connection: keep-alive\r\n", true)
        head = make("", false)
        headClose = make("Connection: close\r\n", false)
        headKeepAlive10 = make("Connection: keep-alive\r\n", false)
    }

    package func respond(to request: RequestHead, in bytes: [UInt8], keepAlive: Bool) -> HTTP1Reply {
        HTTP1Reply(bytes: response(isHead: request.isHead, keepAlive: keepAlive, isHTTP10: request.isHTTP10))
    }

    package func response(isHead: Bool, keepAlive: Bool, isHTTP10: Bool) -> [UInt8] {
        switch (isHead, keepAlive, isHTTP10) {
        case (false, false, _): okClose
        case (false, true, false): ok
        case (false, true, true): okKeepAlive10
        case (true, false, _): headClose
        case (true, true, false): head
        case (true, true, true): headKeepAlive10
        }
    }
}
