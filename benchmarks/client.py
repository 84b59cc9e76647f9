"""The HTTP side: a keep-alive client on http.client, and the claim runs each benchmark client does.

Nothing here imports the engine: client processes (spawned, one per concurrent client, so the
client's own GIL never throttles the server it measures) load only this module.
"""
from __future__ import annotations

import http.client
import json
import random
import time
import traceback
import uuid
from collections import defaultdict
from urllib.parse import urlsplit

PASSWORD = "salesflow-demo"
# a tiny real PDF (tests/helpers.py PDF): expense claims require at least one invoice
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"
# submitters, one per client (client k submits as SUBMITTERS[k % len]): distinct people, so no two
# clients ever touch one instance; each has a manager, none is finance (heidi approves them all)
SUBMITTERS = ("alice", "carol", "bob", "dave", "erin", "grace", "ivan", "oscar", "frank")
APPROVERS = ("dave", "erin", "frank", "judy", "heidi")
APPROVE = {"decision": "approve", "comment": "ok"}
RETRIES = 5  # attempts of a call the server failed (5xx) before the client gives the claim up

# what each timed row is called
UPLOAD, START, DETAIL, INBOX, COMPLETE = ("upload invoice", "start (submit claim)", "task detail",
                                          "inbox (first page, 50)", "complete")


class HTTPError(RuntimeError):
    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class Response:
    def __init__(self, status: int, body: bytes, headers):
        self.status, self.body, self.headers = status, body, headers

    def json(self):
        return json.loads(self.body)


