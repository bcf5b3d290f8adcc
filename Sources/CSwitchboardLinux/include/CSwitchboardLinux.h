#ifndef C_SWITCHBOARD_LINUX_H
#define C_SWITCHBOARD_LINUX_H

// What Swift cannot import on its own: CMSG macros, variadic prctl/fcntl, accept4, sockaddr unions,
// posix_spawn file actions, the packed epoll_event and signalfd_siginfo, signal handlers (which must be C to be
// async-signal-safe), waitid on a pidfd. Each function returns -1 with errno set on failure (unless it says
// otherwise), never retries EINTR, never allocates, never logs.

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#pragma clang assume_nonnull begin

/// Constants as plain ints.
extern const uint32_t sb_EPOLLIN;
extern const uint32_t sb_EPOLLOUT;
extern const uint32_t sb_EPOLLERR;
extern const uint32_t sb_EPOLLHUP;

/// Most descriptors one message carries.
#define SB_MAX_FDS_PER_MESSAGE 64

/// Creates a SOCK_SEQPACKET|SOCK_CLOEXEC socketpair. Returns 0, fds[0]/fds[1] set.
int sb_seqpacket_pair(int fds[_Nonnull 2]);

/// Sends one message of `len` bytes with `nfds` descriptors (0...SB_MAX_FDS_PER_MESSAGE) in SCM_RIGHTS,
/// MSG_DONTWAIT|MSG_NOSIGNAL unless `blocking`. Returns bytes sent. The caller keeps its copies of the fds.
ssize_t sb_send_message(int sock, const void *_Nullable buf, size_t len, const int *_Nullable fds, int nfds, int blocking);

/// Receives one message into buf (capacity cap) and up to `maxfds` descriptors (received close-on-exec).
/// Returns bytes received (0 means end of stream) and sets *nfds. A payload longer than cap or more fds than maxfds:
/// every received fd is closed and -1 with errno EMSGSIZE is returned. When the receiver is out of descriptors the
/// kernel installs only the first *nfds of those sent and drops the rest (MSG_CTRUNC): *truncated is set to 1.
/// `blocking` 0 adds MSG_DONTWAIT.
ssize_t sb_receive_message(int sock, void *buf, size_t cap, int *fds, int maxfds, int *nfds, int *truncated,
                           int blocking);

/// The bytes waiting in a socket's receive queue (SIOCINQ). For a SOCK_SEQPACKET unix socket: the sum of the
/// lengths of the messages not yet received. Returns -1 on error.
int sb_queued_bytes(int sock);

/// Copies the first `cap` bytes of the next message without removing it and without taking its descriptors
/// (MSG_PEEK|MSG_DONTWAIT, no control buffer). Returns the bytes copied, 0 at end of stream.
ssize_t sb_peek_message(int sock, void *buf, size_t cap);

/// A non-blocking, close-on-exec UNIX stream listener at `path`, mode 0600. A socket file there that nothing accepts
/// on (left by a master that is gone) is replaced; a live one gives EADDRINUSE.
int sb_unix_listen(const char *path, int backlog);

/// A blocking, close-on-exec connection to the UNIX stream socket at `path`.
int sb_unix_connect(const char *path);

/// The uid of the process at the other end of a UNIX socket (SO_PEERCRED).
int sb_peer_uid(int fd, uint32_t *uid);

/// For a listening TCP socket: the connections waiting in its accept queue and the queue's limit (TCP_INFO).
int sb_listen_queue(int fd, uint32_t *depth, uint32_t *limit);

/// accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) without the peer address.
int sb_accept(int listener);

/// Creates, configures, binds and listens on a TCP socket (close-on-exec, non-blocking).
/// `host` is a numeric IPv4 or IPv6 address; an empty string means every interface (IPv6 dual-stack, falling back to
/// IPv4). `reuseport` sets SO_REUSEPORT. With `listening` 0 the socket is only bound (it reserves the port in a
/// SO_REUSEPORT group without ever receiving a connection). On success stores the bound port in *boundPort and the family in *family.
/// On failure the socket is closed, -1 is returned and errno says why (EINVAL for an address that does not parse).
int sb_tcp_listen(const char *host, int port, int backlog, int reuseport, int listening, int *boundPort, int *family);

