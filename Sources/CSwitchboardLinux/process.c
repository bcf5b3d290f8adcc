#include "CSwitchboardLinux.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <stdlib.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

const uint32_t sb_EPOLLIN = EPOLLIN;
const uint32_t sb_EPOLLOUT = EPOLLOUT;
const uint32_t sb_EPOLLERR = EPOLLERR;
const uint32_t sb_EPOLLHUP = EPOLLHUP;

int sb_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int sb_epoll_add(int ep, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data.u64 = data};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

int sb_epoll_modify(int ep, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data.u64 = data};
    return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

int sb_epoll_remove(int ep, int fd) { return epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); }

int sb_epoll_wait(int ep, sb_epoll_event *events, int max, int timeoutMilliseconds) {
    struct epoll_event raw[64];
    if (max > 64) max = 64;
    int n = epoll_wait(ep, raw, max, timeoutMilliseconds);
    for (int i = 0; i < n; i++) {
        events[i].events = raw[i].events;
        events[i].data = raw[i].data.u64;
    }
    return n;
}

int sb_signalfd_open(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int sb_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof(info));
    if (n < 0) return -1;
    if (n != (ssize_t)sizeof(info)) {
        errno = EIO;
        return -1;
    }
    return (int)info.ssi_signo;
}

// The master's signal handlers (sb_signals_install). A handler only counts its signal and writes to the wake
// descriptor; the master's loop takes the counts. Lock-free atomics are async-signal-safe.
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal handlers need lock-free atomics");
static atomic_uint sb_signal_counts[NSIG];
static atomic_int sb_signal_wake = -1;
static atomic_int sb_signal_handlers_running;
static atomic_int sb_signals_owned;
static struct sigaction sb_signal_previous[NSIG];
static int sb_signal_installed[NSIG];
/// The loop thread's signal mask without the installed signals (sb_signals_prepare_wait): epoll_pwait takes it.
static sigset_t sb_signal_wait_mask;

static void sb_signal_handler(int signal) {
    int saved = errno;
    atomic_fetch_add(&sb_signal_handlers_running, 1);
    if (signal > 0 && signal < NSIG) atomic_fetch_add(&sb_signal_counts[signal], 1);
    int fd = atomic_load(&sb_signal_wake);
    if (fd >= 0) {
        uint64_t one = 1;
        ssize_t ignored = write(fd, &one, sizeof(one));  // EAGAIN: the counter is full, the loop wakes anyway
        (void)ignored;
    }
    atomic_fetch_sub(&sb_signal_handlers_running, 1);
    errno = saved;
}

static void sb_signals_put_back(void) {
    for (int signal = 1; signal < NSIG; signal++) {
        if (!sb_signal_installed[signal]) continue;
        sigaction(signal, &sb_signal_previous[signal], NULL);
        sb_signal_installed[signal] = 0;
    }
}

int sb_signals_install(const int *signals, int count, int wakeFD) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&sb_signals_owned, &expected, 1)) {
        errno = EBUSY;
        return -1;
    }
    for (int i = 0; i < count; i++) {
        if (signals[i] <= 0 || signals[i] >= NSIG) {
            atomic_store(&sb_signals_owned, 0);
            errno = EINVAL;
            return -1;
        }
        atomic_store(&sb_signal_counts[signals[i]], 0);
    }
    atomic_store(&sb_signal_wake, wakeFD);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = sb_signal_handler;
    sigfillset(&action.sa_mask);  // as libuv: no handler interrupts another on the same thread
    for (int i = 0; i < count; i++) {
        int signal = signals[i];
        if (sb_signal_installed[signal]) continue;
        // SA_RESTART: the program's other threads see no EINTR on our account. A child that stops or continues is
        // none of the master's business (SA_NOCLDSTOP); one that exits is.
        action.sa_flags = SA_RESTART | (signal == SIGCHLD ? SA_NOCLDSTOP : 0);
        if (sigaction(signal, &action, &sb_signal_previous[signal]) != 0) {
            int failure = errno;
            sb_signals_restore();
            errno = failure;
            return -1;
        }
        sb_signal_installed[signal] = 1;
    }
    return 0;
}

int sb_signals_prepare_wait(void) {
    sigset_t mask;
    int rc = pthread_sigmask(SIG_BLOCK, NULL, &mask);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    for (int signal = 1; signal < NSIG; signal++) {
        if (sb_signal_installed[signal]) sigdelset(&mask, signal);
    }
    sb_signal_wait_mask = mask;
    return 0;
}