class Client:
    """One keep-alive HTTP/1.1 connection: the timings measure the server, not a heavy client
    library (requests adds ~4 ms a call on this kind of machine). `timings[kind]` holds the seconds
    of every call made with that kind; calls without a kind are not timed (logins)."""

    def __init__(self, url: str):
        parsed = urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.prefix = parsed.path.rstrip("/") + "/api/v1"
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        self.tokens: dict[str, str] = {}
        self.timings: dict[str, list[float]] = defaultdict(list)
        self.failures: list[str] = []  # server errors (5xx) met, each retried
        self.completions = 0  # complete calls that succeeded

    def _send(self, method: str, path: str, body: bytes | None, headers: dict) -> Response:
        for attempt in (1, 2):
            try:
                self.conn.request(method, self.prefix + path, body=body, headers=headers)
                r = self.conn.getresponse()
                return Response(r.status, r.read(), r.headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the server closed a kept-alive connection: reconnect once (that call is then retried,
                # and its time includes the new connection)
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt == 2:
                    raise

    def login(self, user: str) -> None:
        r = self._send("POST", "/auth/token", json.dumps({"username": user, "password": PASSWORD}).encode(),
                       {"Content-Type": "application/json"})
        if r.status != 200:
            raise HTTPError(f"login {user}: {r.status} {r.body[:200]!r}")
        self.tokens[user] = r.json()["token"]

    def call(self, kind: str | None, method: str, user: str, path: str, json_body=None, *,
             body: bytes | None = None, content_type: str | None = None) -> Response:
        if user not in self.tokens:
            self.login(user)
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode(), "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in range(1, RETRIES + 1):
            t0 = time.perf_counter()
            r = self._send(method, path, body, headers)
            elapsed = time.perf_counter() - t0
            if r.status < 500:
                break
            # a server error (a deadlock, an overload) rolled the call back whole: it is counted and
            # timed in a row of its own ("<kind> FAILED 500"), never in the call's row, and retried
            self.failures.append(f"{method} {path} as {user}: {r.status} {r.body[:200]!r}")
            if kind is not None:
                self.timings[f"{kind} FAILED {r.status}"].append(elapsed)
            if attempt < RETRIES:
                time.sleep(random.uniform(0.02, 0.2) * attempt)
        if kind is not None and r.status < 500:
            self.timings[kind].append(elapsed)
        if r.status >= 400:
            raise HTTPError(f"{method} {path} as {user}: {r.status} {r.body[:300]!r}", r.status)
        return r

    def upload(self, kind: str | None, user: str, data: bytes = PDF, filename: str = "invoice.pdf") -> str:
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
                f"Content-Type: application/pdf\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        r = self.call(kind, "POST", user, "/attachments", body=body,
                      content_type=f"multipart/form-data; boundary={boundary}")
        return r.json()["id"]


def claim_data(client_no: int, i: int, long_route: bool) -> dict:
    """A claim's data. Short route (manager, finance): a few yuan, spread over 100 years of months, so
    no budget ever runs out however often the benchmark runs on one database. Long route (manager,
    director above ¥20,000, general manager beyond the ¥10,000 budget, finance): ¥25,000."""
    n = client_no * 100003 + i
    return {"category": ["travel", "communication", "other", "marketing", "entertainment"][n % 5],
            "amount": 25000 if long_route else 1 + n % 9,
            "incurred_on": f"{2030 + (n // 12) % 100}-{1 + n % 12:02d}-15",
            "description": f"benchmark claim {client_no}/{i} 基准测试"}


def submit(client: Client, submitter: str, client_no: int, i: int, long_route: bool, timed: bool = True) -> dict:
    """Upload an invoice and start a claim with it: the instance object (at its first approval)."""
    invoice = client.upload(UPLOAD if timed else None, submitter)
    data = {**claim_data(client_no, i, long_route), "invoices": [invoice]}
    r = client.call(START if timed else None, "POST", submitter, "/processes/expense_approval/instances",
                    json_body={"data": data})
    return r.json()


def finish(client: Client, inst: dict, *, human: bool = False, timed: bool = True) -> int:
    """Complete the instance's open tasks, each as its assignee, until it ends; human: open the task
    and the inbox before each completion, as a person would. Returns the completions made."""
    done = 0
    while inst["status"] == "running":
        if not inst["tasks"]:
            raise HTTPError(f"instance {inst['id']} is running with no open task")
        task = inst["tasks"][0]
        user = task["assignee"]
        if user is None:
            raise HTTPError(f"task {task['id']} ({task['name']}) has no assignee: the benchmark expects none")
        if human:
            client.call(DETAIL if timed else None, "GET", user, f"/tasks/{task['id']}")
            client.call(INBOX if timed else None, "GET", user, "/tasks?limit=50")
        r = client.call(COMPLETE if timed else None, "POST", user, f"/tasks/{task['id']}/complete",
                        json_body={"data": APPROVE})
        done += 1
        client.completions += 1
        body = r.json()
        inst = {**body["instance"], "tasks": body.get("tasks", body["instance"].get("tasks", []))}
    if inst["data"].get("outcome") != "approved":
        raise HTTPError(f"instance {inst['id']} ended {inst['data'].get('outcome')!r}, not approved")
    return done


def run_client(cfg: dict, barrier=None, queue=None) -> dict:
    """One benchmark client. cfg: url, client_no, claims, mode, long_route.
    mode "phased": submit every claim (upload + start), wait at the barrier for every client, then
    complete them all: the completion phase has only complete calls in flight.
    mode "human": per claim, upload, start, then per task: detail, inbox, complete.
    mode "plain": per claim, upload, start, complete each task (no extra reads)."""
    result = {"client_no": cfg["client_no"]}
    client = Client(cfg["url"])
    try:
        submitter = cfg.get("submitter") or SUBMITTERS[cfg["client_no"] % len(SUBMITTERS)]
        for user in {submitter, *APPROVERS}:  # logins are not timed and not inside any timed window
            client.login(user)
        if barrier is not None:
            barrier.wait(timeout=600)
        mode, long_route, claims = cfg["mode"], cfg.get("long_route", False), cfg["claims"]
        t0 = time.monotonic()
        abandoned = 0

        def attempt(fn, *a, **kw):
            """fn's result; None when the server kept failing it (5xx RETRIES times): the claim is given up."""
            nonlocal abandoned
            try:
                return fn(*a, **kw)
            except HTTPError as exc:
                if exc.status < 500:
                    raise
                abandoned += 1
                return None
        if mode == "phased":
            pending = [attempt(submit, client, submitter, cfg["client_no"], i, long_route) for i in range(claims)]
            result["submit_window"] = (t0, time.monotonic())
            barrier.wait(timeout=600)
            t1 = time.monotonic()
            for inst in pending:
                if inst is not None:
                    attempt(finish, client, inst)
            result["complete_window"] = (t1, time.monotonic())
        else:
            for i in range(claims):
                inst = attempt(submit, client, submitter, cfg["client_no"], i, long_route)
                if inst is not None:
                    attempt(finish, client, inst, human=mode == "human")
            result["window"] = (t0, time.monotonic())
        result.update(timings=dict(client.timings), completions=client.completions, claims=claims,
                      abandoned=abandoned)
    except Exception:  # noqa: BLE001 - reported to the parent, which stops the run
        result["error"] = traceback.format_exc()
        if barrier is not None:
            barrier.abort()
    result["failures"] = client.failures
    if queue is not None:
        queue.put(result)
    return result


def run_clients(url: str, clients: int, claims_each: int, mode: str, long_route: bool = False,
                timeout: float = 3600) -> list[dict]:
    """`clients` client processes (spawned: no engine or server state inherited), each running
    run_client; returns their results. Raises if any failed."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients)
    queue = ctx.Queue()
    procs = [ctx.Process(target=run_client, args=({"url": url, "client_no": k, "claims": claims_each,
                                                   "mode": mode, "long_route": long_route}, barrier, queue),
                         daemon=True) for k in range(clients)]
    for p in procs:
        p.start()
    results = []
    deadline = time.monotonic() + timeout
    try:
        while len(results) < clients:
            try:
                results.append(queue.get(timeout=1))
            except Exception:  # noqa: BLE001 - queue.Empty: check the processes are alive
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    barrier.abort()
                    raise RuntimeError(f"client process failed (exit codes {[p.exitcode for p in procs]})")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError("a benchmark client failed:\n" + errors[0])
    return sorted(results, key=lambda r: r["client_no"])


def merge_timings(results: list[dict]) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for kind, values in r["timings"].items():
            merged[kind].extend(values)
    return dict(merged)
