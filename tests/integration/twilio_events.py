"""Twilio's event deliveries as Twilio makes them, for the mock (mock_twilio)
and the tests: post-action webhooks of Conversations and Programmable Chat
(forms) and Event Streams CloudEvents (JSON) to a webhook sink.

The signing is written here from Twilio's published description
(https://www.twilio.com/docs/usage/webhooks/webhooks-security), not from
usergate's code: the X-Twilio-Signature header is the base64 HMAC-SHA1,
keyed by the account's auth token, of the full URL Twilio called followed by
each POST parameter's name and value, sorted by name. A JSON body is not
appended; Twilio adds bodySHA256=<hex SHA-256 of the body> to the URL's
query instead, and signs that URL alone.
"""

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import secrets
import threading
import time
import urllib.parse


def signature(token, url, params=None):
    s = url
    for name in sorted(params or {}):
        s += name + params[name]
    mac = hmac.new(token.encode("utf-8"), s.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def signed(token, signed_url, body, params):
    """The URL Twilio calls (with bodySHA256 for a JSON body) and its
    X-Twilio-Signature. params: the form, or None for a JSON body."""
    if params is None:
        sep = "&" if "?" in signed_url else "?"
        signed_url = signed_url + sep + "bodySHA256=" + hashlib.sha256(body).hexdigest()
    return signed_url, signature(token, signed_url, params)


def _iso(ts=None):
    d = datetime.datetime.fromtimestamp(ts or time.time(), datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


FORM_TYPES = {"added": "onUserAdded", "updated": "onUserUpdated"}
STREAM_TYPES = {"added": "com.twilio.conversations.user.added",
                "updated": "com.twilio.conversations.user.updated"}


def user_event(kind, change, user, account_sid, include_service=False):
    """(content_type, body bytes, params or None, type) of one user event.
    kind: conversations | chat | eventstreams; change: added | updated;
    user: the mock's user dict (sid, service, identity, friendly_name…)."""
    if kind in ("conversations", "chat"):
        params = {
            "EventType": FORM_TYPES[change], "AccountSid": account_sid,
            "UserSid": user["sid"], "Identity": user["identity"],
            "FriendlyName": user["friendly_name"] or "", "Attributes": user["attributes"],
            "RoleSid": user["role_sid"], "IsOnline": "false", "IsNotifiable": "false",
            "DateCreated": user["date_created"], "DateUpdated": user["date_updated"],
            "Source": "SDK", "ClientIdentity": user["identity"], "RetryCount": "0",
        }
        if kind == "conversations":
            params["ChatServiceSid"] = user["service"]
        else:  # Programmable Chat names the service InstanceSid
            params["InstanceSid"] = user["service"]
            params["WebhookType"] = "webhook"
            params["WebhookSid"] = "WH" + secrets.token_hex(16)
        body = urllib.parse.urlencode(params).encode("utf-8")
        return "application/x-www-form-urlencoded", body, params, params["EventType"]
    etype = STREAM_TYPES[change]
    data = {"AccountSid": account_sid, "UserSid": user["sid"], "Identity": user["identity"],
            "FriendlyName": user["friendly_name"], "RoleSid": user["role_sid"],
            "DateCreated": user["date_created"]}
    if change == "updated":
        data.update({"DateUpdated": user["date_updated"], "IsOnline": False,
                     "IsNotifiable": False})
    if include_service:
        data["ChatServiceSid"] = user["service"]
    ev = {"specversion": "1.0", "type": etype, "source": "/v1/Users/" + user["sid"],
          "id": "EZ" + secrets.token_hex(16),
          "dataschema": "https://events-schemas.twilio.com/Conversations.User%s/2"
                        % change.capitalize(),
          "datacontenttype": "application/json", "time": _iso(), "data": data}
    return "application/json", json.dumps([ev]).encode("utf-8"), None, etype


def post(port, target, headers, body, timeout=5.0):
    """POST to 127.0.0.1:port; returns the status (0 if no answer)."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", target, body=body, headers=headers)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except OSError:
        return 0


class Sink:
    """Where the mock delivers events: a gateway's port and the path it
    listens on, and the URL Twilio believes it calls (the signed one; e.g.
    https://gw.example.com/twilio/events behind a load balancer)."""

    def __init__(self, port, signed_url, kind="conversations", token=None, path=None,
                 delay=0.0, copies=1, retries=4, include_service=False):
        self.port = port
        self.signed_url = signed_url
        self.kind = kind
        self.token = token
        self.path = path or urllib.parse.urlsplit(signed_url).path
        self.delay = delay
        self.copies = copies
        self.retries = retries
        self.include_service = include_service


class Deliverer:
    """Sends events in the background as Twilio does: after an optional
    delay, retried on anything but 2xx, possibly more than once. Every
    attempt is recorded in .log (dicts: seq, type, port, status, t, ok)."""

    def __init__(self, account_sid, token):
        self.account_sid = account_sid
        self.token = token
        self.log = []
        self.lock = threading.Lock()
        self.threads = []

    def deliver(self, sink, change, user, seq=None, delay=None, copies=None, wait=False):
        ctype, body, params, etype = user_event(sink.kind, change, user, self.account_sid,
                                                sink.include_service)
        url, sig = signed(sink.token or self.token, sink.signed_url, body, params)
        q = urllib.parse.urlsplit(url).query
        target = sink.path + ("?" + q if q else "")
        headers = {"Content-Type": ctype, "X-Twilio-Signature": sig,
                   "I-Twilio-Idempotency-Token": secrets.token_hex(16),
                   "User-Agent": "TwilioProxy/1.1"}
        delay = sink.delay if delay is None else delay
        copies = sink.copies if copies is None else copies

        def run():
            if delay:
                time.sleep(delay)
            for _ in range(copies):
                for attempt in range(sink.retries + 1):
                    status = post(sink.port, target, headers, body)
                    rec = {"seq": seq, "type": etype, "port": sink.port, "status": status,
                           "t": time.monotonic(), "ok": 200 <= status < 300, "sid": user["sid"],
                           "identity": user["identity"], "attempt": attempt}
                    with self.lock:
                        self.log.append(rec)
                    if rec["ok"]:
                        break
                    time.sleep(0.3)

        if wait:
            run()
            return
        t = threading.Thread(target=run, daemon=True, name="twilio-events")
        t.start()
        with self.lock:
            self.threads.append(t)

    def join(self, timeout=30.0):
        with self.lock:
            ts = list(self.threads)
        end = time.monotonic() + timeout
        for t in ts:
            t.join(max(0.0, end - time.monotonic()))

    def acked(self, seq):
        """When the first delivery of change seq was answered 2xx (or None)."""
        with self.lock:
            ts = [r["t"] for r in self.log if r["seq"] == seq and r["ok"]]
        return min(ts) if ts else None
