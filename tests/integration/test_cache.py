"""Caching behaviour: hits and misses, SID/identity aliasing, API families,
negative entries, invalidation on create/update/delete, and what reaches
upstream (injected credentials, pass-through of status/body/headers)."""

import json
import urllib.parse

from conftest import (ACCOUNT, CLIENT, FAMILIES, KEY_PREFIX, SERVICE, TOKEN, assert_twilio_error,
                      basic, fetch, upstream_fetches, user_path, users_path)


def create(gw, identity, family="v1s", **fields):
    r = gw.post(users_path(family), dict(Identity=identity, **fields))
    assert r.status == 201, r
    assert r.json["identity"] == identity, r
    return r.json


def test_miss_then_hit_with_age(gateway, mock, redis):
    create(gateway, "alice")
    mock.reset()
    path = user_path("v1s", "alice")
    r1 = fetch(gateway, path, 200, "MISS")
    assert r1.json["identity"] == "alice" and r1.json["chat_service_sid"] == SERVICE
    r2 = fetch(gateway, path, 200, "HIT")
    age = r2.header("Age")
    assert age is not None and age.isdigit() and 0 <= int(age) <= 5, r2
    assert r2.json == r1.json
    assert r2.header("Content-Type", "").startswith("application/json"), r2
    assert len(upstream_fetches(mock, path)) == 1, mock.requests()
    # the entry really lives in Redis, under the configured prefix
    keys = redis.keys("*")
    assert keys, "nothing stored in redis"
    assert all(k.startswith(KEY_PREFIX.encode()) for k in keys), keys
    # and only there: empty Redis means a miss again
    redis.cmd("FLUSHALL")
    fetch(gateway, path, 200, "MISS")
    assert len(upstream_fetches(mock, path)) == 2


def test_sid_and_identity_share_an_entry(gateway, mock):
    bob = create(gateway, "bob")
    carol = create(gateway, "carol")
    mock.reset()
    # identity first, then SID
    r1 = fetch(gateway, user_path("v2", "bob"), 200, "MISS")
    r2 = fetch(gateway, user_path("v2", bob["sid"]), 200, "HIT")
    assert r2.json == r1.json and r2.json["sid"] == bob["sid"]
    # SID first, then identity: the first fetch by SID cannot know the
    # identity's version before it asks Twilio, so it stores only the alias
    # (a fact); the identity's first fetch stores the entry, shared from then on.
    r3 = fetch(gateway, user_path("v2", carol["sid"]), 200, "MISS")
    r4 = fetch(gateway, user_path("v2", "carol"), 200, "MISS")
    assert r4.json == r3.json and r4.json["identity"] == "carol"
    r4b = fetch(gateway, user_path("v2", carol["sid"]), 200, "HIT")
    assert r4b.json == r3.json
    # a SID alias must not serve another user's entry
    r5 = fetch(gateway, user_path("v2", bob["sid"]), 200, "HIT")
    assert r5.json["identity"] == "bob"
    gets = mock.requests(method="GET")
    assert len(gets) == 3, [g["path"] for g in gets]
    # lower-case hex SID is still a SID (matches ^US[0-9a-fA-F]{32}$)
    upper = "US" + bob["sid"][2:].upper()
    r6 = gateway.get(user_path("v2", upper))
    assert r6.status in (200, 404), r6


def test_families_are_separate_entries_with_their_own_shape(gateway, mock):
    u = create(gateway, "dave", family="v1")
    mock.reset()
    bodies = {}
    for fam in FAMILIES:
        fetch(gateway, user_path(fam, "dave"), 200, "MISS")
        bodies[fam] = fetch(gateway, user_path(fam, "dave"), 200, "HIT").json
    assert len(mock.requests(method="GET")) == 3
    assert bodies["v1"]["url"] == "https://conversations.twilio.com/v1/Users/" + u["sid"]
    assert bodies["v1s"]["url"] == ("https://conversations.twilio.com/v1/Services/%s/Users/%s"
                                    % (SERVICE, u["sid"]))
    assert bodies["v2"]["url"] == ("https://chat.twilio.com/v2/Services/%s/Users/%s"
                                   % (SERVICE, u["sid"]))
    assert bodies["v2"]["service_sid"] == SERVICE and "chat_service_sid" not in bodies["v2"]
    # a SID lookup in one family does not pick up another family's body
    assert fetch(gateway, user_path("v1", u["sid"]), 200, "HIT").json["url"] == bodies["v1"]["url"]


