/* notify: systemd glue (sd_notify, socket activation, watchdog). The only file
 * that includes libsystemd; compiled to no-ops without it. */
#include "notify.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

static void notify_send(const char *msg)
{
    (void)sd_notify(0, msg);
}

uint64_t notify_watchdog_usec(void)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0)
        return 0;
    return usec;
}

int notify_listen_fds(void)
{
    int n = sd_listen_fds(0);
    return n > 0 ? n : 0;
}
#else
static void notify_send(const char *msg)
{
    (void)msg;
}

uint64_t notify_watchdog_usec(void)
{
    return 0;
}

int notify_listen_fds(void)
{
    return 0;
}
#endif

void notify_ready(void)
{
    notify_send("READY=1");
}

void notify_reloading(void)
{
    notify_send("RELOADING=1");
}

void notify_stopping(void)
{
    notify_send("STOPPING=1");
}

void notify_watchdog(void)
{
    notify_send("WATCHDOG=1");
}

void notify_status(const char *status)
{
    char msg[512];
    snprintf(msg, sizeof msg, "STATUS=%s", status);
    notify_send(msg);
}
