#ifndef C_SWITCHBOARD_SYSTEMD_H
#define C_SWITCHBOARD_SYSTEMD_H
// libsystemd's daemon API (Debian: libsystemd-dev): sd_notify, sd_pid_notify_with_fds, sd_watchdog_enabled,
// sd_listen_fds_with_names, sd_is_socket.
#include <systemd/sd-daemon.h>
#endif