/// Writes the numeric address a bound socket is bound to into buf (IPv6 in brackets, "[::]" for every interface).
/// Returns 0.
int sb_local_address(int fd, char *buf, size_t cap);

/// Reads the port a bound socket listens on, or -1.
int sb_local_port(int fd);

/// Sets or clears O_NONBLOCK. Returns 0.
int sb_set_nonblocking(int fd, int on);

/// Sets or clears FD_CLOEXEC. Returns 0.
int sb_set_cloexec(int fd, int on);

/// epoll without the packed struct. `data` is returned as is by sb_epoll_wait.
int sb_epoll_create(void);
int sb_epoll_add(int ep, int fd, uint32_t events, uint64_t data);
int sb_epoll_modify(int ep, int fd, uint32_t events, uint64_t data);
int sb_epoll_remove(int ep, int fd);
typedef struct { uint32_t events; uint64_t data; } sb_epoll_event;
int sb_epoll_wait(int ep, sb_epoll_event *events, int max, int timeoutMilliseconds);

/// Blocks the given signals in the calling thread (threads it starts later inherit the mask) and returns a
/// non-blocking, close-on-exec signalfd for them. Only for a single-threaded process (the built-in worker): in one
/// with other threads the kernel may deliver the signals to those (the master uses sb_signals_install).
int sb_signalfd_open(const int *signals, int count);
/// Reads one pending signal from a signalfd: returns its number, or -1 (EAGAIN when none is pending).
int sb_signalfd_read(int fd);

/// Installs a handler for each of `signals` in the whole process (sigaction, SA_RESTART, every signal blocked while it
/// runs), keeping the previous dispositions for sb_signals_restore. The handler is async-signal-safe: it adds 1 to the
/// signal's count (sb_signals_take) and writes 1 to `wakeFD` (an eventfd), saving and restoring errno, so the signal is
/// taken whichever thread the kernel delivers it to. One owner at a time: EBUSY while installed.
int sb_signals_install(const int *signals, int count, int wakeFD);
/// On the thread that runs the loop: keeps its signal mask less the installed signals for sb_epoll_wait_signals.
int sb_signals_prepare_wait(void);
/// sb_epoll_wait with the installed signals unblocked for the duration of the wait (epoll_pwait), so they are
/// delivered even when every thread blocks them (a mask inherited from the parent, or set by the program): the handler
/// runs on this thread and the wait returns EINTR.
int sb_epoll_wait_signals(int ep, sb_epoll_event *events, int max, int timeoutMilliseconds);
/// How many times `signal` arrived since the last take (0 for one not installed); resets the count.
unsigned sb_signals_take(int signal);
/// Puts back the dispositions sb_signals_install replaced, and returns once no handler can write to its wake
/// descriptor any more (the caller may then close it). Does nothing when none are installed.
void sb_signals_restore(void);

/// Sets SIGCHLD to SIG_DFL if it is ignored (SIG_IGN, which survives exec, or SA_NOCLDWAIT), when the kernel reaps
/// children by itself and waiting for one fails with ECHILD. Returns 1 when it changed it, 0 when it was left alone.
int sb_child_signal_reset_if_ignored(void);

/// What a worker process is set up with before it runs: its user and groups (when `setIdentity`), its CPU (unless -1),
/// and the normal scheduling policy (`SCHED_OTHER`, when `normalScheduling`) in place of the master's.
typedef struct {
    int setIdentity;
    uint32_t uid;
    uint32_t gid;
    const uint32_t *_Nullable groups;
    int groupCount;
    int cpu;
    int normalScheduling;
} sb_worker_setup;

