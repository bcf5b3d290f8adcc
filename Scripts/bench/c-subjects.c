/*
 * c-subjects.c: minimal C reference subjects for Scripts/bench/bench.py (the physical limit of each design on this
 * machine, without Switchboard's supervision, heartbeats, limits or Swift).
 *
 *   c-subjects --mode c-rr-close|c-rr-ack|c-reuseport [--host 127.0.0.1] [--port 0] [--workers 2]
 *              [--defer-accept <seconds>] [--master-work-ns <nanoseconds>] [--worker-work-ns <nanoseconds>]
 *              [--master-batch]
 *
 * c-rr-close   The master accepts (accept4, level-triggered epoll, up to 16 connections per burst, again while a
 *              burst comes back full), picks a worker for each connection in round-robin order, then sends every
 *              worker its share of the burst in ONE sendmsg with SCM_RIGHTS over a SOCK_SEQPACKET socketpair (as
 *              Switchboard's master does), and closes its copies right after that sendmsg.
 * c-rr-ack     The same master, but it keeps its copies until the worker acknowledges them: a worker that wakes up
 *              for connections reads every message waiting, sends one acknowledgement (the number of descriptors
 *              it got) before it serves them, and the master closes that many of its oldest copies for that worker
 *              when the acknowledgement arrives (as Switchboard's master does). The difference is the cost of the
 *              acknowledgement design: one more wakeup and read for the master, and often the last close.
 * c-reuseport  The master only reserves the port (bound with SO_REUSEPORT, never listening); each worker binds
 *              its own SO_REUSEPORT listener on it and accepts (up to 64 per wakeup); the kernel spreads them.
 *
 * --defer-accept sets TCP_DEFER_ACCEPT on the listener that accepts (the master's, or each c-reuseport worker's), as
 * Switchboard's --defer-accept does: the like-for-like reference for Switchboard's deferred subjects.
 *
 * --master-work-ns makes the master spend that much more CPU time (a loop on its thread's CPU clock) after each
 * connection it accepts: the C master made costlier by a known amount, to measure how much the close tail depends on
 * the master's CPU per connection (bench.py's c-rr-close-slow). --worker-work-ns does the same in each worker for
 * each connection it takes on, before it reads it (bench.py's c-rr-close-wslow and c-reuseport-wslow): how much the
 * close tail, and the pair's ratio, depend on the workers' CPU per connection.
 *
 * --master-batch runs the master under SCHED_BATCH once its workers are forked (they keep the normal policy), as
 * Switchboard's --master-scheduling batch does (bench.py's c-rr-close-batch): what that policy gives a minimal master.
 *
 * Workers: one epoll loop each. A new connection gets TCP_NODELAY (as Switchboard's worker sets it) and is read at
 * once (the request is usually there already); it joins the epoll set only if it has to wait. HTTP/1.1 just
 * enough for wrk: the head ends at CRLFCRLF, `Connection: close` (or HTTP/1.0 without keep-alive) closes after the
 * answer, pipelined requests in one read are all answered in one write, a Content-Length body is skipped. Every
 * answer is `200 OK` with the body `Handled by worker: <pid>`.
 *
 * Once every worker is ready the master prints, like Switchboard:
 *   listening on <host>:<port> with <n> workers (<mode>)
 * SIGTERM or SIGINT: the master stops its workers (SIGTERM, then waits for them) and exits 0; it prints what it
 * passed (connections, messages, acknowledgements, wakeups) on stderr. Workers die with the master
 * (PR_SET_PDEATHSIG). A worker that dies makes the master stop the others and exit 1.
 *
 * Built by bench.py with `cc -O2` into bench-results/c/. Linux only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum mode { RR_CLOSE, RR_ACK, REUSEPORT };
static const char *const mode_names[] = {"c-rr-close", "c-rr-ack", "c-reuseport"};

#define ACCEPT_BURST 16   /* the master: connections per burst (Switchboard's acceptBurst) */
#define WORKER_ACCEPTS 64 /* a reuseport worker: accepts per wakeup (as Switchboard's worker) */
#define MAX_FDS 64        /* descriptors per message, at most */
#define BACKLOG 511
#define MAX_WORKERS 1024
#define IN_CAP 8192 /* request head limit per connection */

