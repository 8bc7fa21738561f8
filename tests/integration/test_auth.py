"""Client authentication (401) and authorisation (403), both decided before the
cache is consulted, and a SIGHUP reload of client secrets."""

import base64
import os
import random
import signal
import time

import pytest

from conftest import (ACCOUNT, CLIENT, OTHER_SERVICE, SERVICE, TOKEN, RawConn, assert_twilio_error,
                      basic, fetch, render_config, user_path, users_path, wait_until)

CLIENTS = {
    "client other": {"key": "other", "secret": "other-secret", "services": OTHER_SERVICE,
                     "allow": "fetch, create, update, delete, list"},
    "client reader": {"key": "reader", "secret": "reader-secret", "services": "*",
                      "allow": "list, create"},
    "client fetcher": {"key": "fetcher", "secret": "fetcher-secret",
                       "services": "%s, %s" % (SERVICE, "IS" + "d4" * 16), "allow": "fetch"},
}


def primed(gateway_factory, mock):
    gw = gateway_factory(overrides=CLIENTS)
    u = mock.add_user("alice")
    for fam in ("v1", "v1s", "v2"):
        fetch(gw, user_path(fam, "alice"))
        fetch(gw, user_path(fam, "alice"), 200, "HIT")
    mock.reset()
    return gw, u


def test_unauthenticated_gets_401_even_when_cached(gateway_factory, mock):
    gw, u = primed(gateway_factory, mock)
    bad_auth = [
        None,
        (CLIENT[0], "wrong"),
        (CLIENT[0], ""),
        (CLIENT[0], CLIENT[1] + "x"),
        ("nobody", CLIENT[1]),
        (CLIENT[0].upper(), CLIENT[1]),
        (ACCOUNT, TOKEN),                           # Twilio's own credentials are not a client
        "Bearer " + CLIENT[1],
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(CLIENT[0].encode()).decode(),   # no colon
        "basic",
        basic(CLIENT[0], CLIENT[1][:-1]),           # a prefix of the secret
        basic(CLIENT[0], CLIENT[1].upper()),
    ]
    failures = []
    for fam in ("v1", "v1s", "v2"):
        for key in ("alice", u["sid"]):
            for auth in bad_auth:
                r = gw.get(user_path(fam, key), auth=auth)
                try:
                    assert_twilio_error(r, 401, 20003)
                    assert u["sid"].encode() not in r.body and b"alice" not in r.body
                except AssertionError as e:
                    failures.append((fam, key, auth, str(e)[:300]))
    for auth in bad_auth[:3]:
        r = gw.post(users_path("v1s"), {"Identity": "mallory"}, auth=auth)
        if r.status != 401:
            failures.append(("create", auth, r))
    assert not failures, "\n".join(map(repr, failures))
    assert mock.requests() == [], [q["path"] for q in mock.requests()]
    # the right credentials still work afterwards
    fetch(gw, user_path("v1s", "alice"), 200, "HIT")


