"""A stateful mock of Twilio's user resources for the integration suite.

Serves Conversations v1 (/v1/Users…, /v1/Services/{IS}/Users…) and Programmable
Chat v2 (/v2/Services/{IS}/Users…) user resources, plus GET /v1/Configuration,
for one account. Users live per service, so the same user is visible through
all three URL families of its service (/v1/Users… is the default service).
Bodies follow twilio-spec README §5-§8.

Every request is recorded (method, raw path, headers, body, and the response
that was sent) and a control API under /_mock/ (no auth) lets tests read the
log, reset, inject failures and read stats.

Like Twilio, it announces user changes to the event sinks in .sinks
(twilio_events.Sink): changes made "outside" (outside_update/outside_create:
an end user's SDK, the Console, another back end) always, and REST writes
only when they carry X-Twilio-Webhook-Enabled: true. Deliveries are signed,
sent in the background and recorded in .events.log.

Tests usually run it in-process:

    m = MockTwilio(ACCOUNT, TOKEN); port = m.start(); ...; m.stop()

or from the command line: python3 mock_twilio.py --port 8089
"""

import base64
import datetime
import json
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from twilio_events import Deliverer

CONVERSATIONS_BASE = "https://conversations.twilio.com"
CHAT_BASE = "https://chat.twilio.com"

SERVICE_RE = re.compile(r"^IS[0-9a-fA-F]{32}$")
USER_SID_RE = re.compile(r"^US[0-9a-fA-F]{32}$")
ROLE_SID_RE = re.compile(r"^RL[0-9a-fA-F]{32}$")

# (family, service-in-path?, has-user-segment) from the path shape.
_ROUTES = [
    (re.compile(r"^/v1/Users$"), "v1", False),
    (re.compile(r"^/v1/Users/([^/]+)$"), "v1", True),
    (re.compile(r"^/v1/Services/([^/]+)/Users$"), "v1s", False),
    (re.compile(r"^/v1/Services/([^/]+)/Users/([^/]+)$"), "v1s", True),
    (re.compile(r"^/v2/Services/([^/]+)/Users$"), "v2", False),
    (re.compile(r"^/v2/Services/([^/]+)/Users/([^/]+)$"), "v2", True),
]

ROUTE_LABELS = {
    ("v1", False): "/v1/Users",
    ("v1", True): "/v1/Users/{Sid}",
    ("v1s", False): "/v1/Services/{ServiceSid}/Users",
    ("v1s", True): "/v1/Services/{ServiceSid}/Users/{Sid}",
    ("v2", False): "/v2/Services/{ServiceSid}/Users",
    ("v2", True): "/v2/Services/{ServiceSid}/Users/{Sid}",
}


def sid(prefix):
    return prefix + secrets.token_hex(16)


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_body(status, code, message):
    return {
        "code": code,
        "message": message,
        "more_info": "https://www.twilio.com/docs/errors/%d" % code,
        "status": status,
    }


