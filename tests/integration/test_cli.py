"""The command line: -t (config check with FILE:LINE: messages), missing
credentials, -V, -h, includes."""

import os
import re
import subprocess

import pytest

from conftest import (ACCOUNT, CLIENT, TOKEN, USERGATE_BIN, base_env, closed_port, free_port,
                      default_sections, render_config, require_binary)


def run(args, env=None, timeout=15):
    require_binary()
    p = subprocess.run([USERGATE_BIN] + args, stdin=subprocess.DEVNULL, capture_output=True,
                       env=base_env(env), timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check_clean(out):
    for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert marker not in out, out


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def good_config(tmp_path, name="good.conf", drop=()):
    s = default_sections(closed_port(), closed_port())
    for sec, key in drop:
        s[sec].pop(key, None)
    return write(tmp_path / name, render_config(s))


def test_check_good_config(tmp_path):
    path = good_config(tmp_path)
    rc, out, err = run(["-t", "-c", path])
    check_clean(out + err)
    assert rc == 0, (out, err)
    assert TOKEN not in out + err and CLIENT[1] not in out + err


def test_check_bad_config_reports_file_and_line(tmp_path):
    lines = [
        "[server]",                                                  # 1
        "listen = 127.0.0.1:%d" % free_port(),                       # 2
        "admin_listen = 127.0.0.1:%d" % free_port(),                 # 3
        "no_such_key = 1",                                           # 4
        "[upstream]",                                                # 5
        "conversations_url = http://127.0.0.1:1",                    # 6
        "chat_url = http://127.0.0.1:1",                             # 7
        "account_sid = ACnothex",                                    # 8
        "auth_token = %s" % TOKEN,                                   # 9
        "default_service_sid = IS123",                               # 10
        "timeout_ms = soon",                                         # 11
        "[redis]",                                                   # 12
        "address = 127.0.0.1:%d" % free_port(),                      # 13
        "[bogus_section]",                                           # 14
        "x = 1",                                                     # 15
        "[client app]",                                              # 16
        "key = app",                                                 # 17
        "secret = %s" % CLIENT[1],                                   # 18
        "services = ISnope",                                         # 19
        "allow = fetch, teleport",                                   # 20
    ]
    path = write(tmp_path / "bad.conf", "\n".join(lines) + "\n")
    rc, out, err = run(["-t", "-c", path])
    text = out + err
    check_clean(text)
    assert rc == 1, (rc, text)
    reported = set()
    for line in text.splitlines():
        m = re.match(r"^(.+):(\d+): (.+)$", line)
        if m and m.group(1) == path:
            reported.add(int(m.group(2)))
    missing = {4, 8, 10, 11, 19, 20} - reported
    assert not missing, "no FILE:LINE: message for lines %s in:\n%s" % (sorted(missing), text)
    assert reported & {14, 15}, "unknown section not reported:\n" + text
    assert TOKEN not in text and CLIENT[1] not in text, "a secret was printed:\n" + text


def test_missing_credentials_refuse_to_start(tmp_path):
    path = good_config(tmp_path, drop=[("upstream", "account_sid"), ("upstream", "auth_token")])
    for args in (["-c", path], ["-t", "-c", path]):
        rc, out, err = run(args, timeout=10)
        text = out + err
        check_clean(text)
        assert rc != 0, (args, text)
        for word in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "account_sid", "auth_token"):
            assert word in text, "%r not named in:\n%s" % (word, text)
    # the environment supplies them
    rc, out, err = run(["-t", "-c", path],
                       env={"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN})
    assert rc == 0, out + err
    assert TOKEN not in out + err


def test_include_glob(tmp_path):
    s = default_sections(closed_port(), closed_port())
    client = s.pop("client app")
    main = write(tmp_path / "main.conf", "include = conf.d/*.conf\n\n" + render_config(s))
    os.mkdir(tmp_path / "conf.d")
    write(tmp_path / "conf.d" / "app.conf", render_config({"client app": client}))
    rc, out, err = run(["-t", "-c", main])
    assert rc == 0, out + err
    bad = write(tmp_path / "conf.d" / "zz-bad.conf",
                "[client billing]\nkey = billing\nfrobnicate = yes\nsecret = b\n")
    rc, out, err = run(["-t", "-c", main])
    assert rc == 1, out + err
    assert "%s:3:" % bad in out + err, out + err


def test_version():
    rc, out, err = run(["-V"])
    assert rc == 0, err
    check_clean(out + err)
    low = out.lower()
    assert re.search(r"usergate \S+", low), out
    for lib in ("libevent", "curl", "hiredis", "cjson"):
        assert lib in low, "%s missing from -V:\n%s" % (lib, out)
    assert len(re.findall(r"\d+\.\d+", out)) >= 4, out


def test_help_and_bad_option():
    rc, out, err = run(["-h"])
    assert rc == 0, err
    assert "usage" in out.lower() and "-c" in out and "-t" in out, out
    rc, out, err = run(["-Z"])
    assert rc != 0
    assert "usage" in (out + err).lower()


def test_missing_config_file(tmp_path):
    rc, out, err = run(["-t", "-c", str(tmp_path / "nope.conf")])
    assert rc == 1, out + err
    assert "nope.conf" in out + err


def test_unreadable_secret_file_named(tmp_path):
    s = default_sections(closed_port(), closed_port())
    s["client app"].pop("secret")
    s["client app"]["secret_file"] = str(tmp_path / "missing.secret")
    path = write(tmp_path / "s.conf", render_config(s))
    rc, out, err = run(["-t", "-c", path])
    assert rc == 1, out + err
    assert re.search(r"^%s:\d+: " % re.escape(path), out + err, re.M), out + err


@pytest.mark.parametrize("listen", ["127.0.0.1:notaport", "127.0.0.1:70000"])
def test_bad_listen_address(tmp_path, listen):
    s = default_sections(closed_port(), closed_port())
    s["server"]["listen"] = listen
    path = write(tmp_path / "l.conf", render_config(s))
    rc, out, err = run(["-t", "-c", path])
    assert rc == 1, out + err
    assert "%s:2:" % path in out + err, out + err
