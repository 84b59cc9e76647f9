"""Drive a running SalesFlow server over HTTP and time it.

    salesflow serve --demo &          # or any server with the demo organisation
    python benchmarks/api.py --url http://127.0.0.1:5000 --claims 300 --open-tasks 10000

1. Fill the database until it holds --open-tasks open tasks (expense claims left at the
   manager's step; skipped when already there), using --fill-threads clients.
2. Run --claims expense claims through every approval, one client, timing each call:
   start, task detail, inbox listing, complete.
3. Time the inbox listing of a manager whose inbox holds thousands of tasks.
Prints p50/p95/max per call type and claims completed per second, then each target
(SQLite, one client: complete p50 <= 10 ms, p95 <= 25 ms; inbox p95 <= 15 ms) and whether
it was met; exits 1 when one was not.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from collections import defaultdict
from urllib.parse import urlsplit


PASSWORD = "salesflow-demo"
REPS = {"alice": "dave", "bob": "dave", "carol": "erin"}


class Response:
    def __init__(self, status: int, body: bytes, headers):
        self.status_code, self.body, self.headers = status, body, headers

    def json(self):
        return json.loads(self.body)


class Client:
    """A keep-alive HTTP/1.1 client on http.client: the timings measure the server, not a heavy client
    library (requests adds ~4 ms a call on this kind of machine)."""

    def __init__(self, url: str):
        parsed = urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.prefix = parsed.path.rstrip("/") + "/api/v1"
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self.tokens: dict[str, str] = {}
        self.timings: dict[str, list[float]] = defaultdict(list)

    def _send(self, method: str, path: str, body=None, headers=None) -> Response:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
        for attempt in (1, 2):
            try:
                self.conn.request(method, self.prefix + path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                return Response(r.status, r.read(), r.headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt == 2:
                    raise

    def login(self, user: str) -> None:
        r = self._send("POST", "/auth/token", {"username": user, "password": PASSWORD})
        if r.status_code != 200:
            raise RuntimeError(f"login {user}: {r.status_code} {r.body[:200]!r}")
        self.tokens[user] = r.json()["token"]

    def call(self, kind: str, method: str, user: str, path: str, json_body=None) -> Response:
        if user not in self.tokens:
            self.login(user)
        t0 = time.perf_counter()
        r = self._send(method, path, json_body, {"Authorization": f"Bearer {self.tokens[user]}"})
        self.timings[kind].append(time.perf_counter() - t0)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path} as {user}: {r.status_code} {r.body[:300]!r}")
        return r


def claim_data(i: int) -> dict:
    return {"category": ["travel", "communication", "other"][i % 3], "amount": 50 + i % 7,
            "incurred_on": f"2026-{1 + i % 12:02d}-15", "description": f"benchmark claim {i}"}


def open_task_count(client: Client) -> int:
    total = 0
    for manager in ("dave", "erin"):
        r = client.call("fill", "GET", manager, "/tasks?limit=1")
        total += int(r.headers.get("X-Total-Count", "0"))
    return total


def fill(url: str, target: int, threads: int) -> None:
    probe = Client(url)
    have = open_task_count(probe)
    need = max(0, target - have)
    print(f"open tasks at the managers: {have}; creating {need} more with {threads} clients", flush=True)
    if not need:
        return
    counter = iter(range(need))
    lock = threading.Lock()
    t0 = time.perf_counter()

    def work():
        client = Client(url)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            rep = list(REPS)[i % 3]
            client.call("fill", "POST", rep, "/processes/expense_approval/instances", json_body={"data": claim_data(i)})

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(f"filled in {time.perf_counter() - t0:.1f}s", flush=True)


def run_claims(url: str, n: int) -> tuple[Client, float]:
    client = Client(url)
    for user in ("alice", "dave", "frank", "judy", "heidi"):
        client.login(user)
    t0 = time.perf_counter()
    for i in range(n):
        inst = client.call("start", "POST", "alice", "/processes/expense_approval/instances",
                           json_body={"data": claim_data(i)}).json()
        while inst["status"] == "running":
            task = inst["tasks"][0]
            user = task["assignee"]
            client.call("task detail", "GET", user, f"/tasks/{task['id']}")
            client.call("inbox (first page)", "GET", user, "/tasks?limit=50")
            inst = client.call("complete", "POST", user, f"/tasks/{task['id']}/complete",
                               json_body={"data": {"decision": "approve", "comment": "ok"}}).json()["instance"]
        assert inst["data"]["outcome"] == "approved", inst["data"]
    return client, time.perf_counter() - t0


def inbox_only(client: Client, repeat: int) -> None:
    for _ in range(repeat):
        client.call("inbox, manager with thousands of tasks", "GET", "dave", "/tasks?limit=50")
        client.call("inbox, user with few tasks", "GET", "alice", "/tasks")


# (call, percentile, limit in ms): the targets of the foundation issue (SQLite, one client)
TARGETS = [("complete", "p50", 10.0), ("complete", "p95", 25.0),
           ("inbox (first page)", "p95", 15.0), ("inbox, manager with thousands of tasks", "p95", 15.0)]


def report(client: Client) -> bool:
    """Print the table and the targets; True when every target is met."""
    print(f"{'call':42} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    measured = {}
    for kind, values in client.timings.items():
        values = sorted(values)
        p50 = statistics.median(values) * 1000
        p95 = values[max(0, int(len(values) * 0.95) - 1)] * 1000
        measured[kind] = {"p50": p50, "p95": p95}
        print(f"{kind:42} {len(values):6d} {p50:8.1f} {p95:8.1f} {values[-1] * 1000:8.1f}")
    print()
    met = True
    for kind, which, limit in TARGETS:
        value = measured.get(kind, {}).get(which)
        ok = value is not None and value <= limit
        met &= ok
        shown = f"{value:.1f}" if value is not None else "not measured"
        print(f"target {kind} {which} <= {limit:g} ms: {shown} {'met' if ok else 'NOT MET'}")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--claims", type=int, default=200, help="claims to run through all approvals")
    parser.add_argument("--open-tasks", type=int, default=10000, help="open tasks to have in the database first")
    parser.add_argument("--fill-threads", type=int, default=4)
    parser.add_argument("--inbox-repeat", type=int, default=300)
    args = parser.parse_args()
    try:
        fill(args.url, args.open_tasks, args.fill_threads)
        client, elapsed = run_claims(args.url, args.claims)
        inbox_only(client, args.inbox_repeat)
    except (ConnectionRefusedError, OSError) as exc:
        print(f"cannot reach {args.url}: start a server first (salesflow serve --demo): {exc}", file=sys.stderr)
        return 2
    print(f"\n{args.claims} claims through all approvals in {elapsed:.1f}s: {args.claims / elapsed:.1f} claims/s "
          f"(one client; open tasks in the database: {open_task_count(client)})\n")
    return 0 if report(client) else 1


if __name__ == "__main__":
    sys.exit(main())