/* Messages on the channel: 8 bytes, kind at [0], a uint32 count at [4]. */
#define MSG_CONNS 'C' /* master -> worker, with SCM_RIGHTS */
#define MSG_READY 'R' /* worker -> master, once */
#define MSG_ACK 'A'   /* worker -> master, c-rr-ack: count = descriptors received */

static void die(const char *what) {
    fprintf(stderr, "c-subjects[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
    exit(1);
}

static void put_msg(char buf[8], char kind, uint32_t count) {
    memset(buf, 0, 8);
    buf[0] = kind;
    memcpy(buf + 4, &count, 4);
}

static uint32_t msg_count(const char buf[8]) {
    uint32_t c;
    memcpy(&c, buf + 4, 4);
    return c;
}

/* Sends one message with `nfds` descriptors; returns sendmsg's result. */
static ssize_t send_fds(int sock, char kind, const int *fds, int nfds, int flags) {
    char data[8];
    put_msg(data, kind, (uint32_t)nfds);
    struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)nfds);
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
}

static int defer_accept_seconds; /* --defer-accept: 0 = off */
static long master_work_ns;      /* --master-work-ns: 0 = off */
static int master_batch;         /* --master-batch */
static long worker_work_ns;      /* --worker-work-ns: 0 = off */

/* --master-work-ns, --worker-work-ns: runs for that much CPU time (the thread's own clock: time it spends preempted
 * does not count). */
static void spend_cpu(long ns) {
    struct timespec start, now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
    do {
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < ns);
}

/* TCP_DEFER_ACCEPT on a listener that accepts, when asked for. */
static void defer_accepts(int fd) {
    if (defer_accept_seconds > 0 &&
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_accept_seconds, sizeof(defer_accept_seconds)) < 0)
        die("TCP_DEFER_ACCEPT");
}

static int tcp_socket(const char *host, int port, int reuseport, struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) die("SO_REUSEADDR");
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) die("SO_REUSEPORT");
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr->sin_addr) != 1) {
        fprintf(stderr, "c-subjects: --host must be an IPv4 address, got %s\n", host);
        exit(2);
    }
    if (bind(fd, (struct sockaddr *)addr, sizeof(*addr)) < 0) die("bind");
    return fd;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Worker                                                                                                       */

struct conn {
    struct conn *next_free;
    int fd;
    uint32_t events; /* what the epoll set watches; 0 = not in it */
    int close_after; /* answer queued for a request that ends the connection */
    size_t inlen;
    size_t skip; /* body bytes still to discard */
    char *out;
    size_t outlen, outoff, outcap;
    char in[IN_CAP];
};

static struct {
    enum mode mode;
    int epoll;
    int channel;
    int listener; /* c-reuseport only */
    struct conn **table;
    size_t table_cap;
    struct conn *free_list;
    uint32_t pending_ack;
    int channel_out; /* watching the channel for EPOLLOUT (an acknowledgement waits) */
    char ok[256], ok_close[256], ok_ka10[256], head[256], head_close[256], head_ka10[256];
    size_t ok_len, ok_close_len, ok_ka10_len, head_len, head_close_len, head_ka10_len;
} W;

#define TOKEN_CHANNEL ((uint64_t)1 << 40)
#define TOKEN_LISTENER ((uint64_t)2 << 40)

static void build_responses(void) {
    char body[64];
    int blen = snprintf(body, sizeof(body), "Handled by worker: %d", (int)getpid());
    const char *fmt = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s";
    W.ok_len = (size_t)snprintf(W.ok, sizeof(W.ok), fmt, blen, "", body);
    W.ok_close_len = (size_t)snprintf(W.ok_close, sizeof(W.ok_close), fmt, blen, "Connection: close\r\n", body);
    W.ok_ka10_len = (size_t)snprintf(W.ok_ka10, sizeof(W.ok_ka10), fmt, blen, "Connection: keep-alive\r\n", body);
    W.head_len = (size_t)snprintf(W.head, sizeof(W.head), fmt, blen, "", "");
    W.head_close_len = (size_t)snprintf(W.head_close, sizeof(W.head_close), fmt, blen, "Connection: close\r\n", "");
    W.head_ka10_len = (size_t)snprintf(W.head_ka10, sizeof(W.head_ka10), fmt, blen, "Connection: keep-alive\r\n", "");
}

