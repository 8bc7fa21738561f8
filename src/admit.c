/* admit: whether a request may go further, decided from its head alone:
 * the source address's failed-authentication budget, the client's
 * credentials and networks, the route, its action and service against the
 * client's grant, and the header values usergate forwards. The rules are
 * auth.c's and route.c's; the shared budgets are admission.c's. Used by the
 * router for every request and by the listener before it answers
 * "Expect: 100-continue". */
#include "admit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "admission.h"
#include "auth.h"
#include "config.h"
#include "http1.h"
#include "metrics.h"
#include "request.h"
#include "response.h"
#include "twilio.h"
#include "webhook.h"
#include "worker.h"

static const struct config_client *authenticate(const struct config *cfg,
                                                const struct http1_msg *msg, struct auth_memo *memo)
{
    const char *value = http1_msg_header(msg, "Authorization");
    const struct config_client *known = memo ? auth_memo_find(memo, cfg->generation, value) : NULL;
    if (known)
        return known;
    char dec[AUTH_BASIC_MAX];
    const char *user, *secret;
    size_t ulen, slen;
    if (!auth_basic_parse(value, dec, &user, &ulen, &secret, &slen))
        return NULL;
    const struct config_client *cl = config_find_client(cfg, user, ulen);
    const struct config_client *ok = NULL;
    if (!cl)
        util_ct_equal(secret, slen, secret, slen); /* the same work as a real comparison */
    else if (util_ct_equal(secret, slen, cl->secret, cl->secret_len))
        ok = cl;
    explicit_bzero(dec, sizeof dec);
    if (ok && memo)
        auth_memo_keep(memo, cfg->generation, value, ok);
    return ok;
}

static bool refuse(struct admit_refusal *no, enum route_id route, int status, int code,
                   long retry_after, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static bool refuse(struct admit_refusal *no, enum route_id route, int status, int code,
                   long retry_after, const char *fmt, ...)
{
    no->route = route;
    no->status = status;
    no->code = code;
    no->retry_after = retry_after;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(no->message, sizeof no->message, fmt, ap);
    va_end(ap);
    return false;
}

bool admit_request(struct worker *w, const struct config *cfg, const struct http1_msg *msg,
                   const struct auth_peer *peer, struct auth_memo *memo, struct route_match *m,
                   const struct config_client **client, char service[TWILIO_SID_LEN + 1],
                   struct admit_refusal *no)
{
    char err[256] = "";
    int code = TWILIO_E_BAD_REQUEST;
    enum route_result rr =
        route_match(msg->method, msg->target, msg->target_len, m, &code, err, sizeof err);
    int64_t now = util_now_ms();
    long retry = 0;
    if (admission_auth_blocked(w->srv->admission, peer, cfg->auth_failures_per_minute, now, &retry))
        return refuse(no, m->id, 429, TWILIO_E_TOO_MANY, retry,
                      "Too many failed authentications from this address; retry later");
    const struct config_client *cl = authenticate(cfg, msg, memo);
    *client = cl;
    if (!cl) {
        metrics_inc(w->metrics, MCOUNT_AUTH_FAILURES);
        admission_auth_failed(w->srv->admission, peer, cfg->auth_failures_per_minute, now);
        return refuse(no, m->id, 401, TWILIO_E_AUTH, -1, "Authenticate");
    }
    if (!cl->all_networks && !auth_nets_match(cl->networks, cl->n_networks, peer)) {
        char addr[48];
        auth_peer_format(peer, addr, sizeof addr);
        return refuse(no, m->id, 403, TWILIO_E_FORBIDDEN, -1,
                      "Client '%s' may not connect from %s (networks)", cl->name, addr);
    }
    switch (rr) {
    case ROUTE_OK:
        break;
    case ROUTE_NOT_FOUND:
        return refuse(no, m->id, 404, TWILIO_E_NOT_FOUND, -1,
                      "The requested resource was not found");
    case ROUTE_BAD_METHOD:
        return refuse(no, m->id, 405, TWILIO_E_METHOD, -1, "Method not allowed on this resource");
    case ROUTE_BAD_REQUEST:
        return refuse(no, m->id, 400, code, -1, "%s", err);
    }
    if (m->query && m->action != ACTION_LIST && m->action != ACTION_SUB)
        /* The cache key ignores queries, so a fetch must not carry one. */
        return refuse(no, m->id, 400, TWILIO_E_BAD_REQUEST, -1,
                      "Query parameters are not accepted on this resource");
    if (!(cl->allow & ROUTE_ACTION_BIT(m->action)))
        return refuse(no, m->id, 403, TWILIO_E_FORBIDDEN, -1,
                      "Client '%s' is not allowed to %s (its allow needs %s)", cl->name,
                      m->action == ACTION_SUB ? "use user sub-resources"
                                              : route_action_name(m->action),
                      route_action_name(m->action));
    if (m->family == FAMILY_V1_DEFAULT) {
        if (!server_default_service(w->srv, service))
            service[0] = '\0';
    } else {
        memcpy(service, m->service, TWILIO_SID_LEN + 1);
    }
    if (!cl->all_services) {
        if (!service[0])
            return refuse(no, m->id, 503, TWILIO_E_UNAVAILABLE, 1,
                          "Default Conversation Service not known yet; retry shortly");
        if (!config_client_allows_service(cl, service))
            return refuse(no, m->id, 403, TWILIO_E_FORBIDDEN, -1,
                          "Client '%s' may not access service %s", cl->name, service);
    }
    /* Without the default service an update or delete through /v1/Users could
     * not invalidate that user's other cache keys: refuse rather than risk
     * serving a changed user. */
    if (!service[0] && (m->action == ACTION_UPDATE || m->action == ACTION_DELETE))
        return refuse(no, m->id, 503, TWILIO_E_UNAVAILABLE, 1,
                      "Default Conversation Service not known yet; retry shortly");
    const char *wh = http1_msg_header(msg, "X-Twilio-Webhook-Enabled");
    if (wh && strcmp(wh, "true") != 0 && strcmp(wh, "false") != 0)
        return refuse(no, m->id, 400, TWILIO_E_BAD_REQUEST, -1,
                      "Invalid X-Twilio-Webhook-Enabled: must be true or false");
    return true;
}

bool admit_head(struct worker *w, const struct http1_msg *msg, const struct auth_peer *peer,
                struct auth_memo *memo, struct admit_refusal *no)
{
    /* Twilio's events are authenticated by a signature over the body. */
    if (webhook_match(w->cfg, msg->target, msg->target_len))
        return true;
    struct route_match m;
    const struct config_client *cl;
    char service[TWILIO_SID_LEN + 1];
    return admit_request(w, w->cfg, msg, peer, memo, &m, &cl, service, no);
}

void admit_refuse(struct request *req, const struct admit_refusal *no)
{
    req->route.id = no->route;
    if (no->retry_after > 0)
        response_error_retry(req, no->status, no->code, no->message, no->retry_after);
    else
        response_error(req, no->status, no->code, no->message);
}
