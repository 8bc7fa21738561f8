"""public_url: absolute Twilio URLs in bodies (url, links.*, meta.*_page_url) are
rewritten to the gateway's public URL, on passthrough answers and on cache hits
alike, and the rewritten links work when followed through the gateway."""

import urllib.parse

from conftest import SERVICE, fetch, user_path, users_path

PUBLIC = "https://usergate.internal.example:8443"


def follow(gw, url):
    assert url.startswith(PUBLIC + "/"), url
    u = urllib.parse.urlsplit(url)
    return gw.get(u.path + ("?" + u.query if u.query else ""))


def test_fetch_and_hit_bodies_point_at_public_url(gateway_factory):
    gw = gateway_factory({"upstream": {"public_url": PUBLIC + "/"}})
    r = gw.post(users_path("v1s"), {"Identity": "linda"})
    assert r.status == 201, r
    assert r.json["url"].startswith(PUBLIC + "/v1/Services/" + SERVICE + "/Users/US"), r.json
    path = user_path("v1s", "linda")
    miss = fetch(gw, path, 200, "MISS")
    hit = fetch(gw, path, 200, "HIT")
    for body in (miss.json, hit.json):
        assert body["url"].startswith(PUBLIC + "/"), body
        assert all(v.startswith(PUBLIC + "/") for v in body["links"].values()), body
        assert "twilio.com" not in str(body), body
    # the link works through the gateway
    again = follow(gw, hit.json["url"])
    assert again.status == 200 and again.json["identity"] == "linda", again


def test_next_page_url_followed_through_gateway(gateway_factory):
    gw = gateway_factory({"upstream": {"public_url": PUBLIC}})
    for name in ("pa", "pb", "pc"):
        assert gw.post(users_path("v2"), {"Identity": name}).status == 201
    page = gw.get(users_path("v2") + "?PageSize=1")
    assert page.status == 200, page
    seen = [u["identity"] for u in page.json["users"]]
    while page.json["meta"]["next_page_url"]:
        page = follow(gw, page.json["meta"]["next_page_url"])
        assert page.status == 200, page
        assert page.json["meta"]["url"].startswith(PUBLIC + "/"), page.json["meta"]
        seen += [u["identity"] for u in page.json["users"]]
    assert sorted(seen) == ["pa", "pb", "pc"], seen


def test_off_by_default(gateway):
    r = gateway.post(users_path("v1s"), {"Identity": "plain"})
    assert r.status == 201
    assert r.json["url"].startswith("https://conversations.twilio.com/"), r.json
