"""`usergate -s`: the live view reads a running daemon's admin listener."""

import re
import subprocess
import threading
import time

from conftest import USERGATE_BIN, closed_port, fetch, user_path


def _stat(*args, timeout=15):
    return subprocess.run([USERGATE_BIN, "-s", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_one_screen_shows_rates_hit_ratio_and_redis(gateway, mock):
    mock.add_user("viewed")
    path = user_path("v1s", "viewed")
    fetch(gateway, path, expect_cache="MISS")
    stop = threading.Event()

    def load():
        while not stop.is_set():
            gateway.get(path)

    t = threading.Thread(target=load)
    t.start()
    try:
        p = _stat("-1", "-i", "500", "http://127.0.0.1:%d" % gateway.admin_port)
    finally:
        stop.set()
        t.join(10)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "http://127.0.0.1:%d" % gateway.admin_port in out
    m = re.search(r"^requests\s+([\d.]+)/s", out, re.M)
    assert m and float(m.group(1)) > 0, out
    row = re.search(r"^/v1/Services/\{ServiceSid\}/Users/\{Sid\}\s+([\d.]+)\s+([\d.]+)%", out, re.M)
    assert row and float(row.group(1)) > 0 and float(row.group(2)) > 90, out
    assert re.search(r"^redis\s+up\s+breaker closed", out, re.M), out
    assert re.search(r"p50\s+\d+ ms", out), out  # one upstream fetch since start


def test_default_url_comes_from_the_config(gateway, mock):
    p = _stat("-1", "-i", "200", "-c", gateway.conf)
    assert p.returncode == 0, p.stderr
    assert "http://127.0.0.1:%d" % gateway.admin_port in p.stdout


def test_unreachable_admin_url_fails_clearly(tmp_path):
    port = closed_port()
    t0 = time.monotonic()
    p = _stat("-1", "http://127.0.0.1:%d" % port)
    assert p.returncode == 1
    assert "no answer from http://127.0.0.1:%d/metrics" % port in p.stderr
    assert time.monotonic() - t0 < 10
    p = _stat("-1", "ftp://example")
    assert p.returncode == 2 and "expected http://" in p.stderr
