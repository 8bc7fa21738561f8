"""The Quick start's first command without Twilio credentials (demo mode),
and README's curl examples played against it as they are written. It uses
the Quick start's fixed ports (8080, 9090, 8089, and Redis on 6379): the
test fails, loudly, when something else holds them."""

import os
import re
import signal
import socket
import subprocess
import time

from conftest import HERE, USERGATE_BIN, wait_until

TOP = os.path.abspath(os.path.join(HERE, "..", ".."))


def _free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _readme_examples():
    text = open(os.path.join(TOP, "README.md")).read()
    quick = text[text.index("## Quick start"):text.index("## What it serves")]
    blocks = re.findall(r"```sh\n(.*?)```", quick, re.S)
    assert len(blocks) == 2, blocks
    commands = [l for l in blocks[0].splitlines() if l.strip()]
    assert commands == ["./scripts/run-local.sh", "./scripts/test.sh"], commands
    return [l for l in blocks[1].splitlines() if l.startswith("curl ")]


def test_quick_start_demo_mode_plays_the_readme(tmp_path):
    for port in (8080, 9090, 8089):
        assert _free(port), "port %d is taken: the Quick start needs it" % port
    redis_was_there = _answers(6379)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TWILIO_") and k != "CREDENTIALS_DIRECTORY"}
    env.update(USERGATE_BIN=USERGATE_BIN, USERGATE_RUN_DIR=str(tmp_path / "run"))
    out = open(tmp_path / "run-local.log", "wb")
    proc = subprocess.Popen([os.path.join(TOP, "scripts", "run-local.sh")], cwd=TOP, env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: _answers(8080) and _answers(9090), timeout=30,
                   what="the gateway of the Quick start")
        log = open(tmp_path / "run-local.log").read()
        assert "DEMO MODE" in log, log
        outputs = []
        for cmd in _readme_examples():
            r = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=20)
            assert r.returncode == 0, (cmd, r.stdout, r.stderr)
            outputs.append(r.stdout)
        create, first, second, metrics = outputs
        assert '"identity": "alice"' in create and '"sid": "US' in create, create
        assert "X-Cache: MISS" in first and "X-Usergate-Upstream: demo" in first, first
        assert "X-Cache: HIT" in second and re.search(r"(?i)^age: \d+", second, re.M), second
        assert 'usergate_cache_hit_ratio{route="/v1/Users/{Sid}"} 0.500000' in metrics, metrics
        r = subprocess.run(["curl", "-s", "http://127.0.0.1:9090/metrics"], capture_output=True,
                           text=True, timeout=10)
        assert re.search(r'usergate_build_info\{version="[^"]+",upstream="demo"\} 1', r.stdout)
        # the banner of the gateway itself
        wait_until(lambda: "DEMO MODE" in open(tmp_path / "run-local.log").read().split(
            "*** TWILIO_AUTH_TOKEN", 1)[-1], timeout=5, what="the gateway's demo warning")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if not redis_was_there:  # the script daemonized one for us
            subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"],
                           capture_output=True, timeout=10)
    wait_until(lambda: _free(8080) and _free(8089), timeout=10,
               what="the gateway and the mock to stop")