/// Spawns `path` with `argv`/`envp` (NULL-terminated). `channel` becomes fd 3 and `extra` (unless -1) fd 4 in the
/// child; every other fd above 2 is closed; the signal mask holds only SIGINT, SIGQUIT and SIGHUP and every signal is
/// at its default. With a `setup` that changes the user or the CPU, the child takes them before exec (fork + execve:
/// the worker never runs a single instruction of its own as the master's user or on other CPUs).
/// Returns 0 and sets *pid; on failure returns an errno value (posix_spawn's convention), not -1.
int sb_spawn(const char *path, char *const _Nullable argv[_Nonnull], char *const _Nullable envp[_Nonnull],
             int channel, int extra, const sb_worker_setup *_Nullable setup, pid_t *pid);

/// Looks up a user: its uid, primary gid and every group it is in (at most *groupCount on entry; the count on exit).
/// Returns -1 with errno ENOENT when there is no such user.
int sb_lookup_user(const char *name, uint32_t *uid, uint32_t *gid, uint32_t *groups, int *groupCount);

/// Looks up a group's gid. Returns -1 with errno ENOENT when there is no such group.
int sb_lookup_group(const char *name, uint32_t *gid);

/// The CPUs this process may run on (sched_getaffinity), at most `max`, ascending. Returns the count or -1.
int sb_allowed_cpus(int *cpus, int max);

extern const int sb_SCHED_OTHER;
extern const int sb_SCHED_BATCH;
/// The calling thread's scheduling policy (sched_getscheduler), or -1.
int sb_scheduling_policy(void);
/// The name of a scheduling policy (`SCHED_OTHER`, `SCHED_IDLE`, ...), or NULL for a number this libc does not name.
const char *_Nullable sb_scheduling_policy_name(int policy);
/// Sets the calling thread's scheduling policy to `policy` at priority 0 (`SCHED_OTHER` or `SCHED_BATCH`); its nice
/// value stays. Returns 0 or an errno value.
int sb_set_scheduling_policy(int policy);

/// The GNU build id of the main program (the linker's `--build-id` note), copied into `out` (at most `cap` bytes).
/// Returns its length, or 0 when the program has none.
int sb_main_build_id(uint8_t *out, int cap);

/// In a worker: ignores SIGINT, SIGQUIT and SIGHUP (the master's signals, which a terminal or `kill -<pgid>` sends
/// to the whole process group; ignoring discards any already pending) and unblocks them in the calling thread.
int sb_ignore_master_signals(void);

/// Raises the soft RLIMIT_NOFILE to the hard limit (as Go does and systemd advises) and reports both after it
/// (UINT64_MAX for unlimited). Returns 0; the limit stays as it was when raising is refused.
int sb_raise_descriptor_limit(uint64_t *soft, uint64_t *hard);

/// waitpid(-1, WNOHANG). Returns the pid (0 when none has exited) and sets *exitCode to the exit status or, when
/// killed by a signal, to 128 + signal with *signaled = 1.
pid_t sb_reap(int *exitCode, int *signaled);

/// wait4(pid, WNOHANG) for one child. Returns pid once it has exited (setting *exitCode and *signaled like sb_reap,
/// and *cpuSeconds to the user plus system time it used, from its rusage), 0 while it runs, -1 on error (ECHILD: not
/// our child, or already reaped).
pid_t sb_reap_pid(pid_t pid, int *exitCode, int *signaled, double *cpuSeconds);

/// pidfd_open(pid, 0): a close-on-exec descriptor that becomes readable when the process exits.
int sb_pidfd_open(pid_t pid);

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphans of this process's descendants become its children (as they would be
/// PID 1's), so it can reap them.
int sb_set_child_subreaper(void);

/// waitid(P_ALL, WEXITED|WNOHANG|WNOWAIT): the pid of a child that has exited, without reaping it; 0 when none has.
pid_t sb_peek_exited_child(void);