def test_forbidden_gets_403_even_when_cached(gateway_factory, mock):
    gw, u = primed(gateway_factory, mock)
    other = (CLIENTS["client other"]["key"], CLIENTS["client other"]["secret"])
    reader = (CLIENTS["client reader"]["key"], CLIENTS["client reader"]["secret"])
    fetcher = (CLIENTS["client fetcher"]["key"], CLIENTS["client fetcher"]["secret"])
    cases = [
        # another service's client, on every family (/v1/Users is the default service)
        (other, "GET", user_path("v1", "alice"), None),
        (other, "GET", user_path("v1s", "alice"), None),
        (other, "GET", user_path("v2", u["sid"]), None),
        (other, "POST", users_path("v1s"), {"Identity": "x1"}),
        (other, "DELETE", user_path("v2", "alice"), None),
        # no `fetch` in allow
        (reader, "GET", user_path("v1s", "alice"), None),
        (reader, "GET", user_path("v2", "alice"), None),
        # only `fetch`
        (fetcher, "POST", users_path("v2"), {"Identity": "x2"}),
        (fetcher, "POST", user_path("v2", "alice"), {"FriendlyName": "x"}),
        (fetcher, "DELETE", user_path("v1s", "alice"), None),
        (fetcher, "GET", users_path("v1s"), None),
        (fetcher, "GET", user_path("v2", "alice", OTHER_SERVICE), None),
    ]
    failures = []
    for auth, method, path, body in cases:
        r = gw.request(method, path, body, auth=auth)
        try:
            assert_twilio_error(r, 403)
            assert u["sid"].encode() not in r.body
        except AssertionError as e:
            failures.append((auth[0], method, path, str(e)[:300]))
    assert not failures, "\n".join(map(repr, failures))
    assert mock.requests() == [], [q["path"] for q in mock.requests()]
    # what they are allowed still works
    r = fetch(gw, user_path("v2", "alice"), 200, "HIT", auth=fetcher)
    assert r.json["sid"] == u["sid"]
    r = gw.get(users_path("v1s"), auth=reader)
    assert r.status == 200, r
    r = gw.get(user_path("v2", "bob", OTHER_SERVICE), auth=other)
    assert r.status == 404 and r.json["code"] == 20404, r


def test_sighup_reloads_client_secrets(gateway_factory, mock):
    gw = gateway_factory()
    mock.add_user("rita")
    fetch(gw, user_path("v1s", "rita"))
    sections = gw.sections
    sections["client app"]["secret"] = "rotated-secret"
    with open(gw.conf, "w") as f:
        f.write(render_config(sections))
    os.kill(gw.proc.pid, signal.SIGHUP)
    new = (CLIENT[0], "rotated-secret")
    wait_until(lambda: gw.get(user_path("v1s", "rita"), auth=new).status == 200, timeout=5,
               what="the rotated secret to be accepted after SIGHUP")
    r = gw.get(user_path("v1s", "rita"))
    assert_twilio_error(r, 401, 20003)
    # a broken file on reload keeps the running configuration
    with open(gw.conf, "a") as f:
        f.write("\n[server]\nno_such_key = 1\n")
    os.kill(gw.proc.pid, signal.SIGHUP)
    time.sleep(0.5)
    assert gw.proc.poll() is None, gw.stderr()
    r = gw.get(user_path("v1s", "rita"), auth=new)
    assert r.status == 200, r


def test_keep_alive_connection_is_authenticated_per_request(gateway_factory, mock):
    """A connection remembers the credentials it last proved (so a keep-alive
    client is not decoded again): every other value on it is checked afresh,
    and a reload that rotates the secret ends what it remembered."""
    gw = gateway_factory(overrides=CLIENTS)
    mock.add_user("rita")
    fetch(gw, user_path("v1s", "rita"))
    c = RawConn(gw.port)

    def ask(auth):
        c.send("GET %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\n\r\n"
               % (user_path("v1s", "rita"), auth))
        status, headers, body, _ = c.response()
        return status, body

    app, wrong = basic(*CLIENT), basic(CLIENT[0], CLIENT[1] + "x")
    assert ask(app)[0] == 200
    assert ask(app)[0] == 200
    status, body = ask(wrong)
    assert status == 401, body
    assert ask(app)[0] == 200
    # another valid client on the same connection is that client, not the last
    status, body = ask(basic("reader", "reader-secret"))
    # the refusal names the client and what its allow lacks (it used to read
    # "(allow = fetch)", as if that were the client's grant)
    assert status == 403 and b"Client 'reader' is not allowed to fetch (its allow needs fetch)" \
        in body, body
    assert ask(app)[0] == 200

    sections = gw.sections
    sections["client app"]["secret"] = "rotated-secret"
    with open(gw.conf, "w") as f:
        f.write(render_config(sections))
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: gw.get(user_path("v1s", "rita")).status == 401, timeout=5,
               what="the old secret to be refused on a new connection after SIGHUP")
    status, body = ask(app)
    assert status == 401, body
    assert ask(basic(CLIENT[0], "rotated-secret"))[0] == 200
    assert ask(app)[0] == 401