static void append_out(struct conn *c, const char *p, size_t n) {
    if (c->outlen + n > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 1024;
        while (cap < c->outlen + n) cap *= 2;
        char *nb = realloc(c->out, cap);
        if (!nb) die("realloc");
        c->out = nb;
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

/* Does the header value [v, end) hold the token `tok` (comma separated, any case)? */
static int has_token(const char *v, const char *end, const char *tok) {
    size_t tl = strlen(tok);
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ',')) v++;
        const char *s = v;
        while (v < end && *v != ',') v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, tok, tl) == 0) return 1;
    }
    return 0;
}

/* Answers every complete request head in c->in; returns -1 on a request it cannot take (the caller closes). */
static int parse_requests(struct conn *c) {
    size_t pos = 0;
    while (pos < c->inlen && !c->close_after) {
        if (c->skip) {
            size_t n = c->inlen - pos < c->skip ? c->inlen - pos : c->skip;
            pos += n;
            c->skip -= n;
            continue;
        }
        char *start = c->in + pos;
        size_t avail = c->inlen - pos;
        char *end = memmem(start, avail, "\r\n\r\n", 4);
        if (!end) break;
        char *line_end = memmem(start, (size_t)(end - start) + 2, "\r\n", 2);
        int is_head = (line_end - start) >= 5 && memcmp(start, "HEAD ", 5) == 0;
        int http10 = (line_end - start) >= 8 && memcmp(line_end - 8, "HTTP/1.0", 8) == 0;
        int saw_close = 0, saw_keepalive = 0;
        size_t content_length = 0;
        for (char *h = line_end + 2; h < end + 2;) {
            char *he = memmem(h, (size_t)(end + 2 - h), "\r\n", 2);
            if (!he) break;
            char *colon = memchr(h, ':', (size_t)(he - h));
            if (colon) {
                size_t nl = (size_t)(colon - h);
                if (nl == 10 && strncasecmp(h, "connection", 10) == 0) {
                    saw_close |= has_token(colon + 1, he, "close");
                    saw_keepalive |= has_token(colon + 1, he, "keep-alive");
                } else if (nl == 14 && strncasecmp(h, "content-length", 14) == 0) {
                    content_length = strtoul(colon + 1, NULL, 10);
                } else if (nl == 17 && strncasecmp(h, "transfer-encoding", 17) == 0) {
                    return -1; /* no chunked bodies here */
                }
            }
            h = he + 2;
        }
        int keep = http10 ? (saw_keepalive && !saw_close) : !saw_close;
        if (is_head) {
            if (!keep) append_out(c, W.head_close, W.head_close_len);
            else if (http10) append_out(c, W.head_ka10, W.head_ka10_len);
            else append_out(c, W.head, W.head_len);
        } else {
            if (!keep) append_out(c, W.ok_close, W.ok_close_len);
            else if (http10) append_out(c, W.ok_ka10, W.ok_ka10_len);
            else append_out(c, W.ok, W.ok_len);
        }
        if (!keep) c->close_after = 1;
        pos = (size_t)(end + 4 - c->in);
        c->skip = content_length;
    }
    if (c->close_after) {
        c->inlen = 0; /* whatever follows a closing request is ignored */
        return 0;
    }
    if (pos > 0) {
        memmove(c->in, c->in + pos, c->inlen - pos);
        c->inlen -= pos;
    }
    if (c->inlen == IN_CAP) return -1; /* a head larger than the buffer */
    return 0;
}