class _QuietServer(ThreadingHTTPServer):
    """Clients (the gateway) hang up on purpose: cancelled fetches, timeouts."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Reply(Exception):
    def __init__(self, status, obj=None, headers=None):
        super().__init__(status)
        self.status = status
        self.obj = obj
        self.headers = headers or {}


class MockTwilio:
    """State + server. All public methods are thread-safe."""

    def __init__(self, account_sid=None, auth_token=None, default_service=None,
                 extra_credentials=None, host="127.0.0.1"):
        self.account_sid = account_sid or sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.default_service = default_service or sid("IS")
        self.credentials = {self.account_sid: self.auth_token}
        self.credentials.update(extra_credentials or {})
        self.host = host
        self.content_type = "application/json"
        self.lock = threading.Lock()
        self.users = {}   # service sid -> {user sid: user dict}
        self.roles = {}   # service sid -> default role sid
        self.log = []
        self.history = []  # every applied change (history checker ground truth)
        self.rules = []
        self.counts = {}
        self.inflight = 0
        self.peak = 0
        self.server = None
        self.thread = None
        self.port = None
        self.sinks = []  # twilio_events.Sink: where user events go
        self.events = Deliverer(self.account_sid, self.auth_token)

    # ---- lifecycle
    def start(self, port=0, tls=None):
        """tls = (certfile, keyfile) serves https instead of http."""
        mock = self

        class Handler(_Handler):
            pass

        Handler.mock = mock
        srv = _QuietServer((self.host, port), Handler, bind_and_activate=False)
        srv.daemon_threads = True
        srv.block_on_close = False
        srv.request_queue_size = 256
        srv.allow_reuse_address = True
        srv.server_bind()
        srv.server_activate()
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.server = srv
        self.port = srv.server_address[1]
        self.thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="mock-twilio", daemon=True)
        self.thread.start()
        return self.port

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self):
        return "%s://%s:%d" % (getattr(self, "scheme", "http"), self.host, self.port)

    # ---- state helpers for tests
    def reset(self, clear_users=False):
        with self.lock:
            self.log.clear()
            self.counts.clear()
            self.rules.clear()
            self.peak = self.inflight
            if clear_users:
                self.users.clear()

    def requests(self, method=None, prefix=None):
        """Recorded requests (dicts), optionally filtered."""
        with self.lock:
            out = list(self.log)
        return [r for r in out
                if (method is None or r["method"] == method)
                and (prefix is None or r["path"].startswith(prefix))]

    def fail(self, prefix="/", status=None, count=None, delay=0.0, drop=False, method=None,
             body=None, delay_after=0.0, headers=None):
        """Make requests whose raw path starts with prefix (and method, if
        given) misbehave: answer status (Twilio-shaped body unless body is
        given), sleep delay seconds first, or drop the connection; delay_after
        sleeps after the answer is computed (a slow network on the way back, so
        the answer reflects the state before later writes); headers are added
        to an injected status answer (e.g. Retry-After). count None =
        until clear_failures(); else the next count matching requests."""
        rule = {"prefix": prefix, "status": status, "count": count, "delay": float(delay),
                "drop": bool(drop), "method": method, "body": body,
                "delay_after": float(delay_after), "headers": dict(headers or {})}
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear_failures(self):
        with self.lock:
            self.rules.clear()

    def stats(self):
        with self.lock:
            return {"counts": dict(self.counts), "peak_concurrency": self.peak,
                    "inflight": self.inflight, "requests": len(self.log)}

    def add_user(self, identity, service=None, friendly_name=None, attributes="{}"):
        """Create a user directly (not through HTTP, not logged); returns it."""
        service = service or self.default_service
        with self.lock:
            u = self._create_locked(service, identity, friendly_name, attributes, None)
        return dict(u)

    def outside_update(self, identity_or_sid, service=None, friendly_name=None, attributes=None,
                       announce=True):
        """Change a user as an end user's SDK (or the Console) does: not
        through the REST API, and announced to the sinks. Returns (user, seq)."""
        service = service or self.default_service
        with self.lock:
            u = self._find_locked(service, identity_or_sid)
            if not u:
                raise KeyError(identity_or_sid)
            if friendly_name is not None:
                u["friendly_name"] = friendly_name
            if attributes is not None:
                u["attributes"] = attributes
            u["date_updated"] = now_iso()
            h = self._applied_locked(u, outside=True)
            u = dict(u)
        if announce:
            self.announce("updated", u, h["seq"])
        return u, h["seq"]

    def outside_create(self, identity, service=None, friendly_name=None, announce=True):
        """Create a user outside usergate (another back end); announced."""
        service = service or self.default_service
        with self.lock:
            u = dict(self._create_locked(service, identity, friendly_name, "{}", None))
            seq = self.history[-1]["seq"]
            self.history[-1]["outside"] = True
        if announce:
            self.announce("added", u, seq)
        return u, seq

    def announce(self, change, user, seq=None, **kw):
        """Deliver one user event to every sink (in the background)."""
        for sink in list(self.sinks):
            self.events.deliver(sink, change, user, seq, **kw)

    def get_user(self, identity_or_sid, service=None):
        service = service or self.default_service
        with self.lock:
            u = self._find_locked(service, identity_or_sid)
            return dict(u) if u else None

    # ---- model (lock held)
    def _service_users(self, service):
        if service not in self.users:
            self.users[service] = {}
            self.roles[service] = sid("RL")
        return self.users[service]

    def _find_locked(self, service, key):
        users = self._service_users(service)
        if USER_SID_RE.match(key):
            return users.get(key)
        for u in users.values():
            if u["identity"] == key:
                return u
        return None

    def _create_locked(self, service, identity, friendly_name, attributes, role_sid):
        users = self._service_users(service)
        ts = now_iso()
        u = {
            "sid": sid("US"),
            "service": service,
            "identity": identity,
            "friendly_name": friendly_name,
            "attributes": attributes if attributes is not None else "{}",
            "role_sid": role_sid or self.roles[service],
            "is_online": False,
            "is_notifiable": False,
            "date_created": ts,
            "date_updated": ts,
            "joined_channels_count": 0,
        }
        users[u["sid"]] = u
        self._applied_locked(u)
        return u

    def _applied_locked(self, u, deleted=False, outside=False):
        """Ground truth for the history checker: every change as applied,
        in order, with its monotonic time."""
        h = {"seq": len(self.history), "t": time.monotonic(), "service": u["service"],
             "identity": u["identity"], "sid": u["sid"],
             "friendly_name": None if deleted else u["friendly_name"], "deleted": deleted,
             "outside": outside}
        self.history.append(h)
        return h

    def render(self, u, family, presence=True):
        """The user as the given family's JSON object."""
        online = u["is_online"] if presence else None
        notif = u["is_notifiable"] if presence else None
        if family == "v2":
            url = "%s/v2/Services/%s/Users/%s" % (CHAT_BASE, u["service"], u["sid"])
            return {
                "sid": u["sid"], "account_sid": self.account_sid, "service_sid": u["service"],
                "attributes": u["attributes"], "friendly_name": u["friendly_name"],
                "role_sid": u["role_sid"], "identity": u["identity"], "is_online": online,
                "is_notifiable": notif, "date_created": u["date_created"],
                "date_updated": u["date_updated"],
                "joined_channels_count": u["joined_channels_count"],
                "links": {"user_channels": url + "/Channels", "user_bindings": url + "/Bindings"},
                "url": url,
            }
        if family == "v1":
            url = "%s/v1/Users/%s" % (CONVERSATIONS_BASE, u["sid"])
        else:
            url = "%s/v1/Services/%s/Users/%s" % (CONVERSATIONS_BASE, u["service"], u["sid"])
        return {
            "sid": u["sid"], "account_sid": self.account_sid, "chat_service_sid": u["service"],
            "role_sid": u["role_sid"], "identity": u["identity"],
            "friendly_name": u["friendly_name"], "attributes": u["attributes"],
            "is_online": online, "is_notifiable": notif, "date_created": u["date_created"],
            "date_updated": u["date_updated"], "url": url,
            "links": {"user_conversations": url + "/Conversations"},
        }

    # ---- request handling (called from handler threads)
    def match_rule(self, method, path):
        with self.lock:
            for rule in self.rules:
                if not path.startswith(rule["prefix"]):
                    continue
                if rule["method"] and rule["method"] != method:
                    continue
                if rule["count"] is not None:
                    if rule["count"] <= 0:
                        continue
                    rule["count"] -= 1
                return dict(rule)
        return None

    def handle(self, method, raw_path, headers, body):
        """Returns (status, obj-or-None, extra headers)."""
        path, _, query = raw_path.partition("?")
        if not self._auth_ok(headers.get("authorization")):
            raise _Reply(401, error_body(401, 20003, "Authenticate"),
                         {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if path == "/v1/Configuration" and method == "GET":
            return 200, {
                "account_sid": self.account_sid,
                "default_chat_service_sid": self.default_service,
                "default_messaging_service_sid": sid("MG"),
                "default_inactive_timer": None,
                "default_closed_timer": None,
                "url": CONVERSATIONS_BASE + "/v1/Configuration",
                "links": {
                    "service": "%s/v1/Services/%s/Configuration"
                               % (CONVERSATIONS_BASE, self.default_service),
                    "webhooks": CONVERSATIONS_BASE + "/v1/Configuration/Webhooks",
                },
            }, {}
        for rx, family, has_user in _ROUTES:
            m = rx.match(path)
            if not m:
                continue
            groups = list(m.groups())
            service = self.default_service if family == "v1" else groups.pop(0)
            user_key = urllib.parse.unquote(groups[0]) if has_user else None
            with self.lock:
                label = "%s %s" % (method, ROUTE_LABELS[(family, has_user)])
                self.counts[label] = self.counts.get(label, 0) + 1
            if not SERVICE_RE.match(service):
                break
            if has_user:
                return self._user_op(method, family, service, user_key, path, body, headers)
            return self._collection_op(method, family, service, path, query, body, headers)
        with self.lock:
            label = "%s other" % method
            self.counts[label] = self.counts.get(label, 0) + 1
        raise _Reply(404, error_body(404, 20404, "The requested resource %s was not found"
                                     % path))

    def _auth_ok(self, value):
        if not value or not value.startswith("Basic "):
            return False
        try:
            user, _, pw = base64.b64decode(value[6:].strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return self.credentials.get(user) == pw

    @staticmethod
    def _form(headers, body):
        ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
        if body and ctype != "application/x-www-form-urlencoded":
            raise _Reply(400, error_body(400, 20001, "Unsupported Content-Type %r" % ctype))
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                           strict_parsing=bool(body), errors="strict")
        except (ValueError, UnicodeDecodeError) as e:
            raise _Reply(400, error_body(400, 20001, "Invalid form body: %s" % e))
        return dict(pairs)

    @staticmethod
    def _check_fields(form):
        if "RoleSid" in form and not ROLE_SID_RE.match(form["RoleSid"]):
            raise _Reply(400, error_body(400, 20001, "Invalid RoleSid"))
        if "Attributes" in form:
            try:
                ok = isinstance(json.loads(form["Attributes"]), dict)
            except ValueError:
                ok = False
            if not ok:
                raise _Reply(400, error_body(400, 50208, "Invalid Attributes"))

    def _collection_op(self, method, family, service, path, query, body, headers):
        if method == "POST":
            form = self._form(headers, body)
            identity = form.get("Identity")
            if not identity:
                raise _Reply(400, error_body(400, 20001, "Missing required parameter Identity "
                                             "in the post body"))
            self._check_fields(form)
            with self.lock:
                if self._find_locked(service, identity):
                    raise _Reply(409, error_body(409, 50201, "User already exists"))
                u = self._create_locked(service, identity, form.get("FriendlyName"),
                                        form.get("Attributes"), form.get("RoleSid"))
                obj = self.render(u, family)
                seq, u = self.history[-1]["seq"], dict(u)
            if headers.get("x-twilio-webhook-enabled") == "true":
                self.announce("added", u, seq)
            obj["is_notifiable"] = None  # presence is only complete on fetch
            return 201, obj, {}
        if method != "GET":
            raise _Reply(405, error_body(405, 20004, "Method not allowed"))
        q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        max_size = 100 if family == "v2" else 50
        try:
            size = int(q.get("PageSize", "50"))
            page = int(q.get("Page", "0"))
        except ValueError:
            raise _Reply(400, error_body(400, 20001, "Invalid paging parameter"))
        if not 1 <= size <= max_size or page < 0:
            raise _Reply(400, error_body(400, 20001, "Invalid PageSize"))
        token = q.get("PageToken")
        if token is not None:
            m = re.match(r"^PT(\d+)$", token)
            if not m:
                raise _Reply(400, error_body(400, 21481, "Invalid PageToken"))
            page = int(m.group(1))
        with self.lock:
            all_users = list(self._service_users(service).values())  # creation order
            items = [self.render(u, family, presence=False)
                     for u in all_users[page * size:(page + 1) * size]]
            more = len(all_users) > (page + 1) * size
        base = (CHAT_BASE if family == "v2" else CONVERSATIONS_BASE) + path

        def page_url(p):
            if p == 0:
                return "%s?PageSize=%d&Page=0" % (base, size)
            return "%s?PageSize=%d&Page=%d&PageToken=PT%d" % (base, size, p, p)

        return 200, {
            "users": items,
            "meta": {
                "page": page, "page_size": size, "first_page_url": page_url(0),
                "previous_page_url": page_url(page - 1) if page > 0 else None,
                "url": page_url(page), "next_page_url": page_url(page + 1) if more else None,
                "key": "users",
            },
        }, {}

    def _user_op(self, method, family, service, key, path, body, headers):
        not_found = _Reply(404, error_body(404, 20404, "The requested resource %s was not found"
                                           % path[3:]))
        if method == "GET":
            with self.lock:
                u = self._find_locked(service, key)
                if not u:
                    raise not_found
                return 200, self.render(u, family), {}
        if method == "POST":
            form = self._form(headers, body)
            if "Identity" in form:
                raise _Reply(400, error_body(400, 20001, "Identity cannot be updated"))
            self._check_fields(form)
            with self.lock:
                u = self._find_locked(service, key)
                if not u:
                    raise not_found
                for field, attr in (("FriendlyName", "friendly_name"),
                                    ("Attributes", "attributes"), ("RoleSid", "role_sid")):
                    if field in form:
                        u[attr] = form[field]
                u["date_updated"] = now_iso()
                h = self._applied_locked(u)
                obj, u = self.render(u, family), dict(u)
            if headers.get("x-twilio-webhook-enabled") == "true":
                self.announce("updated", u, h["seq"])
            return 200, obj, {}
        if method == "DELETE":
            with self.lock:
                u = self._find_locked(service, key)
                if not u:
                    raise not_found
                del self.users[service][u["sid"]]
                self._applied_locked(u, deleted=True)
            return 204, None, {}
        raise _Reply(405, error_body(405, 20004, "Method not allowed"))

    # ---- control API
    def control(self, method, raw_path, body):
        path, _, query = raw_path.partition("?")
        q = dict(urllib.parse.parse_qsl(query))
        try:
            args = json.loads(body) if body.strip() else {}
        except ValueError:
            args = dict(urllib.parse.parse_qsl(body.decode()))
        args.update(q)
        if path == "/_mock/requests" and method == "GET":
            return 200, [dict(r, body=r["body"].decode("utf-8", "replace"),
                              resp_body=r["resp_body"].decode("utf-8", "replace"))
                         for r in self.requests()]
        if path == "/_mock/stats" and method == "GET":
            return 200, self.stats()
        if path == "/_mock/reset" and method == "POST":
            self.reset(clear_users=str(args.get("users", "keep")) in ("clear", "1", "true"))
            return 200, {"ok": True}
        if path == "/_mock/outside_update" and method == "POST":
            try:
                u, seq = self.outside_update(args["user"], args.get("service"),
                                             friendly_name=args.get("friendly_name"),
                                             attributes=args.get("attributes"))
            except KeyError:
                return 404, error_body(404, 20404, "no such user")
            return 200, {"user": u, "seq": seq}
        if path == "/_mock/fail" and method == "POST":
            count = args.get("count")
            status = args.get("status")
            self.fail(prefix=args.get("prefix", "/"),
                      status=int(status) if status not in (None, "") else None,
                      count=int(count) if count not in (None, "") else None,
                      delay=float(args.get("delay", 0)),
                      drop=str(args.get("drop", "")).lower() in ("1", "true", "yes"),
                      method=args.get("method") or None)
            return 200, {"ok": True}
        if path == "/_mock/fail" and method == "DELETE":
            self.clear_failures()
            return 200, {"ok": True}
        if path == "/_mock/users" and method == "POST":
            return 201, self.add_user(args["identity"], args.get("service"))
        return 404, error_body(404, 20404, "unknown mock control route")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    mock = None  # set per server

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):  # keep pytest output clean
        pass

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(3)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status, obj, extra=None, record=None):
        m = self.mock
        data = b"" if obj is None else json.dumps(obj).encode()
        headers = [("Content-Type", m.content_type),
                   ("Twilio-Request-Id", sid("RQ")),
                   ("Date", self.date_time_string())]
        if status != 204:
            headers.append(("Content-Length", str(len(data))))
        headers.extend((extra or {}).items())
        if record is not None:
            with m.lock:
                record.update(status=status, resp_headers=dict(headers), resp_body=data)
        self.send_response_only(status)
        for k, v in headers:
            self.send_header(k, v)
        # Head and body in one write: two small writes on a reused connection
        # meet Nagle here and a delayed ACK at the client (40 ms each).
        if data and self.command != "HEAD":
            self._headers_buffer.append(b"\r\n" + data)
            self.flush_headers()
        else:
            self.end_headers()
        self.wfile.flush()

    def _dispatch(self):
        m = self.mock
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        if self.path.startswith("/_mock/"):
            status, obj = m.control(self.command, self.path, body)
            self._send(status, obj)
            return
        record = {
            "method": self.command, "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "header_list": list(self.headers.items()),
            "body": body, "time": time.time(), "status": None, "resp_headers": {},
            "resp_body": b"",
        }
        with m.lock:
            m.log.append(record)
            m.inflight += 1
            m.peak = max(m.peak, m.inflight)
        try:
            rule = m.match_rule(self.command, self.path)
            if rule and rule["delay"] > 0:
                time.sleep(rule["delay"])
            if rule and rule["drop"]:
                with m.lock:
                    record["status"] = "dropped"
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass
                return
            if rule and rule["status"]:
                st = rule["status"]
                obj = rule["body"] if rule["body"] is not None else \
                    error_body(st, 20500 if st >= 500 else 20001, "Injected failure")
                self._send(st, obj, rule.get("headers"), record=record)
                return
            hdrs = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, obj, extra = m.handle(self.command, self.path, hdrs, body)
            except _Reply as r:
                status, obj, extra = r.status, r.obj, r.headers
            if rule and rule.get("delay_after", 0) > 0:
                time.sleep(rule["delay_after"])
            self._send(status, obj, extra, record=record)
        finally:
            with m.lock:
                m.inflight -= 1

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _dispatch


def main():
    import argparse
    ap = argparse.ArgumentParser(description="mock Twilio user API")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--account-sid")
    ap.add_argument("--auth-token")
    ap.add_argument("--default-service")
    a = ap.parse_args()
    m = MockTwilio(a.account_sid, a.auth_token, a.default_service)
    port = m.start(a.port)
    print(json.dumps({"port": port, "account_sid": m.account_sid, "auth_token": m.auth_token,
                      "default_service": m.default_service}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        m.stop()


if __name__ == "__main__":
    main()
