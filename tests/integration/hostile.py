"""A hostile client for the listener: many threads, each picking random
attacks (random bytes, truncated and giant heads, slowloris, pipelined
garbage, smuggling attempts, dot segments, huge bodies, clients that never
read, forged Twilio events at /twilio/events) against one usergate port, for a bounded time and request count.
Loopback only. Used by test_hostile.py and by hand:

    /usr/bin/python3 tests/integration/hostile.py PORT SECONDS [SEED]
"""

import base64
import random
import socket
import sys
import threading
import time

GOOD_AUTH = "Basic " + base64.b64encode(b"app:app-secret-1").decode()

PATHS = ["/v1/Users/..", "/v1/Users/%2e%2e/Conversations", "/v1/Users/a%2Fb",
         "/v1/Configuration", "/v1/Users/alice/Conversations/..%2F..", "//v1/Users",
         "/v1/Users/%C3%28", "/v1/Users/" + "A" * 5000, "/v1/Users?PageSize=9999",
         "/v2/Services/ISzz/Users/x", "/v1/Users/alice?x=1", "/v1/Users/\xff"]


class Hostile:
    def __init__(self, port, seconds, seed=1, threads=8, max_actions=20000, slow_conns=200):
        self.port = port
        self.deadline = time.monotonic() + seconds
        self.rng_seed = seed
        self.threads = threads
        self.max_actions = max_actions
        self.slow_conns = slow_conns
        self.actions = 0
        self.lock = threading.Lock()
        self.slow = []

    def _conn(self, timeout=2.0):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return s

    def _send_close(self, data, read=True):
        try:
            s = self._conn()
            s.sendall(data)
            if read:
                s.settimeout(0.3)
                try:
                    while s.recv(65536):
                        pass
                except OSError:
                    pass
            s.close()
        except OSError:
            pass

    # -- attacks (each one action)
    def random_bytes(self, rng):
        self._send_close(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096))))

    def giant_head(self, rng):
        self._send_close(b"GET /v1/Users/alice HTTP/1.1\r\nHost: a\r\nX-Big: "
                         + b"a" * rng.randint(20000, 200000) + b"\r\n\r\n")

    def many_headers(self, rng):
        self._send_close(b"GET / HTTP/1.1\r\nHost: a\r\n"
                         + b"".join(b"X-%d: v\r\n" % i for i in range(rng.randint(65, 500)))
                         + b"\r\n")

    def truncated(self, rng):
        req = ("POST /v1/Users HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n"
               "Content-Length: 100\r\n\r\nIdentity=x" % GOOD_AUTH).encode()
        self._send_close(req[:rng.randint(1, len(req))], read=False)

    def pipelined_garbage(self, rng):
        good = ("GET /v1/Users/alice HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n\r\n"
                % GOOD_AUTH).encode()
        self._send_close(good * rng.randint(1, 20) + b"\x00GARBAGE / HTTP/9.9\r\n\r\n" + good)

    def smuggle(self, rng):
        self._send_close(("POST /v1/Users HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n"
                          "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                          "DELETE /v1/Users/alice HTTP/1.1\r\nHost: a\r\n\r\n" % GOOD_AUTH).encode())

    def dot_segments(self, rng):
        path = rng.choice(PATHS)
        method = rng.choice(["GET", "POST", "DELETE", "PUT", "CONNECT"])
        self._send_close(("%s %s HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n"
                          "Content-Length: 0\r\n\r\n" % (method, path, GOOD_AUTH))
                         .encode("latin-1"))  # "\xff" is the raw byte: invalid UTF-8

    def huge_body(self, rng):
        self._send_close(("POST /v1/Users HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n"
                          "Content-Length: 10000000\r\n\r\n" % GOOD_AUTH).encode()
                         + b"x" * 100000)

    def never_reads(self, rng):
        good = ("GET /v1/Users/alice HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n\r\n"
                % GOOD_AUTH).encode()
        try:
            s = self._conn(timeout=0.5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                for _ in range(200):
                    s.sendall(good * 20)
            except OSError:
                pass
            s.close()
        except OSError:
            pass

    def slowloris(self, rng):
        with self.lock:
            if len(self.slow) >= self.slow_conns:
                victim = self.slow.pop(0)
                try:
                    victim.close()
                except OSError:
                    pass
        try:
            s = self._conn()
            s.sendall(b"GET /v1/Users/alice HTTP/1.1\r\nHost: a\r\n")
            with self.lock:
                self.slow.append(s)
        except OSError:
            pass

    def bad_auth(self, rng):
        self._send_close(("GET /v1/Users/alice HTTP/1.1\r\nHost: a\r\nAuthorization: Basic %s\r\n\r\n"
                          % base64.b64encode(b"app:guess-%d" % rng.randint(0, 1 << 30)).decode())
                         .encode())

    def forged_event(self, rng):
        """A Twilio event the attacker cannot sign: random form or JSON
        bodies, signatures and query strings at the webhook path."""
        kind = rng.choice(["form", "json", "junk"])
        if kind == "form":
            body = ("EventType=onUserUpdated&AccountSid=AC%032x&ChatServiceSid=IS%032x&Identity=alice"
                    % (rng.getrandbits(128), rng.getrandbits(128))).encode()
            ctype = "application/x-www-form-urlencoded"
        elif kind == "json":
            body = (b'[{"type":"com.twilio.conversations.user.updated","data":{"Identity":"alice"}}]'
                    * rng.randint(1, 50))
            ctype = "application/json"
        else:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000)))
            ctype = rng.choice(["application/json", "text/plain", "application/x-www-form-urlencoded"])
        query = rng.choice(["", "?bodySHA256=" + "0" * 64, "?bodySHA256=%zz", "?" + "a" * 3000])
        sig = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(20))).decode()
        head = ("POST /twilio/events%s HTTP/1.1\r\nHost: a\r\nContent-Type: %s\r\n"
                "X-Twilio-Signature: %s\r\nContent-Length: %d\r\n\r\n"
                % (query, ctype, sig, len(body))).encode()
        self._send_close(head + body)

    ATTACKS = ["random_bytes", "giant_head", "many_headers", "truncated", "pipelined_garbage",
               "smuggle", "dot_segments", "huge_body", "never_reads", "slowloris", "bad_auth",
               "forged_event"]

    def _worker(self, i):
        rng = random.Random(self.rng_seed * 1000 + i)
        while time.monotonic() < self.deadline:
            with self.lock:
                if self.actions >= self.max_actions:
                    return
                self.actions += 1
            getattr(self, rng.choice(self.ATTACKS))(rng)
            # keep the slow ones dribbling
            if rng.random() < 0.05:
                with self.lock:
                    for s in self.slow[:20]:
                        try:
                            s.send(b"X: y\r\n")
                        except OSError:
                            pass

    def run(self):
        ts = [threading.Thread(target=self._worker, args=(i,), daemon=True)
              for i in range(self.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(max(1.0, self.deadline - time.monotonic() + 15))
        for s in self.slow:
            try:
                s.close()
            except OSError:
                pass
        return self.actions


if __name__ == "__main__":
    port, secs = int(sys.argv[1]), float(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    n = Hostile(port, secs, seed).run()
    print("hostile: %d actions in %.0f s" % (n, secs))