int sb_epoll_wait_signals(int ep, sb_epoll_event *events, int max, int timeoutMilliseconds) {
    struct epoll_event raw[64];
    if (max > 64) max = 64;
    int n = epoll_pwait(ep, raw, max, timeoutMilliseconds, &sb_signal_wait_mask);
    for (int i = 0; i < n; i++) {
        events[i].events = raw[i].events;
        events[i].data = raw[i].data.u64;
    }
    return n;
}

unsigned sb_signals_take(int signal) {
    if (signal <= 0 || signal >= NSIG) return 0;
    return atomic_exchange(&sb_signal_counts[signal], 0);
}

void sb_signals_restore(void) {
    if (atomic_load(&sb_signals_owned) == 0) return;
    sb_signals_put_back();
    // A handler that started before the dispositions went back may still be about to write to the descriptor. It
    // counts itself running before it reads the descriptor and this stores -1 before it reads the count (both
    // sequentially consistent): either it sees -1, or this sees it running and waits for it.
    atomic_store(&sb_signal_wake, -1);
    while (atomic_load(&sb_signal_handlers_running) != 0) sched_yield();
    atomic_store(&sb_signals_owned, 0);
}

int sb_child_signal_reset_if_ignored(void) {
    struct sigaction current;
    if (sigaction(SIGCHLD, NULL, &current) != 0) return -1;
    int automatic = current.sa_handler == SIG_IGN ||
                    (current.sa_handler == SIG_DFL && (current.sa_flags & SA_NOCLDWAIT) != 0);
    if (!automatic) return 0;
    struct sigaction defaults;
    memset(&defaults, 0, sizeof(defaults));
    defaults.sa_handler = SIG_DFL;
    sigemptyset(&defaults.sa_mask);
    return sigaction(SIGCHLD, &defaults, NULL) == 0 ? 1 : -1;
}

static double sb_cpu_seconds(const struct rusage *usage) {
    return (double)usage->ru_utime.tv_sec + (double)usage->ru_utime.tv_usec / 1e6 + (double)usage->ru_stime.tv_sec
        + (double)usage->ru_stime.tv_usec / 1e6;
}

int sb_pidfd_reap(int pidfd, int *exitCode, int *signaled, double *cpuSeconds) {
    siginfo_t info;
    struct rusage usage;
    memset(&info, 0, sizeof(info));
    memset(&usage, 0, sizeof(usage));
    *exitCode = 0;
    *signaled = 0;
    *cpuSeconds = 0;
    if (syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED | WNOHANG, &usage) != 0) return -1;
    if (info.si_pid == 0) return 0;
    *cpuSeconds = sb_cpu_seconds(&usage);
    if (info.si_code == CLD_EXITED) {
        *exitCode = info.si_status;
    } else {  // CLD_KILLED or CLD_DUMPED
        *exitCode = 128 + info.si_status;
        *signaled = 1;
    }
    return 1;
}

