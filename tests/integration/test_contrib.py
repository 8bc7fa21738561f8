"""contrib/: every metric the Grafana dashboard and the Prometheus alert rules
query is one the daemon actually exports (scraped from a running gateway)."""

import json
import os
import re

from conftest import HERE, fetch, user_path

CONTRIB = os.path.join(HERE, "..", "..", "contrib")
NAME = re.compile(r"\busergate_[a-zA-Z0-9_]+")
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def _exported(gw):
    text = gw.admin("/metrics").text
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names.update(name + s for s in HIST_SUFFIXES)
    return names


def _dashboard_exprs():
    with open(os.path.join(CONTRIB, "grafana", "usergate-dashboard.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v.get("query", "") for v in dash.get("templating", {}).get("list", [])]
    return exprs


def _alert_exprs():
    # The rules file is YAML; its exprs are block scalars or plain strings. A
    # small reader keeps the test free of a YAML dependency: every line from
    # "expr:" up to the next key at the same or a lower indentation.
    exprs, cur, indent = [], None, None
    with open(os.path.join(CONTRIB, "prometheus", "usergate-alerts.yml")) as f:
        for line in f:
            m = re.match(r"^(\s*)(?:- )?expr:\s*(.*)$", line)
            if m:
                cur, indent = [m.group(2)], len(m.group(1))
                exprs.append(cur)
                continue
            if cur is not None:
                lead = len(line) - len(line.lstrip())
                if line.strip() and lead <= indent:
                    cur = None
                else:
                    cur.append(line)
    return ["".join(e) for e in exprs]


def test_dashboard_and_alerts_only_use_exported_metrics(gateway, mock):
    mock.add_user("dash")
    fetch(gateway, user_path("v1", "dash"))  # so labelled families have samples
    exported = _exported(gateway)
    assert "usergate_upstream_duration_seconds_bucket" in exported
    dash, alerts = _dashboard_exprs(), _alert_exprs()
    assert len(dash) >= 9 and len(alerts) >= 6, (len(dash), len(alerts))
    for where, exprs in (("dashboard", dash), ("alerts", alerts)):
        used = {n for e in exprs for n in NAME.findall(e)}
        assert used, where
        unknown = sorted(used - exported)
        assert not unknown, "%s queries metrics the daemon does not export: %s" % (where, unknown)


def test_the_check_catches_a_wrong_name(gateway):
    exported = _exported(gateway)
    assert not set(NAME.findall("rate(usergate_cache_hits_total[5m])")) <= exported


def test_dashboard_covers_what_operators_need():
    joined = "\n".join(_dashboard_exprs())
    for needed in ("usergate_cache_lookups_total", "usergate_requests_total",
                   "histogram_quantile", "usergate_redis_up", "usergate_upstream_queue_depth",
                   "usergate_upstream_throttled_total", "usergate_client_throttled_total"):
        assert needed in joined, needed
    alerts = "\n".join(_alert_exprs())
    for needed in ("usergate_redis_up", "usergate_upstream_throttled_total",
                   "usergate_client_throttled_total", "usergate_upstream_requests_total"):
        assert needed in alerts, needed
