/* stat: `usergate -s [ADMIN_URL]`, a refreshing one-screen summary of a
 * running gateway read from its /metrics (in the spirit of varnishstat). */
#ifndef USERGATE_STAT_H
#define USERGATE_STAT_H

/* Poll admin_url (e.g. "http://127.0.0.1:9090") every interval_ms and draw
 * the summary; iterations 0 = until interrupted. Returns the exit status. */
int stat_main(const char *admin_url, int interval_ms, int iterations);

#endif
