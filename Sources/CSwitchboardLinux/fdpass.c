#include "CSwitchboardLinux.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int sb_seqpacket_pair(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
}

ssize_t sb_send_message(int sock, const void *buf, size_t len, const int *fds, int nfds, int blocking) {
    if (nfds < 0 || nfds > SB_MAX_FDS_PER_MESSAGE || (nfds > 0 && fds == NULL)) {
        errno = EINVAL;
        return -1;
    }
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    union {
        char buf[CMSG_SPACE(sizeof(int) * SB_MAX_FDS_PER_MESSAGE)];
        struct cmsghdr align;
    } control;
    if (nfds > 0) {
        memset(&control, 0, sizeof(control));
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)nfds);
    }
    int flags = MSG_NOSIGNAL | (blocking ? 0 : MSG_DONTWAIT);
    return sendmsg(sock, &msg, flags);
}

ssize_t sb_receive_message(int sock, void *buf, size_t cap, int *fds, int maxfds, int *nfds, int *truncated,
                           int blocking) {
    *nfds = 0;
    *truncated = 0;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    union {
        char buf[CMSG_SPACE(sizeof(int) * SB_MAX_FDS_PER_MESSAGE)];
        struct cmsghdr align;
    } control;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    int flags = MSG_CMSG_CLOEXEC | (blocking ? 0 : MSG_DONTWAIT);
    ssize_t n = recvmsg(sock, &msg, flags);
    if (n < 0) return -1;
    int received = 0;
    int overflow = 0;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *data = (int *)CMSG_DATA(cmsg);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, data + i, sizeof(int));
            if (received < maxfds) {
                fds[received++] = fd;
            } else {
                close(fd);
                overflow = 1;
            }
        }
    }
    if (overflow || (msg.msg_flags & MSG_TRUNC)) {
        for (int i = 0; i < received; i++) close(fds[i]);
        errno = EMSGSIZE;
        return -1;
    }
    // MSG_CTRUNC alone: the receiver ran out of descriptors (EMFILE) part way. The kernel installed the first
    // `received` and dropped the rest; the caller decides what that means.
    if (msg.msg_flags & MSG_CTRUNC) *truncated = 1;
    *nfds = received;
    return n;
}

int sb_queued_bytes(int sock) {
    int bytes = 0;
    if (ioctl(sock, FIONREAD, &bytes) < 0) return -1;
    return bytes;
}

ssize_t sb_peek_message(int sock, void *buf, size_t cap) {
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    // No control buffer: the kernel releases the duplicates a peek would install, the descriptors stay queued.
    return recvmsg(sock, &msg, MSG_PEEK | MSG_DONTWAIT);
}
