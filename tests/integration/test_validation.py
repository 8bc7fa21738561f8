"""Bad input and unknown routes: a Twilio-shaped 4xx from usergate itself and
not a single request upstream (usergate is not an open proxy)."""

from conftest import SERVICE, assert_twilio_error, user_path, users_path

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
HEX32 = "0123456789abcdef" * 2
V1S = users_path("v1s")
V2 = users_path("v2")

# (method, path, body, headers, allowed statuses, expected code or None)
BAD_INPUT = [
    ("GET", "/v2/Services/ISbad/Users/alice", None, {}, {400}, None),
    ("GET", "/v1/Services/IS%s/Users/alice" % ("g" * 32), None, {}, {400}, None),
    ("GET", "/v1/Services/%s0/Users/alice" % SERVICE, None, {}, {400}, None),
    ("POST", "/v2/Services/ISbad/Users", "Identity=x", FORM, {400}, None),
    ("DELETE", "/v1/Services/ISbad/Users/alice", None, {}, {400}, None),
    ("GET", "/v1/Services/ISbad/Users", None, {}, {400}, None),
    ("POST", "/v1/Users", "", FORM, {400}, None),
    ("POST", "/v1/Users", "FriendlyName=x", FORM, {400}, None),
    ("POST", V1S, "Identity=", FORM, {400}, None),
    ("POST", V2, "Identity=x&RoleSid=RL123", FORM, {400}, None),
    ("POST", V2, "Identity=x&RoleSid=XX" + HEX32, FORM, {400}, None),
    ("POST", V2, "Identity=x&RoleSid=RL" + HEX32 + "0", FORM, {400}, None),
    ("POST", V1S, "Identity=x&Attributes=%5B1%5D", FORM, {400}, None),
    ("POST", V1S, "Identity=x&Attributes=nope", FORM, {400}, None),
    ("POST", V1S, "Identity=x&Attributes=%22str%22", FORM, {400}, None),
    ("POST", V1S, "Identity=x&Attributes=%7B%22a%22%3A", FORM, {400}, None),
    ("POST", V1S, "Identity=a%zz", FORM, {400}, None),
    ("POST", V1S, "Identity=abc%", FORM, {400}, None),
    ("POST", V1S, '{"Identity":"x"}', JSON, {400, 415}, None),
    ("POST", V1S, "Identity=" + "a" * 257, FORM, {400}, None),
    ("POST", V1S, "Identity=US" + HEX32, FORM, {400}, 50206),
    ("POST", user_path("v1s", "alice"), "RoleSid=bad", FORM, {400}, None),
    ("POST", user_path("v1s", "alice"), "Attributes=%5B%5D", FORM, {400}, None),
    ("POST", user_path("v2", "alice"), "Identity=newname", FORM, {400}, None),
    ("GET", "/v1/Users/" + "a" * 257, None, {}, {400}, None),
    ("GET", "/v1/Users/50%zzoff", None, {}, {400}, None),
    ("GET", "/v1/Users/abc%", None, {}, {400}, None),
    ("GET", "/v1/Users/abc%4", None, {}, {400}, None),
    ("GET", user_path("v2", "a%00b"), None, {}, {400}, None),
    ("GET", user_path("v2", "a%0Ab"), None, {}, {400}, None),
    ("GET", V1S + "?PageSize=0", None, {}, {400}, None),
    ("GET", V2 + "?PageSize=abc", None, {}, {400}, None),
    ("GET", "/v1/Users?PageSize=51", None, {}, {400}, None),
]

UNKNOWN_ROUTES = [
    ("GET", "/", None, {}, {404}, 20404),
    ("GET", "/v1/Conversations", None, {}, {404}, 20404),
    ("GET", "/v1/Configuration", None, {}, {404}, 20404),
    ("GET", "/v1/Services/%s" % SERVICE, None, {}, {404}, 20404),
    ("GET", "/v1/Services/%s/Conversations" % SERVICE, None, {}, {404}, 20404),
    ("GET", "/v3/Users/alice", None, {}, {404}, 20404),
    ("GET", "/V1/Users/alice", None, {}, {404}, 20404),
    ("GET", "/v1/users/alice", None, {}, {404}, 20404),
    ("GET", "/v1/Users/alice/Friends", None, {}, {404}, 20404),
    ("GET", "/2010-04-01/Accounts/AC%s/Messages.json" % HEX32, None, {}, {404}, 20404),
    ("POST", "/2010-04-01/Accounts/AC%s/Messages.json" % HEX32, "To=1&Body=x", FORM, {404}, 20404),
    ("GET", "/v1/Users/../Configuration", None, {}, {400, 404}, None),
    ("GET", "/_mock/requests", None, {}, {404}, 20404),
    ("PUT", "/v1/Users/alice", "FriendlyName=x", FORM, {404, 405}, None),
    ("PATCH", user_path("v2", "alice"), "FriendlyName=x", FORM, {404, 405}, None),
    ("DELETE", "/v1/Users", None, {}, {404, 405}, None),
    ("GET", "/v1/Users/", None, {}, {400, 404}, None),
]


def _run_table(gateway, mock, table):
    mock.add_user("alice")
    failures = []
    for method, path, body, headers, statuses, code in table:
        try:
            r = gateway.request(method, path, body, headers=headers)
            if r.status not in statuses:
                raise AssertionError("status %s not in %s" % (r.status, sorted(statuses)))
            assert_twilio_error(r, code=code)
        except AssertionError as e:
            failures.append("%s %s body=%r: %s\n    got %r" % (method, path[:80], (body or "")[:40],
                                                                e, locals().get("r")))
    upstream = ["%s %s" % (q["method"], q["path"][:100]) for q in mock.requests()]
    msg = "\n".join(failures)
    if upstream:
        msg += "\nrequests that reached upstream:\n  " + "\n  ".join(upstream)
    assert not failures and not upstream, msg


def test_bad_input_gives_twilio_4xx_and_nothing_upstream(gateway, mock):
    _run_table(gateway, mock, BAD_INPUT)


def test_unknown_routes_are_404_and_never_forwarded(gateway, mock):
    _run_table(gateway, mock, UNKNOWN_ROUTES)


def test_valid_requests_still_work_after_bad_ones(gateway, mock):
    """Errors above must not have broken the connection handling or state."""
    mock.add_user("zed")
    r = gateway.get("/v1/Users/50%zzoff")
    assert r.status == 400, r
    r = gateway.get(user_path("v1s", "zed"))
    assert r.status == 200 and r.json["identity"] == "zed", r
