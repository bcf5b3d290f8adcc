#include "CSwitchboardLinux.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int sb_accept(int listener) {
    return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static int parse_address(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        return 0;
    }
    errno = EINVAL;
    return -1;
}

static int listen_on(const struct sockaddr_storage *ss, socklen_t len, int backlog, int reuseport, int dualStack,
                     int listening) {
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1, zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) goto fail;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) goto fail;
    if (ss->ss_family == AF_INET6 && dualStack &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0) goto fail;
    if (bind(fd, (const struct sockaddr *)ss, len) != 0) goto fail;
    if (listening && listen(fd, backlog) != 0) goto fail;
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int sb_local_address(int fd, char *buf, size_t cap) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (cap < INET6_ADDRSTRLEN + 2) {
        errno = ENOSPC;
        return -1;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) {
        if (inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, (socklen_t)cap) == NULL) return -1;
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        buf[0] = '[';
        if (inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf + 1, (socklen_t)cap - 2) == NULL) return -1;
        size_t n = strlen(buf);
        buf[n] = ']';
        buf[n + 1] = '\0';
        return 0;
    }
    errno = EAFNOSUPPORT;
    return -1;
}

int sb_local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    errno = EAFNOSUPPORT;
    return -1;
}

int sb_tcp_listen(const char *host, int port, int backlog, int reuseport, int listening, int *boundPort, int *family) {
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;
    if (host[0] == '\0') {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
        memset(&ss, 0, sizeof(ss));
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        v6->sin6_addr = in6addr_any;
        fd = listen_on(&ss, sizeof(*v6), backlog, reuseport, 1, listening);
        if (fd < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
            struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
            memset(&ss, 0, sizeof(ss));
            v4->sin_family = AF_INET;
            v4->sin_port = htons((uint16_t)port);
            v4->sin_addr.s_addr = htonl(INADDR_ANY);
            fd = listen_on(&ss, sizeof(*v4), backlog, reuseport, 0, listening);
        }
    } else {
        if (parse_address(host, port, &ss, &len) != 0) return -1;
        fd = listen_on(&ss, len, backlog, reuseport, 0, listening);
    }
    if (fd < 0) return -1;
    *family = ss.ss_family;
    int bound = sb_local_port(fd);
    if (bound < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    *boundPort = bound;
    return fd;
}

int sb_tcp_connect(const char *host, int port) {
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_address(host, port, &ss, &len) != 0) return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr *)&ss, len) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int sb_set_nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, flags);
}

int sb_set_cloexec(int fd, int on) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -1;
    flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
    return fcntl(fd, F_SETFD, flags);
}

#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/un.h>

static int sb_unix_address(const char *path, struct sockaddr_un *address) {
    memset(address, 0, sizeof(*address));
    address->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(address->sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(address->sun_path, path);
    return 0;
}

int sb_unix_listen(const char *path, int backlog) {
    struct sockaddr_un address;
    if (sb_unix_address(path, &address) < 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int bound = bind(fd, (struct sockaddr *)&address, sizeof(address));
    if (bound < 0 && errno == EADDRINUSE) {
        // A socket file left by a master that is gone (nothing accepts there) is replaced; a live one is not.
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int alive = probe >= 0 && connect(probe, (struct sockaddr *)&address, sizeof(address)) == 0;
        if (probe >= 0) close(probe);
        struct stat info;
        if (alive || lstat(path, &info) != 0 || !S_ISSOCK(info.st_mode)) {
            close(fd);
            errno = EADDRINUSE;
            return -1;
        }
        unlink(path);
        bound = bind(fd, (struct sockaddr *)&address, sizeof(address));
    }
    if (bound < 0) goto fail;
    if (chmod(path, 0600) < 0 || listen(fd, backlog) < 0) goto fail;
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int sb_unix_connect(const char *path) {
    struct sockaddr_un address;
    if (sb_unix_address(path, &address) < 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int sb_peer_uid(int fd, uint32_t *uid) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0) return -1;
    *uid = credentials.uid;
    return 0;
}

int sb_listen_queue(int fd, uint32_t *depth, uint32_t *limit) {
    struct tcp_info info;
    socklen_t length = sizeof(info);
    memset(&info, 0, sizeof(info));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) < 0) return -1;
    // For a listening socket the kernel reports the accept queue's length and its limit in these two fields.
    *depth = info.tcpi_unacked;
    *limit = info.tcpi_sacked;
    return 0;
}
