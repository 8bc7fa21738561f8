"""Admin listener: /metrics counts exactly what the test did; /healthz, /readyz."""

import re

from conftest import fetch, http_request, user_path, users_path

V1S_ROUTE = "/v1/Services/{ServiceSid}/Users/{Sid}"
V2_ROUTE = "/v2/Services/{ServiceSid}/Users/{Sid}"
V1_ROUTE = "/v1/Users/{Sid}"

CONTRACT_FAMILIES = ["usergate_requests_total", "usergate_cache_lookups_total",
                     "usergate_cache_hit_ratio", "usergate_upstream_requests_total",
                     "usergate_upstream_duration_seconds", "usergate_redis_up",
                     "usergate_build_info"]


def test_metrics_match_a_scripted_sequence(gateway, mock):
    n_users = 3
    for i in range(n_users):
        mock.add_user("m%d" % i)
    # 3 misses, 5 hits
    for i in range(n_users):
        fetch(gateway, user_path("v1s", "m%d" % i), 200, "MISS")
    for i in (0, 0, 1, 1, 2):
        fetch(gateway, user_path("v1s", "m%d" % i), 200, "HIT")
    # one 404 miss, then its negative hit
    fetch(gateway, user_path("v1s", "ghost"), 404, "MISS")
    fetch(gateway, user_path("v1s", "ghost"), 404, "HIT")
    # one chat miss, one /v1/Users miss, one create
    fetch(gateway, user_path("v2", "m0"), 200, "MISS")
    fetch(gateway, user_path("v1", "m1"), 200, "MISS")
    assert gateway.post(users_path("v1"), {"Identity": "m9"}).status == 201
    # one request usergate refuses itself
    assert gateway.get("/v1/Users/50%zzoff").status == 400

    m = gateway.metrics()
    req = lambda route, code: m.get_value("usergate_requests_total", route=route, code=code)
    look = lambda route, res: m.get_value("usergate_cache_lookups_total", route=route, result=res)
    assert req(V1S_ROUTE, "200") == 8, m.find("usergate_requests_total")
    assert req(V1S_ROUTE, "404") == 2, m.find("usergate_requests_total")
    assert req(V2_ROUTE, "200") == 1, m.find("usergate_requests_total")
    assert req(V1_ROUTE, "200") == 1, m.find("usergate_requests_total")
    assert req("/v1/Users", "201") == 1, m.find("usergate_requests_total")
    assert sum(v for k, v in m.find("usergate_requests_total", code="400").items()) == 1
    assert look(V1S_ROUTE, "hit") == 5, m.find("usergate_cache_lookups_total")
    assert look(V1S_ROUTE, "miss") == 4, m.find("usergate_cache_lookups_total")
    assert look(V1S_ROUTE, "negative_hit") == 1, m.find("usergate_cache_lookups_total")
    assert look(V2_ROUTE, "miss") == 1 and look(V2_ROUTE, "hit") == 0
    ratio = m.get_value("usergate_cache_hit_ratio", default=None, route=V1S_ROUTE)
    assert ratio is not None and abs(ratio - 6 / 10) < 1e-6, m.find("usergate_cache_hit_ratio")
    assert m.get_value("usergate_cache_hit_ratio", default=None, route=V2_ROUTE) == 0.0
    up = lambda api, code: m.get_value("usergate_upstream_requests_total", api=api, code=code)
    assert up("conversations", "200") == 4, m.find("usergate_upstream_requests_total")
    assert up("conversations", "404") == 1, m.find("usergate_upstream_requests_total")
    assert up("conversations", "201") == 1, m.find("usergate_upstream_requests_total")
    assert up("chat", "200") == 1, m.find("usergate_upstream_requests_total")
    assert m.get_value("usergate_upstream_duration_seconds_count", api="conversations") == 6
    assert m.get_value("usergate_upstream_duration_seconds_bucket", api="conversations",
                       le="+Inf") == 6
    assert m.get_value("usergate_upstream_duration_seconds_count", api="chat") == 1
    assert m.get_value("usergate_redis_up", default=None) == 1
    build = m.find("usergate_build_info")
    assert len(build) == 1 and list(build.values()) == [1.0], build
    assert dict(next(iter(build))[1]).get("version"), build


def test_metrics_text_format(gateway, mock):
    mock.add_user("fmt")
    fetch(gateway, user_path("v1s", "fmt"))
    fetch(gateway, user_path("v1s", "fmt"))
    r = gateway.admin("/metrics")
    assert r.status == 200, r
    assert r.header("Content-Type", "").startswith("text/plain"), r
    text = r.text
    for fam in CONTRACT_FAMILIES:
        assert re.search(r"^# HELP %s \S" % fam, text, re.M), "no HELP for " + fam
        assert re.search(r"^# TYPE %s (counter|gauge|histogram)$" % fam, text, re.M), \
            "no TYPE for " + fam
    assert re.search(r"^# TYPE usergate_upstream_duration_seconds histogram$", text, re.M)
    assert re.search(r"^# TYPE usergate_requests_total counter$", text, re.M)
    # no secret ever shows up
    from conftest import CLIENT, TOKEN
    assert TOKEN not in text and CLIENT[1] not in text
    # histogram buckets are cumulative
    m = gateway.metrics()
    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in
                      m.find("usergate_upstream_duration_seconds_bucket",
                             api="conversations").items()))
    assert buckets and buckets[-1][0] == float("inf")
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), buckets


def test_health_endpoints_and_admin_separation(gateway):
    assert gateway.admin("/healthz").status == 200
    r = gateway.admin("/readyz")
    assert r.status == 200, r
    # the admin routes are not on the client listener, nor the client routes on admin
    for path in ("/metrics", "/healthz", "/readyz"):
        r = gateway.get(path)
        assert r.status == 404, (path, r)
    r = http_request(gateway.admin_port, "GET", user_path("v1s", "alice"), auth=None)
    assert r.status == 404, r