/// waitid(P_PIDFD, pidfd, WEXITED|WNOHANG), through the system call, whose fifth argument glibc leaves out: returns
/// 1 once the child has exited (setting *exitCode and *signaled like sb_reap, and *cpuSeconds to the user plus system
/// time it used, from its rusage), 0 while it runs, -1 on error (ECHILD: not waitable, reaped already or by the
/// kernel; EINVAL: a kernel before 5.4).
int sb_pidfd_reap(int pidfd, int *exitCode, int *signaled, double *cpuSeconds);

/// pidfd_send_signal(pidfd, signal, NULL, 0): the signal reaches that process and no other (ESRCH once it has exited,
/// even if its pid was reused).
int sb_pidfd_send_signal(int pidfd, int signal);

/// eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC).
int sb_eventfd(void);
/// Adds 1 to an eventfd. Returns 0.
int sb_eventfd_signal(int fd);
/// Resets an eventfd. Returns 0 (also when it was not signalled).
int sb_eventfd_drain(int fd);

/// timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK|TFD_CLOEXEC).
int sb_timerfd(void);
/// Arms a timerfd to expire once at `deadline` (CLOCK_MONOTONIC nanoseconds, absolute; not 0), replacing any earlier
/// setting and clearing an expiry not yet read. Returns 0, or -1 with errno.
int sb_timerfd_arm(int fd, uint64_t deadline);

/// prctl(PR_SET_PDEATHSIG, signal).
int sb_set_parent_death_signal(int signal);

/// CLOCK_MONOTONIC in nanoseconds.
uint64_t sb_monotonic_nanoseconds(void);

/// Connects a blocking TCP socket to host:port (numeric IPv4 or IPv6). Returns the fd. For tests and tools.
int sb_tcp_connect(const char *host, int port);


// MARK: the master's upgrade in place (exec with the same PID)

/// Spawns `path` for the upgrade's pre-check: `output` (a pipe's write end) becomes its stdout and stderr, every other
/// fd above 2 is closed, the signal mask is empty and every signal at its default. Returns 0 and sets *pid, or an
/// errno value (posix_spawn's convention).
int sb_spawn_check(const char *path, char *const _Nullable argv[_Nonnull], char *const _Nullable envp[_Nonnull],
                   int output, pid_t *pid);

/// pipe2(O_CLOEXEC | O_NONBLOCK). Returns 0 or -1 with errno.
int sb_pipe(int fds[_Nonnull 2]);

/// memfd_create(name, 0): an anonymous file that survives exec. Returns the fd or -1 with errno.
int sb_memfd(const char *name);

/// open("/proc/self/exe", O_RDONLY): the running image, without close-on-exec, kept so a new image can exec it back
/// (sb_exec_descriptor). Returns the fd or -1 with errno.
int sb_open_own_image(void);

/// Blocks `signals` in the calling thread and sets `ignored` to SIG_IGN (which survives exec), then execve(path,
/// argv, envp): the blocked signals arrive pending in the new image, which takes them once its handlers are installed
/// (between exec and then, their default action would end the process); the ignored ones are lost in that window
/// instead of ending or stopping it, for a new image whose handlers come late. Returns only on failure: the mask and
/// the dispositions are put back and an errno value returned.
int sb_exec(const char *path, char *const _Nullable argv[_Nonnull], char *const _Nullable envp[_Nonnull],
            const int *signals, int count, const int *ignored, int ignoredCount);

/// As sb_exec, through a descriptor of the file (execveat with AT_EMPTY_PATH, as fexecve).
int sb_exec_descriptor(int fd, char *const _Nullable argv[_Nonnull], char *const _Nullable envp[_Nonnull],
                       const int *signals, int count, const int *ignored, int ignoredCount);

/// Unblocks `signals` in the calling thread (after an exec that arrived with them blocked). Returns 0.
int sb_unblock_signals(const int *signals, int count);

/// Whether `fd` is an open descriptor (fcntl F_GETFD). Returns 1 or 0.
int sb_is_open(int fd);

#pragma clang assume_nonnull end

#endif