def test_negative_entries_and_create_clears_them_in_every_family(gateway, mock):
    for creator in FAMILIES:
        ident = "newbie-" + creator
        for fam in FAMILIES:
            r1 = fetch(gateway, user_path(fam, ident), 404, "MISS")
            assert_twilio_error(r1, 404, 20404)
            r2 = fetch(gateway, user_path(fam, ident), 404, "HIT")
            assert r2.json == r1.json
        assert len(upstream_fetches(mock, user_path("v2", ident))) == 1
        created = create(gateway, ident, family=creator)
        for fam in FAMILIES:
            r = gateway.get(user_path(fam, ident))
            assert r.status == 200, (creator, fam, r)
            assert r.json["sid"] == created["sid"], (creator, fam, r)


def test_failed_create_does_not_clear_or_poison(gateway, mock):
    create(gateway, "erin")
    mock.reset()
    fetch(gateway, user_path("v2", "erin"), 200, "MISS")
    fetch(gateway, user_path("v2", "erin"), 200, "HIT")
    dup = gateway.post(users_path("v1s"), {"Identity": "erin"})
    assert_twilio_error(dup, 409, 50201)
    r = gateway.get(user_path("v2", "erin"))
    assert r.status == 200 and r.json["identity"] == "erin", r


def test_update_invalidates_every_family(gateway, mock):
    u = create(gateway, "frank", FriendlyName="Frank")
    for fam in FAMILIES:
        fetch(gateway, user_path(fam, "frank"))
        fetch(gateway, user_path(fam, "frank"), 200, "HIT")
        fetch(gateway, user_path(fam, u["sid"]), 200, "HIT")
    up = gateway.post(user_path("v1", "frank"), {"FriendlyName": "Frank II",
                                                 "Attributes": '{"team":"red"}'})
    assert up.status == 200 and up.json["friendly_name"] == "Frank II", up
    for fam in FAMILIES:
        for key in ("frank", u["sid"]):
            r = gateway.get(user_path(fam, key))
            assert r.status == 200, (fam, key, r)
            assert r.json["friendly_name"] == "Frank II", (fam, key, r)
            assert r.json["attributes"] == '{"team":"red"}', (fam, key, r)


def test_update_by_sid_invalidates_identity_entries(gateway, mock):
    u = create(gateway, "gina", FriendlyName="Gina")
    for fam in FAMILIES:
        fetch(gateway, user_path(fam, "gina"))
        fetch(gateway, user_path(fam, "gina"), 200, "HIT")
    up = gateway.post(user_path("v2", u["sid"]), {"FriendlyName": "Gina B"})
    assert up.status == 200, up
    for fam in FAMILIES:
        r = gateway.get(user_path(fam, "gina"))
        assert r.status == 200 and r.json["friendly_name"] == "Gina B", (fam, r)


def test_delete_invalidates_every_family(gateway, mock):
    u = create(gateway, "hank")
    for fam in FAMILIES:
        fetch(gateway, user_path(fam, "hank"))
        fetch(gateway, user_path(fam, u["sid"]), 200, "HIT")
    d = gateway.delete(user_path("v2", u["sid"]))
    assert d.status == 204, d
    for fam in FAMILIES:
        for key in ("hank", u["sid"]):
            r = gateway.get(user_path(fam, key))
            assert_twilio_error(r, 404, 20404)
    # and a re-create after the delete is visible at once
    again = create(gateway, "hank", family="v1")
    for fam in FAMILIES:
        r = gateway.get(user_path(fam, "hank"))
        assert r.status == 200 and r.json["sid"] == again["sid"], (fam, r)


def test_upstream_gets_account_credentials_never_the_clients(gateway, mock):
    u = create(gateway, "ivan")
    fetch(gateway, user_path("v1", "ivan"))
    fetch(gateway, user_path("v2", u["sid"]))
    gateway.get(user_path("v1s", "nobody-here"))
    gateway.post(user_path("v1s", "ivan"), {"FriendlyName": "I"})
    gateway.get(users_path("v2") + "?PageSize=5")
    gateway.delete(user_path("v1s", "ivan"))
    reqs = mock.requests()
    assert len(reqs) >= 6, [r["path"] for r in reqs]
    client_auth = basic(*CLIENT)
    for r in reqs:
        assert r["headers"].get("authorization") == basic(ACCOUNT, TOKEN), r["headers"]
        auth_headers = [k for k, _ in r["header_list"] if k.lower() == "authorization"]
        assert len(auth_headers) == 1, r["header_list"]
        for k, v in r["header_list"]:
            assert client_auth not in v and CLIENT[1] not in v, (k, v)
        assert CLIENT[1].encode() not in r["body"]


