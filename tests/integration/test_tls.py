"""https upstream: certificate verification is on, ca_file chooses the trust
anchor, and an upstream signed by another CA is refused before any request
leaves."""

import os
import subprocess

import pytest

from conftest import ACCOUNT, SERVICE, TOKEN, assert_twilio_error, fetch, user_path
from mock_twilio import MockTwilio


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def _ca(d, name):
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
             "-out", name + ".pem", "-days", "2", "-subj", "/CN=usergate test " + name, cwd=d)
    return os.path.join(d, name + ".pem")


@pytest.fixture
def tls_mock(tmp_path):
    d = str(tmp_path / "pki")
    os.makedirs(d)
    ca = _ca(d, "ca")
    other = _ca(d, "other-ca")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    _openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    m = MockTwilio(ACCOUNT, TOKEN, SERVICE)
    m.start(tls=(os.path.join(d, "srv.pem"), os.path.join(d, "srv.key")))
    yield m, ca, other
    m.stop()


def _https(m, ca_file):
    return {"upstream": {"conversations_url": m.url, "chat_url": m.url, "ca_file": ca_file}}


def test_https_upstream_verified_with_ca_file(gateway_factory, tls_mock):
    m, ca, _ = tls_mock
    assert m.url.startswith("https://127.0.0.1:")
    gw = gateway_factory(_https(m, ca))
    m.add_user("secure")
    r = fetch(gw, user_path("v2", "secure"), expect_cache="MISS")
    assert r.json["identity"] == "secure"
    req = m.requests("GET")[-1]
    assert req["headers"]["host"] == "127.0.0.1:%d" % m.port  # the upstream's Host


def test_https_upstream_with_the_wrong_ca_is_refused(gateway_factory, tls_mock):
    m, _, other = tls_mock
    gw = gateway_factory(_https(m, other))
    m.add_user("spoofed")
    r = gw.get(user_path("v1s", "spoofed"))
    assert_twilio_error(r, status=502)
    assert m.requests() == []  # the handshake failed: nothing was sent
    r = gw.post(user_path("v1s", "")[:-1], {"Identity": "never-sent"})
    assert_twilio_error(r, status=502)
    assert m.requests() == []
