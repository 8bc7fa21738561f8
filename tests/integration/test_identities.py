"""Identities in paths and form bodies: percent-decoding once, '+' literal in
paths, UTF-8, reserved characters, and case-sensitivity."""

import urllib.parse

from conftest import fetch, form, upstream_fetches, user_path, users_path

FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# identity -> request-target spellings of it (the first is the canonical fetch)
CASES = [
    ("bob+1@example.com", ["bob+1@example.com", "bob%2B1%40example.com", "bob+1%40example.com"]),
    ("a@b.example", ["a%40b.example", "a@b.example"]),
    ("carol smith", ["carol%20smith"]),
    ("jos\u00e9", ["jos%C3%A9", "jos%c3%a9"]),
    ("x:y;z", ["x:y;z", "x%3Ay%3Bz"]),
    ("+15551234567", ["+15551234567", "%2B15551234567"]),
    ("100%", ["100%25"]),
    ("\u6771\u4eac", ["%E6%9D%B1%E4%BA%AC"]),
]


def test_identities_round_trip(gateway, mock):
    failures = []
    for ident, spellings in CASES:
        r = gateway.post(users_path("v1s"), form(Identity=ident), headers=FORM)
        if r.status != 201 or r.json.get("identity") != ident:
            failures.append(("create", ident, r))
            continue
        if mock.get_user(ident) is None:
            failures.append(("upstream stored a different identity", ident,
                             mock.requests(method="POST")[-1]["body"]))
        sid = r.json["sid"]
        for i, spelling in enumerate(spellings):
            f = gateway.get(user_path("v2", spelling))
            want_cache = "MISS" if i == 0 else "HIT"
            if f.status != 200 or f.json.get("identity") != ident or f.json.get("sid") != sid \
                    or f.xcache != want_cache:
                failures.append(("fetch", ident, spelling, "want " + want_cache, f))
            if i == 0:
                import time
                time.sleep(0.05)
        n = len(upstream_fetches(mock, user_path("v2", urllib.parse.quote(ident, safe=""))))
        if n != 1:
            failures.append(("upstream fetches", ident, n,
                             [q["path"] for q in mock.requests(method="GET")]))
    assert not failures, "\n".join(map(repr, failures))


def test_plus_in_path_is_a_plus_not_a_space(gateway, mock):
    mock.add_user("carol smith")
    mock.add_user("+15550001111")
    r = gateway.get(user_path("v1s", "carol+smith"))
    assert r.status == 404, r
    r = gateway.get(user_path("v1s", "+15550001111"))
    assert r.status == 200 and r.json["identity"] == "+15550001111", r
    # the upstream request carried a plus, not a space
    last = mock.requests(method="GET")[-1]["path"]
    assert urllib.parse.unquote(last).endswith("/Users/+15550001111"), last


def test_form_plus_is_a_space(gateway, mock):
    r = gateway.post(users_path("v2"), "Identity=dan+smith&FriendlyName=Dan+S", headers=FORM)
    assert r.status == 201, r
    assert r.json["identity"] == "dan smith" and r.json["friendly_name"] == "Dan S", r
    assert mock.get_user("dan smith") is not None
    r = gateway.post(users_path("v2"), "Identity=%2Bdan", headers=FORM)
    assert r.status == 201 and r.json["identity"] == "+dan", r


def test_identities_are_case_sensitive(gateway, mock):
    up = gateway.post(users_path("v1s"), {"Identity": "Alice"})
    lo = gateway.post(users_path("v1s"), {"Identity": "alice"})
    assert up.status == 201 and lo.status == 201, (up, lo)
    assert up.json["sid"] != lo.json["sid"]
    a1 = fetch(gateway, user_path("v1s", "Alice"), 200, "MISS")
    fetch(gateway, user_path("v1s", "Alice"), 200, "HIT")
    a2 = fetch(gateway, user_path("v1s", "alice"), 200, "MISS")
    assert a1.json["identity"] == "Alice" and a2.json["identity"] == "alice"
    assert a1.json["sid"] == up.json["sid"] and a2.json["sid"] == lo.json["sid"]
    fetch(gateway, user_path("v1s", "ALICE"), 404, "MISS")
    # a cached negative for one spelling does not hide another
    fetch(gateway, user_path("v1s", "ALICE"), 404, "HIT")
    fetch(gateway, user_path("v1s", "alice"), 200, "HIT")