int sb_pidfd_send_signal(int pidfd, int signal) {
#ifdef SYS_pidfd_send_signal
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

static int sb_spawn_forked(const char *path, char *const argv[], char *const envp[], int channelCopy, int extraCopy,
                           const sb_worker_setup *setup, pid_t *pid);

/* The child starts with `mask` blocked and every signal at its default (what the parent ignored or handled is not
   inherited). */
static int sb_spawn_signals(posix_spawnattr_t *attr, const sigset_t *mask) {
    sigset_t defaults;
    sigfillset(&defaults);
    sigdelset(&defaults, SIGKILL);
    sigdelset(&defaults, SIGSTOP);
    int rc;
    if ((rc = posix_spawnattr_setsigmask(attr, mask)) != 0) return rc;
    if ((rc = posix_spawnattr_setsigdefault(attr, &defaults)) != 0) return rc;
    return posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

int sb_spawn(const char *path, char *const argv[], char *const envp[], int channel, int extra,
             const sb_worker_setup *setup, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    // Move the sources out of the way of 3 and 4 first, so that dup2 onto 3/4 never clobbers the other source.
    int channelCopy = fcntl(channel, F_DUPFD_CLOEXEC, 10);
    int extraCopy = extra >= 0 ? fcntl(extra, F_DUPFD_CLOEXEC, 10) : -1;
    if (channelCopy < 0 || (extra >= 0 && extraCopy < 0)) {
        rc = errno;
        goto done;
    }
    if (setup != NULL && (setup->setIdentity || setup->cpu >= 0)) {
        // posix_spawn cannot change the user or the CPUs before exec: fork, and do it in the child.
        rc = sb_spawn_forked(path, argv, envp, channelCopy, extraCopy, setup, pid);
        goto done;
    }
    if ((rc = posix_spawn_file_actions_adddup2(&actions, channelCopy, 3)) != 0) goto done;
    if (extraCopy >= 0 && (rc = posix_spawn_file_actions_adddup2(&actions, extraCopy, 4)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_addclosefrom_np(&actions, extraCopy >= 0 ? 5 : 4)) != 0) goto done;
    // The worker starts with the master's own signals blocked: a terminal's Ctrl-C (SIGINT), SIGQUIT and SIGHUP
    // reach the whole foreground process group, and a worker must not die of one in the window before it ignores
    // them (WorkerRuntime.current). Everything else is unblocked and at its default.
    sigset_t masterOnly;
    sigemptyset(&masterOnly);
    sigaddset(&masterOnly, SIGINT);
    sigaddset(&masterOnly, SIGQUIT);
    sigaddset(&masterOnly, SIGHUP);
    if ((rc = sb_spawn_signals(&attr, &masterOnly)) != 0) goto done;
    if (setup != NULL && setup->normalScheduling) {
        // The master's own policy (SCHED_BATCH) is inherited by a child otherwise.
        struct sched_param param = {0};
        short flags;
        if ((rc = posix_spawnattr_getflags(&attr, &flags)) != 0) goto done;
        if ((rc = posix_spawnattr_setschedpolicy(&attr, SCHED_OTHER)) != 0) goto done;
        if ((rc = posix_spawnattr_setschedparam(&attr, &param)) != 0) goto done;
        if ((rc = posix_spawnattr_setflags(&attr, flags | POSIX_SPAWN_SETSCHEDULER)) != 0) goto done;
    }
    rc = posix_spawn(pid, path, &actions, &attr, argv, envp);
done:
    if (channelCopy >= 0) close(channelCopy);
    if (extraCopy >= 0) close(extraCopy);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc;
}

pid_t sb_reap(int *exitCode, int *signaled) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    *signaled = 0;
    *exitCode = 0;
    if (pid > 0) {
        if (WIFEXITED(status)) {
            *exitCode = WEXITSTATUS(status);
        } else if (WIFSIGNALED(status)) {
            *exitCode = 128 + WTERMSIG(status);
            *signaled = 1;
        }
    }
    return pid;
}

pid_t sb_reap_pid(pid_t pid, int *exitCode, int *signaled, double *cpuSeconds) {
    int status = 0;
    struct rusage usage;
    memset(&usage, 0, sizeof(usage));
    pid_t result = wait4(pid, &status, WNOHANG, &usage);
    *signaled = 0;
    *exitCode = 0;
    *cpuSeconds = 0;
    if (result > 0) {
        *cpuSeconds = sb_cpu_seconds(&usage);
        if (WIFEXITED(status)) {
            *exitCode = WEXITSTATUS(status);
        } else if (WIFSIGNALED(status)) {
            *exitCode = 128 + WTERMSIG(status);
            *signaled = 1;
        }
    }
    return result;
}

int sb_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int sb_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int sb_eventfd_signal(int fd) {
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof(one));
    if (n < 0 && errno != EAGAIN) return -1;
    return 0;
}

int sb_eventfd_drain(int fd) {
    uint64_t value;
    ssize_t n = read(fd, &value, sizeof(value));
    if (n < 0 && errno != EAGAIN) return -1;
    return 0;
}

int sb_timerfd(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC); }

int sb_timerfd_arm(int fd, uint64_t deadline) {
    struct itimerspec spec;
    memset(&spec, 0, sizeof(spec));
    spec.it_value.tv_sec = (time_t)(deadline / 1000000000ull);
    spec.it_value.tv_nsec = (long)(deadline % 1000000000ull);
    return timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL);
}

int sb_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0); }

