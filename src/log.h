/* log: levelled, format-checked logging to stderr. Under systemd (JOURNAL_STREAM
 * set) lines carry sd-daemon "<N>" priority prefixes; otherwise a timestamp and
 * level word. Thread-safe (one write(2) per line). Secrets and attributes must
 * never be passed here. */
#ifndef USERGATE_LOG_H
#define USERGATE_LOG_H

#include <stddef.h>

enum log_level { LOG_ERR = 3, LOG_WARN = 4, LOG_NOTICE = 5, LOG_INFO = 6, LOG_DEBUG = 7 };

void log_init(void);                    /* detects journald */
void log_set_level(enum log_level lvl); /* atomic; reload may change it */
enum log_level log_get_level(void);
/* Parse "error|warning|notice|info|debug"; returns -1 if unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For lines gathered elsewhere and written in batches (the access log): the
 * prefix log_msg puts before a message, copied into out (at least
 * LOG_PREFIX_MAX bytes; returns its length), and a write of whole lines. */
#define LOG_PREFIX_MAX 40
size_t log_prefix(char *out, enum log_level lvl);
void log_write(const char *data, size_t n);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
