"""The two halves of bench/soak.sh, Python standard library only.

  soak.py app PORT
      An app that echoes what it received as JSON (method, path, headers, body
      length) and accepts WebSocket upgrades on any path, echoing text frames.

  soak.py drive GATE ISSUER SECONDS GATE_PID WORKERS
      Mixed traffic against the gate for SECONDS: every kind of request in turn, each
      checked against what a user relies on (the status, and for allowed requests the
      exact identity the app saw). Samples the gate's RSS and open files once a
      warm-up (a tenth of the run, at most 60 s) has passed, and again at the end, and
      prints the summary line last.
"""

import base64
import hashlib
import http.client
import http.server
import json
import os
import socket
import socketserver
import sys
import threading
import time
import urllib.request

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        length = int(self.headers.get("Content-Length") or 0)
        received = 0
        while received < length:
            chunk = self.rfile.read(min(65536, length - received))
            if not chunk:
                break
            received += len(chunk)
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_bytes": received,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            frame = read_frame(self.rfile)
            if frame is None or frame[0] == 0x8:
                self.close_connection = True
                return
            opcode, payload = frame
            self.wfile.write(encode_frame(opcode, payload, mask=False))
            self.wfile.flush()


def read_frame(stream):
    head = stream.read(2)
    if len(head) < 2:
        return None
    opcode, masked, length = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(stream.read(2), "big")
    elif length == 127:
        length = int.from_bytes(stream.read(8), "big")
    mask = stream.read(4) if masked else b"\0\0\0\0"
    payload = bytearray(stream.read(length))
    for i in range(len(payload)):
        payload[i] ^= mask[i % 4]
    return opcode, bytes(payload)


def encode_frame(opcode, payload, mask):
    head = bytearray([0x80 | opcode])
    bit = 0x80 if mask else 0
    if len(payload) < 126:
        head.append(bit | len(payload))
    else:
        head.append(bit | 126)
        head += len(payload).to_bytes(2, "big")
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256


def mint(issuer, sub, groups="", ttl=3600):
    url = f"{issuer}/token?sub={sub}&groups={groups}&ttl={ttl}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode().strip()


