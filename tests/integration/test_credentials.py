"""Twilio credentials: account SID + auth token or API key + secret, from the
config, *_file (relative to $CREDENTIALS_DIRECTORY) or TWILIO_* variables;
reloadable with SIGHUP; never logged, printed or exported."""

import base64
import os
import signal
import subprocess

from conftest import (ACCOUNT, TOKEN, USERGATE_BIN, fetch, render_config, user_path, wait_until)

SK = "SK" + "5a" * 16
SK_SECRET = "sk-secret-" + "9" * 20


def _basic(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def _last_auth(mock):
    return mock.requests("GET")[-1]["headers"]["authorization"]


def test_api_key_credentials(gateway_factory, mock):
    mock.credentials[SK] = SK_SECRET
    gw = gateway_factory({"upstream": {"auth_token": None, "api_key_sid": SK,
                                       "api_key_secret": SK_SECRET}})
    mock.add_user("keyed")
    fetch(gw, user_path("v1s", "keyed"))
    assert _last_auth(mock) == _basic(SK, SK_SECRET)


def test_token_file_relative_to_credentials_directory_and_reload(gateway_factory, mock, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "auth_token").write_text(TOKEN + "\n")
    gw = gateway_factory({"upstream": {"auth_token": None, "auth_token_file": "auth_token"}},
                         env={"CREDENTIALS_DIRECTORY": str(creds)})
    mock.add_user("filed")
    fetch(gw, user_path("v2", "filed"))
    assert _last_auth(mock) == _basic(ACCOUNT, TOKEN)
    # rotate the token: Twilio accepts the new one, the file changes, HUP
    new = "rotated-" + "7" * 24
    mock.credentials[ACCOUNT] = new
    (creds / "auth_token").write_text(new + "\n")
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in gw.stderr(), what="reload")
    r = gw.get(user_path("v2", "filed"), headers={"Cache-Control": "no-cache"})
    assert r.status == 200, r
    assert _last_auth(mock) == _basic(ACCOUNT, new)
    for secret in (TOKEN, new):
        assert secret not in gw.stderr()
        assert secret not in gw.admin("/metrics").text


def test_credentials_from_the_environment(gateway_factory, mock):
    gw = gateway_factory({"upstream": {"auth_token": None, "account_sid": None}},
                         env={"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN})
    mock.add_user("envy")
    fetch(gw, user_path("v1", "envy"))
    assert _last_auth(mock) == _basic(ACCOUNT, TOKEN)


def test_check_mode_never_prints_secrets(gateway_factory, mock, tmp_path):
    gw = gateway_factory(start=False)
    p = subprocess.run([USERGATE_BIN, "-t", "-c", gw.conf], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0, p.stderr
    assert TOKEN not in p.stdout + p.stderr
    # a broken file: problems are listed, secrets are not
    gw.sections["upstream"]["timeout_ms"] = "soon"
    with open(gw.conf, "w") as f:
        f.write(render_config(gw.sections))
    p = subprocess.run([USERGATE_BIN, "-t", "-c", gw.conf], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 1 and "timeout_ms" in p.stdout + p.stderr
    assert TOKEN not in p.stdout + p.stderr
