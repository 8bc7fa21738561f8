/* admin: the operator's HTTP listener (evhttp, on the main thread's event
 * base): /metrics, /healthz, /readyz and cache purges. Never on the client
 * listener. */
#ifndef USERGATE_ADMIN_H
#define USERGATE_ADMIN_H

struct event_base;
struct server;
struct config;

struct admin;
/* Bind admin_listen of srv's current config. Returns NULL on failure (logged). */
struct admin *admin_start(struct event_base *base, struct server *srv);
void admin_stop(struct admin *a);
/* After a reload: follow the new Redis settings (purges use their own
 * connection). */
void admin_reconfigure(struct admin *a, const struct config *cfg);

#endif
