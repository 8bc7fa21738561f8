"""Sub-resources (user conversations, chat user channels and bindings) are
forwarded with the account's credentials, uncached, under the same limits,
and bad SIDs never leave the gateway."""

import base64

import pytest

from conftest import (ACCOUNT, SERVICE, TOKEN, assert_twilio_error, user_path)

US = "US" + "ab" * 16
CH = "CH" + "cd" * 16
BS = "BS" + "ef" * 16

CASES = [
    ("GET", user_path("v1", US) + "/Conversations"),
    ("GET", user_path("v1", "alice") + "/Conversations/" + CH),
    ("POST", user_path("v1s", US) + "/Conversations/" + CH),
    ("DELETE", user_path("v1s", "alice") + "/Conversations/my-unique-name"),
    ("GET", user_path("v2", US) + "/Channels?PageSize=20"),
    ("POST", user_path("v2", US) + "/Channels/" + CH),
    ("GET", user_path("v2", "alice") + "/Bindings?BindingType=apn"),
    ("DELETE", user_path("v2", US) + "/Bindings/" + BS),
]


ALL = {"client app": {"allow": "fetch, create, update, delete, list, sub"}}


@pytest.mark.parametrize("method,path", CASES)
def test_sub_resource_forwarded_with_account_credentials(gateway_factory, mock, method, path):
    gateway = gateway_factory(ALL)
    upstream_path = path  # forwarded as sent (query included)
    body = {"sid": "x", "ok": True}
    mock.fail(prefix=path.split("?")[0], method=method, status=200, body=body, count=2)
    form = {"NotificationLevel": "muted"} if method == "POST" else None
    r = gateway.request(method, path, form)
    assert r.status == 200 and r.json == body, r
    assert r.xcache is None  # never cached
    seen = mock.requests(method, upstream_path.split("?")[0])
    assert len(seen) == 1, seen
    want = "Basic " + base64.b64encode(("%s:%s" % (ACCOUNT, TOKEN)).encode()).decode()
    assert seen[0]["headers"]["authorization"] == want
    assert seen[0]["path"] == upstream_path
    # a second identical GET goes upstream again: nothing was cached
    if method == "GET":
        assert gateway.request(method, path).status == 200
        assert len(mock.requests(method, upstream_path.split("?")[0])) == 2


BAD = [
    ("GET", "/v1/Services/ISnothex/Users/%s/Conversations" % US),
    ("DELETE", user_path("v2", US) + "/Bindings/BSnothex"),
    ("GET", user_path("v2", US) + "/Bindings?PageSize=0"),
    ("GET", user_path("v1", US) + "/Conversations/a%2Fb"),
    ("GET", user_path("v1", "x" * 300) + "/Conversations"),
]


@pytest.mark.parametrize("method,path", BAD)
def test_bad_sub_resource_requests_never_leave(gateway_factory, mock, method, path):
    gateway = gateway_factory(ALL)
    r = gateway.request(method, path)
    assert_twilio_error(r, status=400)
    assert mock.requests() == []


def test_sub_resources_need_the_sub_permission(gateway_factory, mock):
    gw = gateway_factory()  # the default allow list has no "sub"
    r = gw.get(user_path("v1", US) + "/Conversations")
    assert_twilio_error(r, status=403)
    assert "sub" in r.json["message"]
    assert not mock.requests("GET", user_path("v1", US))