static struct conn *conn_new(int fd) {
    struct conn *c = W.free_list;
    if (c) {
        W.free_list = c->next_free;
    } else {
        c = malloc(sizeof(*c));
        if (!c) die("malloc");
        c->out = NULL;
        c->outcap = 0;
    }
    c->fd = fd;
    c->events = 0;
    c->close_after = 0;
    c->inlen = c->skip = c->outlen = c->outoff = 0;
    if ((size_t)fd >= W.table_cap) {
        size_t cap = W.table_cap ? W.table_cap : 1024;
        while (cap <= (size_t)fd) cap *= 2;
        struct conn **nt = realloc(W.table, cap * sizeof(*nt));
        if (!nt) die("realloc");
        memset(nt + W.table_cap, 0, (cap - W.table_cap) * sizeof(*nt));
        W.table = nt;
        W.table_cap = cap;
    }
    W.table[fd] = c;
    return c;
}

static void conn_close(struct conn *c) {
    /* Leave the epoll set explicitly: in c-rr-ack the master may still hold a copy, which would keep it there. */
    if (c->events) epoll_ctl(W.epoll, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    W.table[c->fd] = NULL;
    if (c->outcap > 65536) {
        free(c->out);
        c->out = NULL;
        c->outcap = 0;
    }
    c->next_free = W.free_list;
    W.free_list = c;
}

/* Writes what is queued; 1 when all of it went out, 0 when the socket is full, -1 on an error (closed). */
static int conn_flush(struct conn *c) {
    while (c->outoff < c->outlen) {
        ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            conn_close(c);
            return -1;
        }
        c->outoff += (size_t)n;
    }
    c->outoff = c->outlen = 0;
    return 1;
}

/* Reads what is there, answers it, then closes or watches what the connection waits for. */
static void conn_service(struct conn *c, int readable) {
    while (readable && !c->close_after) {
        size_t room = IN_CAP - c->inlen;
        ssize_t n = read(c->fd, c->in + c->inlen, room);
        if (n == 0) {
            conn_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            conn_close(c);
            return;
        }
        c->inlen += (size_t)n;
        if (parse_requests(c) < 0) {
            conn_close(c);
            return;
        }
        if ((size_t)n < room) break; /* drained: epoll says when there is more */
    }
    int flushed = conn_flush(c);
    if (flushed < 0) return;
    if (flushed == 1 && c->close_after) {
        conn_close(c);
        return;
    }
    uint32_t want = flushed ? EPOLLIN : (c->close_after ? EPOLLOUT : EPOLLIN | EPOLLOUT);
    if (want == c->events) return;
    struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)c->fd};
    if (epoll_ctl(W.epoll, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        conn_close(c);
        return;
    }
    c->events = want;
}

static void adopt(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (worker_work_ns > 0) spend_cpu(worker_work_ns);
    conn_service(conn_new(fd), 1);
}

static void channel_interest(int out) {
    if (W.channel_out == out) return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u64 = TOKEN_CHANNEL};
    epoll_ctl(W.epoll, EPOLL_CTL_MOD, W.channel, &ev);
    W.channel_out = out;
}

static void send_ack(void) {
    if (W.pending_ack == 0) return;
    char data[8];
    put_msg(data, MSG_ACK, W.pending_ack);
    ssize_t n = send(W.channel, data, sizeof(data), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == (ssize_t)sizeof(data)) {
        W.pending_ack = 0;
        channel_interest(0);
    } else if (n < 0 && errno == EAGAIN) {
        channel_interest(1); /* the master is behind; send the sum when there is room */
    } else {
        exit(0); /* the master is gone */
    }
}

/* Reads every message waiting, acknowledges them in one message (c-rr-ack), then serves the connections. */
static void receive_connections(void) {
    static int got[4096];
    int ngot = 0;
    for (;;) {
        char data[8];
        struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
        union {
            char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
            struct cmsghdr align;
        } control;
        struct msghdr msg;
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof(control.buf);
        ssize_t n = recvmsg(W.channel, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            exit(0);
        }
        if (n == 0) exit(0); /* the master is gone */
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
            size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                got[ngot++] = fd;
            }
        }
        if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
            fprintf(stderr, "c-subjects[%d]: truncated message from the master\n", (int)getpid());
            exit(1);
        }
        if (ngot > (int)(sizeof(got) / sizeof(got[0])) - MAX_FDS) break; /* serve these first */
    }
    if (W.mode == RR_ACK && ngot > 0) {
        W.pending_ack += (uint32_t)ngot;
        send_ack();
    }
    for (int i = 0; i < ngot; i++) adopt(got[i]);
}

