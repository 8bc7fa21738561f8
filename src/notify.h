/* notify: the only file that includes libsystemd. sd_notify messages
 * (READY, RELOADING, STOPPING, STATUS, WATCHDOG) and socket activation; all
 * no-ops when built without systemd or not running under it. */
#ifndef USERGATE_NOTIFY_H
#define USERGATE_NOTIFY_H

#include <stdint.h>

void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);
void notify_status(const char *status);
void notify_watchdog(void);
/* Watchdog interval in microseconds from $WATCHDOG_USEC, 0 if none. */
uint64_t notify_watchdog_usec(void);
/* Listening sockets passed by systemd (LISTEN_FDS); returns count, fds start at 3. */
int notify_listen_fds(void);

#endif
