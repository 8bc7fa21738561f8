/* listener: client-facing HTTP/1.1 server on evconnlistener + bufferevents.
 * Accepts, reads, feeds http1, creates requests, hands them to the router in
 * order, writes finished responses in order (pipelining), and enforces idle
 * timeouts, header/body limits, pipeline depth and connection counts. */
#ifndef USERGATE_LISTENER_H
#define USERGATE_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

struct worker;
struct request;
struct config_addr;

/* Create a listening socket for addr (SO_REUSEPORT, nonblocking, backlog 1024;
 * unix sockets are unlinked first). Returns fd or -1 (errno set). Called once
 * per worker so each worker has its own accept queue. */
int listener_bind(const struct config_addr *addr);

/* Start accepting on fd in w's event base. Returns 0 or -1. */
int listener_start(struct worker *w, int fd);
/* Stop accepting (shutdown): close listening sockets; existing connections
 * finish their in-flight requests, then close (no further keep-alive). */
void listener_stop_accepting(struct worker *w);
/* Number of open client connections / in-flight requests on this worker. */
size_t listener_connections(const struct worker *w);
size_t listener_inflight(const struct worker *w);
/* Close every client connection now (second signal / shutdown timeout). */
void listener_close_all(struct worker *w);

/* Called by response.c when req->done became true: flush finished responses
 * at the head of the connection's queue, or free req if it is detached.
 * Never calls back into the router (on_abort runs only from the listener's
 * own event callbacks), so the router may call it from anywhere. */
void listener_request_done(struct request *req);
/* True when no later request is queued on req's connection (or req is
 * detached): response.c sends "Connection: close" while draining only on the
 * last one, so pipelined requests already received still get their answers. */
bool listener_request_is_last(const struct request *req);

#endif