class Driver:
    def __init__(self, gate, issuer):
        self.host, port = gate.split(":")
        self.port = int(port)
        self.issuer = issuer
        self.lock = threading.Lock()
        self.counts = {}
        self.unexpected = 0
        self.samples = []
        self.refresh_tokens()

    def refresh_tokens(self):
        self.tokens = {
            "admin": mint(self.issuer, "soak-admin", "admins"),
            "user": mint(self.issuer, "soak-user"),
            "expired": mint(self.issuer, "soak-old", "admins", -120),
        }
        self.minted = time.monotonic()

    def record(self, kind, ok, detail):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if not ok:
                self.unexpected += 1
                if len(self.samples) < 10:
                    self.samples.append(f"{kind}: {detail}")

    def request(self, conn, method, path, token=None, body=None, extra=()):
        headers = {"Host": "soak.test"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for name, value in extra:
            headers[name] = value
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()

    def one_round(self, conn, n):
        t = self.tokens
        # Allowed, with forged identity headers the gate must strip.
        status, body = self.request(
            conn, "GET", f"/admin/x?n={n}", t["admin"],
            extra=[("X-User-Sub", "forged"), ("X-User.Groups", "root")],
        )
        seen = json.loads(body) if status == 200 else {}
        headers = seen.get("headers", {})
        self.record(
            "allowed",
            status == 200
            and headers.get("x-user-sub") == "soak-admin"
            and headers.get("x-user-groups") == "admins"
            and "x-user.groups" not in headers,
            f"{status} {headers}",
        )
        status, _ = self.request(conn, "GET", "/admin/x", "not.a.token")
        self.record("invalid", status == 401, status)
        status, _ = self.request(conn, "GET", "/admin/x", t["expired"])
        self.record("expired", status == 401, status)
        status, _ = self.request(conn, "GET", "/admin/x", t["user"])
        self.record("forbidden", status == 403, status)
        status, _ = self.request(conn, "GET", "/public/x")
        self.record("anonymous-public", status == 200, status)
        status, _ = self.request(conn, "GET", "/app/x")
        self.record("anonymous-protected", status == 401, status)
        status, _ = self.request(conn, "GET", "/public/../admin/x")
        self.record("path-trick", status == 400, status)
        if n % 10 == 0:
            body = os.urandom(1024 * 1024)
            status, answer = self.request(conn, "POST", "/app/upload", t["user"], body=body)
            got = json.loads(answer).get("body_bytes") if status == 200 else None
            self.record("large-body", status == 200 and got == len(body), f"{status} {got}")
        if n % 10 == 5:
            self.websocket(n)

    def websocket(self, n):
        key = base64.b64encode(os.urandom(16)).decode()
        try:
            with socket.create_connection((self.host, self.port), timeout=10) as s:
                s.sendall(
                    (
                        f"GET /app/ws HTTP/1.1\r\nHost: soak.test\r\n"
                        f"Authorization: Bearer {self.tokens['user']}\r\n"
                        f"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
                    ).encode()
                )
                stream = s.makefile("rb")
                status_line = stream.readline().decode()
                while stream.readline() not in (b"\r\n", b""):
                    pass
                message = f"ping {n}".encode()
                s.sendall(encode_frame(0x1, message, mask=True))
                frame = read_frame(stream)
                s.sendall(encode_frame(0x8, b"", mask=True))
                ok = " 101 " in status_line and frame == (0x1, message)
                self.record("websocket", ok, f"{status_line.strip()} {frame}")
        except OSError as e:
            self.record("websocket", False, repr(e))

    def worker(self, deadline, index):
        n = index
        conn = None
        while time.monotonic() < deadline:
            if time.monotonic() - self.minted > 1800:
                with self.lock:
                    if time.monotonic() - self.minted > 1800:
                        self.refresh_tokens()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.one_round(conn, n)
            except (OSError, http.client.HTTPException, ValueError) as e:
                self.record("connection", False, repr(e))
                conn = None
            n += 1
            # A fresh connection now and then, as clients come and go.
            if n % 50 == 0 and conn is not None:
                conn.close()
                conn = None


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def drive(gate, issuer, seconds, pid, workers):
    driver = Driver(gate, issuer)
    start = time.monotonic()
    deadline = start + seconds
    threads = [
        threading.Thread(target=driver.worker, args=(deadline, i), daemon=True)
        for i in range(workers)
    ]
    for t in threads:
        t.start()
    time.sleep(min(60, seconds / 10))
    rss_start, fds_start = sample(pid)
    while time.monotonic() < deadline - 2:
        time.sleep(min(30, max(0.5, deadline - 2 - time.monotonic())))
        rss, fds = sample(pid)
        print(f"  {int(time.monotonic() - start):5d}s rss_kib={rss} fds={fds} requests={sum(driver.counts.values())} unexpected={driver.unexpected}", flush=True)
    rss_end, fds_end = sample(pid)
    for t in threads:
        t.join()
    for kind in sorted(driver.counts):
        print(f"  {kind}: {driver.counts[kind]}")
    for line in driver.samples:
        print(f"  unexpected: {line}", file=sys.stderr)
    print(
        f"unexpected={driver.unexpected} rss_start_kib={rss_start} rss_end_kib={rss_end} "
        f"fds_start={fds_start} fds_end={fds_end}"
    )
    grew = rss_end > rss_start * 1.10
    return 1 if driver.unexpected or grew else 0


if __name__ == "__main__":
    if sys.argv[1] == "app":
        ThreadingServer(("127.0.0.1", int(sys.argv[2])), App).serve_forever()
    else:
        gate, issuer, seconds, pid, workers = sys.argv[2:7]
        sys.exit(drive(gate, issuer, float(seconds), pid, int(workers)))