def test_create_passes_webhook_header_and_upstream_reply_unchanged(gateway, mock):
    mock.content_type = "application/json; charset=utf-8"
    r = gateway.post(users_path("v1s"), {"Identity": "judy", "FriendlyName": "Judy"},
                     headers={"X-Twilio-Webhook-Enabled": "true"})
    up = mock.requests(method="POST")[-1]
    assert up["headers"].get("x-twilio-webhook-enabled") == "true", up["headers"]
    assert urllib.parse.parse_qs(up["body"].decode()) == {"Identity": ["judy"],
                                                         "FriendlyName": ["Judy"]}
    for resp, rec in ((r, up),):
        assert resp.status == rec["status"] == 201, resp
        assert resp.body == rec["resp_body"], resp
        assert resp.header("Twilio-Request-Id") == rec["resp_headers"]["Twilio-Request-Id"], resp
        assert resp.header("Content-Type") == "application/json; charset=utf-8", resp
    dup = gateway.post(users_path("v1s"), {"Identity": "judy"},
                       headers={"X-Twilio-Webhook-Enabled": "false"})
    rec = mock.requests(method="POST")[-1]
    assert rec["headers"].get("x-twilio-webhook-enabled") == "false"
    assert dup.status == rec["status"] == 409, dup
    assert dup.body == rec["resp_body"], dup
    assert dup.header("Twilio-Request-Id") == rec["resp_headers"]["Twilio-Request-Id"], dup
    assert dup.header("Content-Type") == "application/json; charset=utf-8", dup
    assert dup.json["code"] == 50201
    # without the header, none is invented
    gateway.post(users_path("v2"), {"Identity": "judy2"})
    assert "x-twilio-webhook-enabled" not in mock.requests(method="POST")[-1]["headers"]


def test_fetch_miss_passes_upstream_reply_unchanged(gateway, mock):
    mock.content_type = "application/json; charset=utf-8"
    mock.add_user("kate")
    for path, status in ((user_path("v2", "kate"), 200), (user_path("v2", "kyle"), 404)):
        r = fetch(gateway, path, status, "MISS")
        rec = upstream_fetches(mock, path)[-1]
        assert r.body == rec["resp_body"], r
        assert r.header("Twilio-Request-Id") == rec["resp_headers"]["Twilio-Request-Id"], r
        assert r.header("Content-Type") == "application/json; charset=utf-8", r


def test_list_is_forwarded_uncached_and_paging_works(gateway, mock):
    for i in range(3):
        mock.add_user("lister%d" % i)
    p0 = gateway.get(users_path("v1s") + "?PageSize=2")
    assert p0.status == 200, p0
    assert [u["identity"] for u in p0.json["users"]] == ["lister0", "lister1"]
    rec = mock.requests(method="GET")[-1]
    assert p0.body == rec["resp_body"]
    assert urllib.parse.parse_qs(rec["path"].split("?", 1)[1]) == {"PageSize": ["2"]}
    nxt = p0.json["meta"]["next_page_url"]
    assert nxt, p0
    rel = urllib.parse.urlsplit(nxt)
    target = rel.path + ("?" + rel.query if rel.query else "")
    p1 = gateway.get(target)
    assert p1.status == 200, p1
    assert [u["identity"] for u in p1.json["users"]] == ["lister2"]
    # lists are never cached: the same list again goes upstream again
    gateway.get(users_path("v1s") + "?PageSize=2")
    lists = [r for r in mock.requests(method="GET") if r["path"].split("?")[0] == users_path("v1s")]
    assert len(lists) == 3
    # and a list does not seed fetch entries (presence fields would be null)
    r = fetch(gateway, user_path("v1s", "lister0"), 200, "MISS")
    assert r.json["is_online"] is False


def test_cached_user_is_not_served_across_services(gateway, mock):
    from conftest import OTHER_SERVICE
    mock.add_user("lee")                       # in SERVICE only
    fetch(gateway, user_path("v2", "lee"), 200, "MISS")
    fetch(gateway, user_path("v2", "lee"), 200, "HIT")
    r = gateway.get(user_path("v2", "lee", OTHER_SERVICE))
    assert r.status == 404, r
    assert len(upstream_fetches(mock, user_path("v2", "lee", OTHER_SERVICE))) == 1
    assert json.loads(r.body)["code"] == 20404