uint64_t sb_monotonic_nanoseconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int sb_ignore_master_signals(void) {
    // Ignoring discards what is pending; then the mask no longer matters for them.
    if (signal(SIGINT, SIG_IGN) == SIG_ERR || signal(SIGQUIT, SIG_IGN) == SIG_ERR || signal(SIGHUP, SIG_IGN) == SIG_ERR)
        return -1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0 ? 0 : -1;
}

int sb_raise_descriptor_limit(uint64_t *soft, uint64_t *hard) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return -1;
    if (limit.rlim_cur < limit.rlim_max) {
        struct rlimit raised = {.rlim_cur = limit.rlim_max, .rlim_max = limit.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    *soft = limit.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)limit.rlim_cur;
    *hard = limit.rlim_max == RLIM_INFINITY ? UINT64_MAX : (uint64_t)limit.rlim_max;
    return 0;
}

static int sb_spawn_forked(const char *path, char *const argv[], char *const envp[], int channelCopy, int extraCopy,
                           const sb_worker_setup *setup, pid_t *pid) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    sigset_t all, previous, masterOnly;
    sigfillset(&all);
    sigemptyset(&masterOnly);
    sigaddset(&masterOnly, SIGINT);
    sigaddset(&masterOnly, SIGQUIT);
    sigaddset(&masterOnly, SIGHUP);
    // No handler of the parent may run in the child between fork and exec.
    pthread_sigmask(SIG_BLOCK, &all, &previous);
    pid_t child = fork();
    if (child == 0) {
        // Only async-signal-safe calls from here to execve; the identity goes through raw system calls so that
        // glibc's cross-thread set*id machinery is never involved.
        int failure = 0;
        if (setup->cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(setup->cpu, &set);
            if (sched_setaffinity(0, sizeof(set), &set) != 0) failure = errno;
        }
        if (failure == 0 && setup->normalScheduling) failure = sb_set_scheduling_policy(SCHED_OTHER);
        if (failure == 0 && setup->setIdentity) {
            if (syscall(SYS_setgroups, (size_t)setup->groupCount, setup->groups) != 0 ||
                syscall(SYS_setresgid, setup->gid, setup->gid, setup->gid) != 0 ||
                syscall(SYS_setresuid, setup->uid, setup->uid, setup->uid) != 0)
                failure = errno;
        }
        if (failure == 0) {
            if (dup2(channelCopy, 3) < 0 || (extraCopy >= 0 && dup2(extraCopy, 4) < 0)) failure = errno;
        }
        if (failure == 0) {
            // Mark everything above the inherited ones close-on-exec (the report pipe must stay open until exec).
            syscall(SYS_close_range, extraCopy >= 0 ? 5 : 4, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
            struct sigaction defaults;
            memset(&defaults, 0, sizeof(defaults));
            defaults.sa_handler = SIG_DFL;
            for (int signal = 1; signal < NSIG; signal++) {
                if (signal != SIGKILL && signal != SIGSTOP) sigaction(signal, &defaults, NULL);
            }
            sigprocmask(SIG_SETMASK, &masterOnly, NULL);
            execve(path, argv, envp);
            failure = errno;
        }
        ssize_t ignored = write(report[1], &failure, sizeof(failure));
        (void)ignored;
        _exit(127);
    }
    int forkError = child < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    close(report[1]);
    if (forkError != 0) {
        close(report[0]);
        return forkError;
    }
    int failure = 0;
    ssize_t n;
    do {
        n = read(report[0], &failure, sizeof(failure));
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof(failure)) {
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
        return failure != 0 ? failure : EIO;
    }
    *pid = child;
    return 0;
}

int sb_lookup_user(const char *name, uint32_t *uid, uint32_t *gid, uint32_t *groups, int *groupCount) {
    char buffer[16384];
    struct passwd entry, *found = NULL;
    int rc = getpwnam_r(name, &entry, buffer, sizeof(buffer), &found);
    if (found == NULL) {
        errno = rc != 0 ? rc : ENOENT;
        return -1;
    }
    *uid = entry.pw_uid;
    *gid = entry.pw_gid;
    int count = *groupCount;
    if (getgrouplist(name, entry.pw_gid, (gid_t *)groups, &count) < 0) {
        errno = E2BIG;
        return -1;
    }
    *groupCount = count;
    return 0;
}

