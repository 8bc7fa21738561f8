"""Protecting Twilio: max_inflight across 500 concurrent clients, the bounded
queue shedding with 429 + Retry-After, and write pacing per service."""

import time

from conftest import OTHER_SERVICE, SERVICE, assert_twilio_error, parallel, user_path, users_path


def test_max_inflight_holds_under_500_concurrent_clients(gateway_factory, mock):
    # 500 clients, all from 127.0.0.1: no per-address connection limit here.
    gw = gateway_factory({"server": {"max_connections_per_ip": "0"},
                          "upstream": {"max_inflight": "4", "queue_size": "1000",
                                       "queue_timeout_ms": "30000", "timeout_ms": "30000"}})
    n = 500
    for i in range(n):
        mock.add_user("many-%d" % i)
    mock.fail(prefix="/v1/Services/", method="GET", delay=0.01)
    rs = parallel(n, lambda i: gw.get(user_path("v1s", "many-%d" % i), timeout=60))
    bad = [r for r in rs if getattr(r, "status", None) != 200]
    assert not bad, bad[:3]
    peak = mock.stats()["peak_concurrency"]
    assert 1 <= peak <= 4, peak
    mock.clear_failures()


def test_full_queue_sheds_with_429_and_retry_after(gateway_factory, mock):
    gw = gateway_factory({"server": {"max_connections_per_ip": "0"},
                          "upstream": {"max_inflight": "1", "queue_size": "2",
                                       "queue_timeout_ms": "10000", "max_retries": "0"}})
    n = 10
    for i in range(n):
        mock.add_user("shed-%d" % i)
    mock.fail(prefix="/v2/", method="GET", delay=0.5)
    rs = parallel(n, lambda i: gw.get(user_path("v2", "shed-%d" % i), timeout=30))
    ok = [r for r in rs if r.status == 200]
    shed = [r for r in rs if r.status == 429]
    assert len(ok) + len(shed) == n, rs
    assert len(ok) == 3 and len(shed) == 7, [r.status for r in rs]  # 1 in flight + 2 queued
    for r in shed:
        assert_twilio_error(r, status=429, code=20429)
        assert int(r.header("Retry-After")) >= 1
    assert mock.stats()["peak_concurrency"] == 1
    assert gw.metrics().get(("usergate_client_throttled_total",
                             frozenset({("client", "app"), ("reason", "inflight")}))) == 7
    mock.clear_failures()


def _create_times(mock, service):
    path = users_path("v2", service)
    return sorted(r["time"] for r in mock.requests("POST", path))


def test_writes_are_paced_per_service(gateway_factory, mock):
    gw = gateway_factory({"upstream": {"writes_per_second": "5", "queue_timeout_ms": "10000",
                                       "timeout_ms": "15000"}})
    n = 15
    rs = parallel(n, lambda i: gw.post(users_path("v2"), {"Identity": "paced-%d" % i},
                                        timeout=30))
    assert all(getattr(r, "status", None) == 201 for r in rs), rs
    times = _create_times(mock, SERVICE)
    assert len(times) == n
    # one every 200 ms: never more than 5 (+1 for timing noise) in any
    # one-second window, and the last leaves about 2.8 s after the first
    for i, t in enumerate(times):
        in_window = [x for x in times[i:] if x < t + 1.0]
        assert len(in_window) <= 6, (i, [round(x - times[0], 3) for x in times])
    assert times[-1] - times[0] >= 2.5, times
    assert gw.metrics().get_value("usergate_upstream_paced_total") >= n - 1


def test_pacing_refuses_past_the_wait_and_services_are_independent(gateway_factory, mock):
    gw = gateway_factory({"upstream": {"writes_per_second": "2", "queue_timeout_ms": "600"}})
    # 2/s and at most 0.6 s of waiting: of 5 at once, two go (now, +0.5 s)
    rs = parallel(5, lambda i: gw.post(users_path("v1s"), {"Identity": "burst-%d" % i}))
    assert sorted(r.status for r in rs) == [201, 201, 429, 429, 429], rs
    for r in rs:
        if r.status == 429:
            assert_twilio_error(r, status=429, code=20429)
            assert int(r.header("Retry-After")) >= 1
    assert len(mock.requests("POST", users_path("v1s"))) == 2  # refused ones never left
    # another service has its own schedule
    rs = parallel(2, lambda i: gw.post(users_path("v1s", OTHER_SERVICE), {"Identity": "o%d" % i}))
    assert [r.status for r in rs] == [201, 201], rs
    m = gw.metrics()
    assert m.get_value("usergate_upstream_pace_refused_total") == 3
    # reads are never paced
    assert [gw.get(user_path("v1s", "o0", OTHER_SERVICE)).status for _ in range(5)] == [200] * 5
