#!/usr/bin/env python3
"""tests/http/get_echo.py — a loopback HTTP server answering with the request
it got (method, target, headers, body), for comparing what curl and paf get
send; plus /flaky (503 with Retry-After, then 200) and /cd (Content-Disposition).

Usage: get_echo.py PORTFILE STATEDIR"""
import http.server
import os
import re
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(n) if n else b""
        path = self.path
        if path.startswith("/flaky"):
            # /flaky?KEY&N[&ra]: N failures (503, with ra Retry-After: 1) then 200, per KEY.
            key, count, *ra = path.split("?", 1)[1].split("&")
            # Counted per client (by its User-Agent): each is compared on the same series.
            who = self.headers.get("User-Agent", "").split("/")[0]
            f = os.path.join(sys.argv[2], "flaky-%s-%s" % (key, who))
            seen = int(open(f).read()) if os.path.exists(f) else 0
            open(f, "w").write(str(seen + 1))
            if seen < int(count):
                self.reply(503, b"busy %d\n" % seen, [("Retry-After", "1")] if ra else [])
            else:
                self.reply(200, b"ok after %d\n" % seen)
            return
        if path.startswith("/cd/"):
            name = path[4:].replace("%22", '"').replace("%2F", "/")
            self.reply(200, b"disposition\n",
                       [("Content-Disposition", "attachment; filename=\"%s\"" % name)])
            return
        ctype = self.headers.get("Content-Type", "")
        m = re.search(r"boundary=(\S+)", ctype)
        if m:
            # The boundary is random: the same placeholder for both clients.
            body = body.replace(m.group(1).encode(), b"BOUNDARY")
        out = []
        for k, v in self.headers.items():
            if k.lower() == "user-agent":
                # curl/7.88.1 and paf/VERSION: each names itself. /ua says
                # only whether one was sent (-H "User-Agent:" sends none).
                if path.startswith("/ua"):
                    out.append("user-agent: (sent)")
                continue
            if k.lower() == "content-type" and m:
                v = v.replace(m.group(1), "BOUNDARY")
            out.append("%s: %s" % (k.lower(), v))
        # Sorted: the order of the fields is each client's own.
        out = ["%s %s %s" % (self.command, path, self.request_version)] + sorted(out)
        data = ("\n".join(out) + "\n\n").encode() + body
        self.reply(200, data, [("Content-Type", "text/plain")])

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = handle_any


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
srv.serve_forever()
