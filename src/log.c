/* log: levelled logging to stderr. Each line is formatted into a stack buffer
 * and emitted with a single write(2) so lines from worker threads never
 * interleave. Under systemd (JOURNAL_STREAM set) journald adds timestamps and
 * reads the "<N>" priority prefix; elsewhere we add an ISO-8601 UTC stamp. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Process-wide logging state: the level can change on reload from any thread. */
static _Atomic int log_level = LOG_INFO;
static atomic_bool log_journald = false;

static const char *const level_words[] = {
    [LOG_ERR] = "error", [LOG_WARN] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_init(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    atomic_store(&log_journald, js != NULL && js[0] != '\0');
}

void log_set_level(enum log_level lvl)
{
    if (lvl < LOG_ERR)
        lvl = LOG_ERR;
    if (lvl > LOG_DEBUG)
        lvl = LOG_DEBUG;
    atomic_store(&log_level, (int)lvl);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load(&log_level);
}

int log_level_parse(const char *s)
{
    if (!s)
        return -1;
    for (int l = LOG_ERR; l <= LOG_DEBUG; l++)
        if (strcmp(s, level_words[l]) == 0)
            return l;
    return -1;
}

size_t log_prefix(char *out, enum log_level lvl)
{
    if (lvl < LOG_ERR || lvl > LOG_DEBUG)
        lvl = LOG_ERR;
    if (atomic_load(&log_journald)) {
        out[0] = '<';
        out[1] = (char)('0' + lvl);
        out[2] = '>';
        return 3;
    }
    /* The date and time change once a second: formatted then, per thread. */
    static __thread time_t sec = -1;
    static __thread char stamp[24];
    static __thread size_t stamp_len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        stamp_len = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        sec = ts.tv_sec;
    }
    memcpy(out, stamp, stamp_len);
    size_t n = stamp_len;
    int ms = (int)(ts.tv_nsec / 1000000);
    out[n++] = '.';
    out[n++] = (char)('0' + ms / 100);
    out[n++] = (char)('0' + ms / 10 % 10);
    out[n++] = (char)('0' + ms % 10);
    out[n++] = 'Z';
    out[n++] = ' ';
    size_t w = strlen(level_words[lvl]);
    memcpy(out + n, level_words[lvl], w);
    n += w;
    out[n++] = ' ';
    return n;
}

void log_write(const char *data, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(STDERR_FILENO, data + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        off += (size_t)w;
    }
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if ((int)lvl > atomic_load(&log_level))
        return;
    if (lvl < LOG_ERR || lvl > LOG_DEBUG)
        lvl = LOG_ERR;
    int saved_errno = errno; /* callers often log and then inspect errno */
    char line[2048];
    size_t n = log_prefix(line, lvl);
    size_t head = n;
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (r > 0)
        n += (size_t)r < sizeof line - n - 1 ? (size_t)r : sizeof line - n - 2;
    /* A message must stay one line: embedded newlines would forge entries. */
    for (size_t i = head; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    log_write(line, n);
    errno = saved_errno;
}
