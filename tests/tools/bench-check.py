"""tests/tools/bench-check.py — reads what `paf bench` wrote, for test-bench.sh.

    bench-check.py summary OUT JSON    the JSON parses and its counts (requests, ok,
                                       failed, status codes, failures) are the text
                                       summary's; prints them on one line
    bench-check.py get JSON KEY[.KEY…] one figure of the JSON
    bench-check.py failures JSON       one line per failure group: reason<TAB>detail<TAB>count
    bench-check.py log LOG JSON        the --log file: a header, then one line per request
                                       with the man page's fields, consistent with the JSON;
                                       its p50/p90/p99 of total_us against the JSON's
                                       latency percentiles (within 1%)
Exits 1 with the reason on standard error when a check fails.
"""
import json
import math
import re
import sys


def die(msg):
    print("bench-check: " + msg, file=sys.stderr)
    sys.exit(1)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        die("%s: not JSON: %s" % (path, e))


def parse_text(path):
    """The text summary's counts: requests, ok, failed, {status: n}, {"reason[: detail]": n}."""
    with open(path) as f:
        lines = f.read().splitlines()
    req = None
    status, failures = {}, {}
    section = None
    for line in lines:
        m = re.match(r"^  requests: +(\d+) \((\d+) ok, (\d+) failed\) in ([\d.]+) s$", line)
        if m:
            req = tuple(int(x) for x in m.groups()[:3])
            continue
        if line and not line.startswith(" "):
            section = line
            continue
        if section == "Status codes:":
            m = re.match(r"^  (\d+): (\d+)$", line)
            if m:
                status[m.group(1)] = int(m.group(2))
            elif line.strip() and line.strip() != "(no answer)":
                die("%s: status line %r" % (path, line))
        elif section == "Failures:" and line.strip():
            m = re.match(r"^  (.*): (\d+) \(first at ([\d.]+) s, (.*)\)$", line)
            if not m:
                die("%s: failure line %r" % (path, line))
            failures[m.group(1)] = failures.get(m.group(1), 0) + int(m.group(2))
    if req is None:
        die("%s: no \"requests:\" line in the summary" % path)
    return req, status, failures


def cmd_summary(out, js):
    (n, ok, failed), status, failures = parse_text(out)
    j = load_json(js)
    for key in ("requests", "ok", "failed", "status", "failures", "latency", "wall_seconds",
                "requests_per_second", "connections_made", "histogram"):
        if key not in j:
            die("%s: no \"%s\"" % (js, key))
    if (j["requests"], j["ok"], j["failed"]) != (n, ok, failed):
        die("JSON requests/ok/failed %d/%d/%d, text %d/%d/%d"
            % (j["requests"], j["ok"], j["failed"], n, ok, failed))
    if j["ok"] + j["failed"] != j["requests"]:
        die("JSON ok + failed != requests")
    if j["status"] != status:
        die("JSON status %r, text %r" % (j["status"], status))
    jf = {}
    for g in j["failures"]:
        name = g["reason"] + (": " + g["detail"] if g["detail"] else "")
        jf[name] = jf.get(name, 0) + g["count"]
    if jf != failures:
        die("JSON failures %r, text %r" % (jf, failures))
    if sum(jf.values()) != j["failed"]:
        die("the failure groups add up to %d, failed is %d" % (sum(jf.values()), j["failed"]))
    if sum(c for _, _, c in j["histogram"]) != j["latency"]["count"]:
        die("the histogram's buckets do not add up to latency.count")
    print("requests=%d ok=%d failed=%d status=%s failures=%d groups"
          % (n, ok, failed, ",".join("%s:%d" % kv for kv in sorted(status.items())), len(jf)))


def cmd_get(js, path):
    v = load_json(js)
    for k in path.split("."):
        if not isinstance(v, dict) or k not in v:
            die("%s: no %s" % (js, path))
        v = v[k]
    print(v)


def cmd_failures(js):
    for g in load_json(js)["failures"]:
        print("%s\t%s\t%d" % (g["reason"], g["detail"], g["count"]))


def rank_value(sorted_values, pct):
    # The histogram's rank: ceil(pct% of n), 1-based.
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values) - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def cmd_log(log, js):
    j = load_json(js)
    with open(log) as f:
        lines = f.read().splitlines()
    want = "# start_us connect_us first_byte_us total_us status bytes error"
    if not lines or lines[0] != want:
        die("%s: header %r, not %r" % (log, lines[0] if lines else "", want))
    rows = []
    for i, line in enumerate(lines[1:], 2):
        f = line.split(" ")
        if len(f) != 7 or not all(x.isdigit() for x in f[:4] + [f[5]]) or not re.match(r"^\d+$", f[4]):
            die("%s:%d: not 7 fields (4 numbers, status, bytes, error): %r" % (log, i, line))
        start, conn, ttfb, total, status, nbytes = (int(x) for x in f[:6])
        rows.append((start, conn, ttfb, total, status, nbytes, f[6]))
    if len(rows) != j["requests"]:
        die("%s: %d requests, the JSON says %d" % (log, len(rows), j["requests"]))
    answered = [r for r in rows if r[4] > 0]
    if len(answered) != j["latency"]["count"]:
        die("%s: %d answered, latency.count %d" % (log, len(answered), j["latency"]["count"]))
    wall_us = j["wall_seconds"] * 1e6
    for r in rows:
        if r[0] > wall_us:
            die("a request starting at %d us, after the run's %d us" % (r[0], wall_us))
        if r[4] > 0 and r[2] > r[3]:
            die("first byte %d us after the total %d us" % (r[2], r[3]))
    ok = [r for r in rows if r[6] == "-"]
    if len(ok) != j["ok"]:
        die("%s: %d lines without error, ok is %d" % (log, len(ok), j["ok"]))
    if sum(r[5] for r in rows) != j["body_bytes"]:
        die("%s: %d body bytes, the JSON says %d" % (log, sum(r[5] for r in rows), j["body_bytes"]))
    # The first request on each connection carries its connect time.
    with_connect = sum(1 for r in rows if r[1] > 0)
    if with_connect != j["connections_made"]:
        die("%s: %d requests with a connect time, %d connections made"
            % (log, with_connect, j["connections_made"]))
    totals = sorted(r[3] for r in answered)
    out = []
    for p in (50, 90, 99):
        mine = rank_value(totals, p)
        theirs = j["latency"]["p%d" % p]
        if abs(theirs - mine) > 0.01 * mine:
            die("p%d: %d us from the log, %d us in the JSON: more than 1%% apart" % (p, mine, theirs))
        out.append("p%d %d/%d us" % (p, mine, theirs))
    print("%d lines; log/histogram %s" % (len(rows), ", ".join(out)))


def main():
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "summary":
        cmd_summary(a[1], a[2])
    elif len(a) == 3 and a[0] == "get":
        cmd_get(a[1], a[2])
    elif len(a) == 2 and a[0] == "failures":
        cmd_failures(a[1])
    elif len(a) == 3 and a[0] == "log":
        cmd_log(a[1], a[2])
    else:
        die("usage: see the file's docstring")


main()