int sb_lookup_group(const char *name, uint32_t *gid) {
    char buffer[16384];
    struct group entry, *found = NULL;
    int rc = getgrnam_r(name, &entry, buffer, sizeof(buffer), &found);
    if (found == NULL) {
        errno = rc != 0 ? rc : ENOENT;
        return -1;
    }
    *gid = entry.gr_gid;
    return 0;
}

int sb_allowed_cpus(int *cpus, int max) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < max; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    }
    return count;
}

const int sb_SCHED_OTHER = SCHED_OTHER;
const int sb_SCHED_BATCH = SCHED_BATCH;

int sb_scheduling_policy(void) { return sched_getscheduler(0); }

const char *sb_scheduling_policy_name(int policy) {
    switch (policy) {
    case SCHED_OTHER: return "SCHED_OTHER";
    case SCHED_BATCH: return "SCHED_BATCH";
    case SCHED_IDLE: return "SCHED_IDLE";
    case SCHED_FIFO: return "SCHED_FIFO";
    case SCHED_RR: return "SCHED_RR";
#ifdef SCHED_DEADLINE
    case SCHED_DEADLINE: return "SCHED_DEADLINE";
#endif
    default: return NULL;
    }
}

int sb_set_scheduling_policy(int policy) {
    struct sched_param param = {0};
    return sched_setscheduler(0, policy, &param) == 0 ? 0 : errno;
}

int sb_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

pid_t sb_peek_exited_child(void) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return -1;
    return info.si_pid;
}

// MARK: the master's upgrade in place

int sb_spawn_check(const char *path, char *const argv[], char *const envp[], int output, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    sigset_t empty;
    sigemptyset(&empty);
    if ((rc = posix_spawn_file_actions_adddup2(&actions, output, 1)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_adddup2(&actions, output, 2)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3)) != 0) goto done;
    if ((rc = sb_spawn_signals(&attr, &empty)) != 0) goto done;
    rc = posix_spawn(pid, path, &actions, &attr, argv, envp);
done:
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc;
}

int sb_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
}

int sb_memfd(const char *name) {
    return memfd_create(name, 0);
}

int sb_open_own_image(void) {
    return open("/proc/self/exe", O_RDONLY);
}

static int sb_block(const int *signals, int count, sigset_t *previous) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int i = 0; i < count; i++) sigaddset(&mask, signals[i]);
    return pthread_sigmask(SIG_BLOCK, &mask, previous);
}

typedef struct {
    sigset_t mask;
    struct sigaction actions[8];
    int count;
} sb_exec_saved;

static int sb_exec_prepare(const int *signals, int count, const int *ignored, int ignoredCount, sb_exec_saved *saved) {
    saved->count = 0;
    int rc = sb_block(signals, count, &saved->mask);
    if (rc != 0) return rc;
    struct sigaction ignore;
    memset(&ignore, 0, sizeof(ignore));
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    for (int i = 0; i < ignoredCount && i < 8; i++) {
        sigaction(ignored[i], &ignore, &saved->actions[i]);
        saved->count = i + 1;
    }
    return 0;
}

static void sb_exec_restore(const int *ignored, sb_exec_saved *saved) {
    for (int i = 0; i < saved->count; i++) sigaction(ignored[i], &saved->actions[i], NULL);
    pthread_sigmask(SIG_SETMASK, &saved->mask, NULL);
}

int sb_exec(const char *path, char *const argv[], char *const envp[], const int *signals, int count,
            const int *ignored, int ignoredCount) {
    sb_exec_saved saved;
    int rc = sb_exec_prepare(signals, count, ignored, ignoredCount, &saved);
    if (rc != 0) return rc;
    execve(path, argv, envp);
    int failure = errno;
    sb_exec_restore(ignored, &saved);
    return failure;
}

int sb_exec_descriptor(int fd, char *const argv[], char *const envp[], const int *signals, int count,
                       const int *ignored, int ignoredCount) {
    sb_exec_saved saved;
    int rc = sb_exec_prepare(signals, count, ignored, ignoredCount, &saved);
    if (rc != 0) return rc;
    syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
    int failure = errno;
    sb_exec_restore(ignored, &saved);
    return failure;
}

int sb_unblock_signals(const int *signals, int count) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int i = 0; i < count; i++) sigaddset(&mask, signals[i]);
    pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
    return 0;
}

int sb_is_open(int fd) {
    return fcntl(fd, F_GETFD) >= 0 ? 1 : 0;
}
