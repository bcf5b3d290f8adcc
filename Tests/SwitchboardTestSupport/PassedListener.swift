/// Starts a program with a listener passed the way systemd passes one: fd 3, `LISTEN_FDS`, `LISTEN_PID` of the same
/// process. Use ``launcher(setUp:)`` as `SwitchboardProcess`'s wrapper: `["/usr/bin/python3", "-c", launcher]`.
package enum PassedListener {
    /// A Python script that binds a TCP listener on 127.0.0.1 (any port), runs `setUp` on it (Python with `listener`
    /// and `socket` in scope, one statement a line), puts it at fd 3 and execs its arguments.
    package static func launcher(setUp: String) -> String {
        """
        import os, signal, socket, sys
        for number in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these for itself
            signal.signal(number, signal.SIG_DFL)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        \(setUp)
        if listener.fileno() != 3:
            os.dup2(listener.fileno(), 3)
        os.set_inheritable(3, True)
        os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
        os.execv(sys.argv[1], sys.argv[1:])
        """
    }
}