static void accept_connections(void) {
    for (int i = 0; i < WORKER_ACCEPTS; i++) {
        int fd = accept4(W.listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN) fprintf(stderr, "c-subjects[%d]: accept: %s\n", (int)getpid(), strerror(errno));
            return;
        }
        adopt(fd);
    }
}

static void worker_main(enum mode mode, int channel, const char *host, int port) {
    W.mode = mode;
    W.channel = channel;
    W.listener = -1;
    build_responses();
    W.epoll = epoll_create1(EPOLL_CLOEXEC);
    if (W.epoll < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TOKEN_CHANNEL};
    if (epoll_ctl(W.epoll, EPOLL_CTL_ADD, channel, &ev) < 0) die("epoll_ctl channel");
    if (mode == REUSEPORT) {
        struct sockaddr_in addr;
        W.listener = tcp_socket(host, port, 1, &addr);
        if (listen(W.listener, BACKLOG) < 0) die("listen");
        defer_accepts(W.listener);
        struct epoll_event lev = {.events = EPOLLIN, .data.u64 = TOKEN_LISTENER};
        if (epoll_ctl(W.epoll, EPOLL_CTL_ADD, W.listener, &lev) < 0) die("epoll_ctl listener");
    }
    char ready[8];
    put_msg(ready, MSG_READY, 0);
    if (send(channel, ready, sizeof(ready), MSG_NOSIGNAL) != (ssize_t)sizeof(ready)) die("send ready");

    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(W.epoll, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            uint64_t token = events[i].data.u64;
            uint32_t e = events[i].events;
            if (token == TOKEN_CHANNEL) {
                if (e & EPOLLOUT) send_ack();
                if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) receive_connections();
            } else if (token == TOKEN_LISTENER) {
                accept_connections();
            } else {
                int fd = (int)token;
                struct conn *c = (size_t)fd < W.table_cap ? W.table[fd] : NULL;
                if (!c) continue; /* closed earlier in this batch */
                if ((e & (EPOLLERR | EPOLLHUP)) && !(e & EPOLLIN)) {
                    conn_close(c);
                    continue;
                }
                conn_service(c, (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Master                                                                                                       */

struct fifo { /* c-rr-ack: the master's copies a worker has not acknowledged yet, oldest first */
    int *fds;
    size_t cap, head, len;
};

static void fifo_push(struct fifo *q, int fd) {
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 256;
        int *nf = malloc(cap * sizeof(int));
        if (!nf) die("malloc");
        for (size_t i = 0; i < q->len; i++) nf[i] = q->fds[(q->head + i) % q->cap];
        free(q->fds);
        q->fds = nf;
        q->cap = cap;
        q->head = 0;
    }
    q->fds[(q->head + q->len) % q->cap] = fd;
    q->len++;
}

static struct {
    enum mode mode;
    int nworkers;
    pid_t pids[MAX_WORKERS];
    int channels[MAX_WORKERS];
    struct fifo unacked[MAX_WORKERS];
    int outbox[MAX_WORKERS][ACCEPT_BURST];
    int outlen[MAX_WORKERS];
    int next; /* round-robin cursor */
    int listener;
    int epoll;
    unsigned long long accepted, messages, acks, acked, wakeups, eagain_waits;
} M;

static void stop_workers_and_exit(int status) {
    for (int i = 0; i < M.nworkers; i++)
        if (M.pids[i] > 0) kill(M.pids[i], SIGTERM);
    for (int i = 0; i < M.nworkers; i++)
        if (M.pids[i] > 0) waitpid(M.pids[i], NULL, 0);
    fprintf(stderr,
            "c-subjects %s: accepted %llu connections, %llu messages (%.2f connections each), %llu "
            "acknowledgements (%llu connections), %llu master wakeups, %llu waits for a full channel\n",
            mode_names[M.mode], M.accepted, M.messages, M.messages ? (double)M.accepted / (double)M.messages : 0.0,
            M.acks, M.acked, M.wakeups, M.eagain_waits);
    exit(status);
}

static void worker_lost(int index) {
    fprintf(stderr, "c-subjects: worker %d (pid %d) is gone; stopping\n", index, (int)M.pids[index]);
    waitpid(M.pids[index], NULL, WNOHANG);
    stop_workers_and_exit(1);
}

/* Reads acknowledgements (and notices a worker that is gone). */
static void read_channel(int index) {
    for (;;) {
        char data[8];
        ssize_t n = recv(M.channels[index], data, sizeof(data), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            worker_lost(index);
        }
        if (n == 0) worker_lost(index);
        if (n == 8 && data[0] == MSG_ACK) {
            uint32_t count = msg_count(data);
            struct fifo *q = &M.unacked[index];
            M.acks++;
            M.acked += count;
            for (uint32_t k = 0; k < count && q->len > 0; k++) {
                close(q->fds[q->head]);
                q->head = (q->head + 1) % q->cap;
                q->len--;
            }
        }
    }
}

/* Sends every worker its share of the burst, one message each. */
static void flush_outboxes(void) {
    for (int i = 0; i < M.nworkers; i++) {
        int n = M.outlen[i];
        if (n == 0) continue;
        for (;;) {
            ssize_t r = send_fds(M.channels[i], MSG_CONNS, M.outbox[i], n, MSG_DONTWAIT);
            if (r >= 0) break;
            if (errno == EINTR) continue;
            if (errno != EAGAIN) worker_lost(i);
            /* The channel is full (not seen with wrk's 50 connections): wait for room, reading
             * acknowledgements meanwhile so that a worker waiting to acknowledge cannot deadlock us. */
            M.eagain_waits++;
            struct pollfd p = {.fd = M.channels[i], .events = POLLIN | POLLOUT};
            poll(&p, 1, 1000);
            if (p.revents & (POLLIN | POLLHUP | POLLERR)) read_channel(i);
        }
        M.messages++;
        if (M.mode == RR_CLOSE) {
            for (int k = 0; k < n; k++) close(M.outbox[i][k]);
        } else {
            for (int k = 0; k < n; k++) fifo_push(&M.unacked[i], M.outbox[i][k]);
        }
        M.outlen[i] = 0;
    }
}

static void accept_bursts(void) {
    for (;;) {
        int staged = 0;
        while (staged < ACCEPT_BURST) {
            int fd = accept4(M.listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                if (errno != EAGAIN) fprintf(stderr, "c-subjects: accept: %s\n", strerror(errno));
                break;
            }
            if (master_work_ns > 0) spend_cpu(master_work_ns);
            int w = M.next;
            M.next = (M.next + 1) % M.nworkers;
            M.outbox[w][M.outlen[w]++] = fd;
            staged++;
        }
        M.accepted += (unsigned long long)staged;
        if (staged > 0) flush_outboxes();
        if (staged < ACCEPT_BURST) return; /* the backlog is empty */
    }
}

static void usage(void) {
    fprintf(stderr, "usage: c-subjects --mode c-rr-close|c-rr-ack|c-reuseport [--host 127.0.0.1] [--port 0] "
                    "[--workers 2] [--defer-accept <seconds>] [--master-work-ns <nanoseconds>] "
                    "[--worker-work-ns <nanoseconds>] [--master-batch]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *mode_arg = NULL, *host = "127.0.0.1";
    int port = 0, workers = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--master-batch") == 0) {
            master_batch = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        if (strcmp(argv[i], "--mode") == 0) mode_arg = argv[++i];
        else if (strcmp(argv[i], "--host") == 0) host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0) port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--workers") == 0) workers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--defer-accept") == 0) defer_accept_seconds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--master-work-ns") == 0) master_work_ns = atol(argv[++i]);
        else if (strcmp(argv[i], "--worker-work-ns") == 0) worker_work_ns = atol(argv[++i]);
        else usage();
    }
    if (!mode_arg) usage();
    int found = 0;
    for (int m = 0; m < 3; m++)
        if (strcmp(mode_arg, mode_names[m]) == 0) {
            M.mode = (enum mode)m;
            found = 1;
        }
    if (!found || workers < 1 || workers > MAX_WORKERS || port < 0 || port > 65535 || defer_accept_seconds < 0 ||
        master_work_ns < 0 || worker_work_ns < 0)
        usage();
    M.nworkers = workers;

    signal(SIGPIPE, SIG_IGN);
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (sigprocmask(SIG_BLOCK, &stop, &old) < 0) die("sigprocmask");

    struct sockaddr_in addr;
    M.listener = tcp_socket(host, port, M.mode == REUSEPORT, &addr);
    if (M.mode != REUSEPORT && listen(M.listener, BACKLOG) < 0) die("listen");
    if (M.mode != REUSEPORT) defer_accepts(M.listener);
    /* In c-reuseport the master's socket only reserves the port: bound, never listening, so the kernel never
     * hands it a connection. */
    socklen_t alen = sizeof(addr);
    if (getsockname(M.listener, (struct sockaddr *)&addr, &alen) < 0) die("getsockname");
    port = ntohs(addr.sin_port);

    pid_t master = getpid();
    for (int i = 0; i < workers; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("PR_SET_PDEATHSIG");
            if (getppid() != master) _exit(1);
            sigprocmask(SIG_SETMASK, &old, NULL);
            close(M.listener);
            for (int k = 0; k < i; k++) close(M.channels[k]);
            close(sv[0]);
            worker_main(M.mode, sv[1], host, port);
            _exit(0);
        }
        close(sv[1]);
        M.pids[i] = pid;
        M.channels[i] = sv[0];
    }
    /* Wait for every worker's ready message (10 s at most). */
    for (int i = 0; i < workers; i++) {
        struct pollfd p = {.fd = M.channels[i], .events = POLLIN};
        if (poll(&p, 1, 10000) != 1) {
            fprintf(stderr, "c-subjects: worker %d did not get ready\n", i);
            stop_workers_and_exit(1);
        }
        char data[8];
        if (recv(M.channels[i], data, sizeof(data), 0) != 8 || data[0] != MSG_READY) worker_lost(i);
    }

    if (master_batch) {
        struct sched_param param = {0};
        if (sched_setscheduler(0, SCHED_BATCH, &param) < 0) die("sched_setscheduler");
    }
    M.epoll = epoll_create1(EPOLL_CLOEXEC);
    if (M.epoll < 0) die("epoll_create1");
    int sfd = signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) die("signalfd");
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)-1};
    if (epoll_ctl(M.epoll, EPOLL_CTL_ADD, sfd, &ev) < 0) die("epoll_ctl signalfd");
    if (M.mode != REUSEPORT) {
        ev.data.u64 = (uint64_t)-2;
        if (epoll_ctl(M.epoll, EPOLL_CTL_ADD, M.listener, &ev) < 0) die("epoll_ctl listener");
    }
    for (int i = 0; i < workers; i++) {
        ev.data.u64 = (uint64_t)i;
        if (epoll_ctl(M.epoll, EPOLL_CTL_ADD, M.channels[i], &ev) < 0) die("epoll_ctl channel");
    }

    printf("listening on %s:%d with %d workers (%s)\n", host, port, workers, mode_names[M.mode]);
    fflush(stdout);

    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(M.epoll, events, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        M.wakeups++;
        int listener_ready = 0;
        for (int i = 0; i < n; i++) {
            uint64_t token = events[i].data.u64;
            if (token == (uint64_t)-1) {
                stop_workers_and_exit(0);
            } else if (token == (uint64_t)-2) {
                listener_ready = 1;
            } else {
                read_channel((int)token);
            }
        }
        if (listener_ready) accept_bursts();
    }
}