AUTH_SEEDS = [int(s) for s in os.environ.get("AUTH_SEEDS", "1,2").split(",")]


@pytest.mark.parametrize("seed", AUTH_SEEDS)
def test_authentication_memo_randomized(gateway_factory, mock, seed):
    """Tries to make a connection's memory of its credentials answer for what
    it should not: random values (valid for one client or another, one byte
    changed, cut short, another spelling of the same) in random order over a
    few keep-alive connections, with reloads that rotate a secret or remove a
    client. Each answer is checked against a model of the configuration in
    force: 200 for the fetching client, 403 for the list-only one, 401 for
    anything else."""
    rng = random.Random(seed)
    secrets = {"app": CLIENT[1], "reader": "reader-secret"}
    gw = gateway_factory(overrides={
        "server": {"auth_failures_per_minute": "0"},
        "client reader": CLIENTS["client reader"]})
    mock.add_user("rita")
    path = user_path("v1s", "rita")
    fetch(gw, path)
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def value():
        """-> (Authorization value or None, the key it proves or None)."""
        who = rng.choice(["app", "reader", "app", "nobody"])
        secret = secrets.get(who, "nobody-secret-1")
        if rng.random() < 0.15:
            secret = rng.choice(["app-secret-0", CLIENT[1], "reader-secret", "rotated-secret-1"])
        token = base64.b64encode(("%s:%s" % (CLIENT[0] if who == "app" else who,
                                             secret)).encode()).decode()
        valid = secrets.get(who) == secret and who != "nobody"
        kind = rng.randrange(7)
        # Changes outside the last group of four: every bit of those decodes,
        # so the credentials differ (in the last group, unused low bits of a
        # padded group may change without changing the decoded bytes).
        if kind == 0:  # one character changed
            i = rng.randrange(len(token) - 4)
            token = token[:i] + rng.choice(b64.replace(token[i], "")) + token[i + 1:]
            return "Basic " + token, None
        if kind == 1:  # cut short, at a group boundary (well-formed Base64) or not
            n = rng.randrange(len(token) - 4)
            return "Basic " + token[:n - n % 4 if rng.random() < 0.5 else n], None
        if kind == 2:  # the same credentials spelled otherwise
            return rng.choice(["basic ", "BASIC ", "Basic  "]) + token, who if valid else None
        if kind == 3:
            return None, None
        return "Basic " + token, who if valid else None

    conns = [RawConn(gw.port) for _ in range(3)]
    checked = 0
    for step in range(400):
        if rng.random() < 0.02:  # a reload: rotate app's secret, or drop/restore reader
            sections = gw.sections
            if rng.random() < 0.5:
                secrets["app"] = rng.choice([CLIENT[1], "rotated-secret-1", "rotated-secret-2"])
            elif "reader" in secrets:
                del secrets["reader"]
            else:
                secrets["reader"] = "reader-secret"
            sections["client app"]["secret"] = secrets["app"]
            if "reader" in secrets:
                sections["client reader"] = dict(CLIENTS["client reader"])
            else:
                sections.pop("client reader", None)
            with open(gw.conf, "w") as f:
                f.write(render_config(sections))
            gw.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: gw.get(path, auth=(CLIENT[0], secrets["app"])).status == 200,
                       timeout=5, what="the reload in force")
        i = rng.randrange(len(conns))
        if rng.random() < 0.03:
            conns[i].sock.close()
            conns[i] = RawConn(gw.port)
        auth, who = value()
        head = "GET %s HTTP/1.1\r\nHost: gw\r\n" % path
        if auth is not None:
            head += "Authorization: %s\r\n" % auth
        conns[i].send(head + "\r\n")
        status, _, body, _ = conns[i].response()
        want = {"app": 200, "reader": 403, None: 401}[who]
        assert status == want, "seed %d step %d: %r on connection %d -> %d, want %d (%s)" % (
            seed, step, auth, i, status, want, body[:200])
        checked += 1
    assert checked == 400
