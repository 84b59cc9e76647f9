"""SalesFlow benchmarks: the JSON API over HTTP against a real `salesflow serve`, next to what the
engine costs in-process. See docs/benchmarks.md for what each scenario measures.

    python benchmarks/run.py                                   # everything, on a fresh SQLite file
    python benchmarks/run.py --scenario one-client --completions 200 --open-tasks 1000   # a quick look
    python benchmarks/run.py --database-url postgresql://postgres@127.0.0.1/bench --scenario concurrent
    python benchmarks/run.py --database-url sqlite --database-url postgresql://... # both, one report

Scenarios (--scenario, repeat or comma-separate; default all):
  one-client  in-process first: SQL statements per completion (scratch SQLite) and the SpiffWorkflow
              floor; then one client runs claims through every approval (upload, start, and per task
              detail, inbox, complete)
  concurrent  N client processes: each submits its claims (upload + start), then, once all have,
              completes them: completions/s and latencies of the completion phase alone
  inbox       GET /api/v1/tasks?limit=50 for dave (a manager holding most open tasks) and grace
              (a member of a large legal claim pool)
  memory      a fresh one-worker server: RSS after a warm-up, then every 1,000 completions up to
              --memory-completions; growth = after - before
By default the benchmark fills the database first (--open-tasks, fast SQL clones of real instances)
and starts the server itself (this checkout's code), then stops it. Every timed row holds only the
calls it names: logins, fills and probes are never in a row. Exit status 1 when a target that was
measured is not met (a target whose conditions this run did not meet is "not measured").
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: this checkout's engine and benchmarks
    sys.path.insert(0, str(ROOT))

from benchmarks import client as http  # noqa: E402
from benchmarks.server import Server, rss_mb  # noqa: E402

SCENARIOS = ("one-client", "concurrent", "inbox", "memory")
FULL_OPEN_TASKS, FULL_MANAGER, FULL_MEMORY_COMPLETIONS = 100_000, 60_000, 10_000
GROWTH_LIMIT_MB = 10.0


# ------------------------------------------------------------------ numbers and tables
def summary(values: list[float]) -> dict:
    """n, p50 (median), p95, p99 (nearest rank), max, in ms."""
    v = sorted(values)
    n = len(v)

    def rank(q: float) -> float:
        return v[max(0, math.ceil(q * n) - 1)] * 1000
    return {"n": n, "p50": statistics.median(v) * 1000, "p95": rank(0.95), "p99": rank(0.99), "max": v[-1] * 1000}


def table(rows: dict[str, list[float]], order: tuple = ()) -> tuple[str, dict]:
    kinds = [k for k in order if k in rows] + sorted(k for k in rows if k not in order)
    lines = [f"  {'call':34} {'n':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    stats = {}
    for kind in kinds:
        s = stats[kind] = summary(rows[kind])
        lines.append(f"  {kind:34} {s['n']:7d} {s['p50']:8.2f} {s['p95']:8.2f} {s['p99']:8.2f} {s['max']:8.1f}")
    return "\n".join(lines), stats


ORDER = (http.UPLOAD, http.START, http.DETAIL, http.INBOX, http.COMPLETE)


class Report:
    def __init__(self, json_path: str | None):
        self.json_path = json_path
        self.data: dict = {"environment": environment(), "runs": [], "targets": []}

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def target(self, name: str, backend: str, value, limit: float, unit: str, *, at_most: bool = True,
               measured_if: bool = True, why_not: str = "", note: str = "") -> None:
        if value is None or not measured_if:
            met = None
        else:
            met = value <= limit if at_most else value >= limit
        self.data["targets"].append({"target": name, "backend": backend, "value": value, "limit": limit,
                                     "unit": unit, "at_most": at_most, "met": met,
                                     "why_not_measured": why_not if met is None else "", "note": note})

    def print_targets(self) -> bool:
        self.say("\n== targets ==")
        ok = True
        for t in self.data["targets"]:
            cmp = "<=" if t["at_most"] else ">="
            value = t["value"]
            shown = "-" if value is None else f"{value} {t['unit']}" if isinstance(value, int) else \
                f"{value:.2f} {t['unit']}"
            if t["met"] is None:
                verdict = f"not measured ({t['why_not_measured']})" if t["why_not_measured"] else "not measured"
            else:
                verdict = "met" if t["met"] else "NOT MET"
                ok &= t["met"]
            line = f"  [{t['backend']}] {t['target']} {cmp} {t['limit']:g} {t['unit']}: {shown}  {verdict}"
            self.say(line + (f"  ({t['note']})" if t["note"] else ""))
        return ok

    def write_json(self) -> None:
        if self.json_path:
            Path(self.json_path).write_text(json.dumps(self.data, indent=1, ensure_ascii=False, default=str))
            self.say(f"\nwrote {self.json_path}")


def load() -> str:
    """The machine's 1-minute load average: others' work on it shows in every figure."""
    try:
        return "load average " + open("/proc/loadavg").read().split()[0]
    except OSError:
        return "load average ?"


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "engine", "webui",
                                "workflows"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "?", ""
    try:
        from importlib.metadata import version
        spiff = version("SpiffWorkflow")
    except Exception:  # noqa: BLE001
        spiff = "?"
    return {"checkout": str(ROOT), "commit": commit + (" (engine/webui/workflows changed)" if dirty else ""),
            "python": platform.python_version(), "spiffworkflow": spiff, "cpus": os.cpu_count(),
            "at": time.strftime("%Y-%m-%d %H:%M:%S %z")}


# ------------------------------------------------------------------ scenarios
def warm_up(url: str, workers: int, claims: int) -> list[str]:
    """Untimed claims through every approval, from one client per worker: caches, pools, imports.
    Returns the server errors met (retried)."""
    if claims <= 0:
        return []
    return [f for r in http.run_clients(url, max(1, workers), claims, "plain") for f in r["failures"]]


def failures_line(failures: list[str], abandoned: int = 0) -> str:
    if not failures:
        return "  server errors (5xx): none"
    return (f"  server errors (5xx): {len(failures)}, each retried (timed in a FAILED row of its own); "
            f"claims given up after {http.RETRIES} failed attempts: {abandoned}; first: {failures[0]}")


def abandoned(results: list[dict]) -> int:
    return sum(r.get("abandoned", 0) for r in results)


def one_client(report: Report, url: str, completions: int) -> dict:
    claims = max(1, completions // 2)
    t0 = time.monotonic()
    result = http.run_client({"url": url, "client_no": 0, "claims": claims, "mode": "human"})
    if "error" in result:
        raise RuntimeError(result["error"])
    seconds = time.monotonic() - t0
    text, stats = table(result["timings"], ORDER)
    report.say(f"\n-- one-client ({load()}): {claims} claims through every approval, one client (alice's claims: dave, "
               f"then heidi); per task: detail, inbox, complete")
    report.say(text)
    report.say(f"  {result['completions']} completions in {seconds:.1f} s, all calls included: "
               f"{result['completions'] / seconds:.1f} completions/s, {claims / seconds:.1f} claims/s")
    report.say(failures_line(result["failures"], result.get("abandoned", 0)))
    return {"scenario": "one-client", "claims": claims, "completions": result["completions"],
            "seconds": seconds, "rows": stats, "failures": result["failures"]}


def concurrent(report: Report, url: str, clients: int, completions: int) -> dict:
    claims_each = max(1, math.ceil(completions / 2 / clients))
    started_load = load()
    results = http.run_clients(url, clients, claims_each, "phased")
    failures = [f for r in results for f in r["failures"]]
    failed_rows = {k: [x for r in results for x in r["timings"].get(k, [])]
                   for k in {k for r in results for k in r["timings"] if "FAILED" in k}}
    submit_rows = {k: [x for r in results for x in r["timings"].get(k, [])] for k in (http.UPLOAD, http.START)}
    complete_rows = {http.COMPLETE: [x for r in results for x in r["timings"].get(http.COMPLETE, [])]}
    s0 = min(r["submit_window"][0] for r in results)
    s1 = max(r["submit_window"][1] for r in results)
    c0 = min(r["complete_window"][0] for r in results)
    c1 = max(r["complete_window"][1] for r in results)
    done = sum(r["completions"] for r in results)
    claims = claims_each * clients
    report.say(f"\n-- concurrent ({started_load}): {clients} client processes, {claims_each} claims each "
               f"(submitters {', '.join(http.SUBMITTERS[k % len(http.SUBMITTERS)] for k in range(clients))})")
    text, sstats = table(submit_rows, ORDER)
    report.say(f"  submit phase (upload + start, every client): {claims} claims in {s1 - s0:.1f} s, "
               f"{claims / (s1 - s0):.1f} claims/s")
    report.say(text)
    text, cstats = table(complete_rows, ORDER)
    rate = done / (c1 - c0)
    report.say(f"  completion phase (only complete calls in flight): {done} completions in {c1 - c0:.1f} s, "
               f"{rate:.1f} completions/s")
    report.say(text)
    if failed_rows:
        text, fstats = table(failed_rows)
        report.say("  calls the server failed (not in the rows above):")
        report.say(text)
    report.say(failures_line(failures, abandoned(results)))
    return {"scenario": "concurrent", "clients": clients, "claims": claims, "completions": done,
            "submit_seconds": s1 - s0, "complete_seconds": c1 - c0, "completions_per_s": rate,
            "submit_rows": sstats, "rows": cstats, "failures": failures}


def inbox(report: Report, url: str, repeat: int, counts: dict | None) -> dict:
    from benchmarks.fill import MANAGER, POOL_MEMBER
    c = http.Client(url)
    kinds = {MANAGER: f"inbox {MANAGER} (manager)", POOL_MEMBER: f"inbox {POOL_MEMBER} (legal pool)"}
    totals = {}
    for user in kinds:
        c.login(user)
        for _ in range(10):  # warm this user's pages and statements; untimed
            c.call(None, "GET", user, "/tasks?limit=50")
    for _ in range(repeat):
        for user, kind in kinds.items():
            r = c.call(kind, "GET", user, "/tasks?limit=50")
            totals[user] = int(r.headers.get("X-Total-Count", "0"))
    text, stats = table(c.timings)
    report.say(f"\n-- inbox ({load()}): GET /api/v1/tasks?limit=50 (the first page), {repeat} times each, one client; "
               f"X-Total-Count: {MANAGER} {totals[MANAGER]}, {POOL_MEMBER} {totals[POOL_MEMBER]}"
               + (f"; open tasks in the database: {counts['total']}" if counts else ""))
    report.say(text)
    report.say(failures_line(c.failures))
    return {"scenario": "inbox", "repeat": repeat, "totals": totals, "open_tasks": counts, "rows": stats,
            "kinds": kinds, "failures": c.failures}


def memory(report: Report, url: str, rss, describe: str, clients: int, completions: int, warmup: int) -> dict:
    """RSS after a warm-up, then after every 1,000 completions (claims on the long route: manager,
    director, general manager, finance). `rss()` reads the server's memory."""
    rss_start = rss()["total"]
    per_claim = 4

    failures: list[str] = []
    given_up = [0]

    def run(n: int) -> tuple[int, dict]:
        claims_each = max(1, math.ceil(n / per_claim / clients))
        results = http.run_clients(url, clients, claims_each, "plain", long_route=True)
        failures.extend(f for r in results for f in r["failures"])
        given_up[0] += abandoned(results)
        return sum(r["completions"] for r in results), http.merge_timings(results)

    started_load = load()
    run(warmup)
    before = rss()
    samples = [(0, before["total"])]
    done, rows = 0, {}
    t0 = time.monotonic()
    while done < completions:
        n, timings = run(min(1000, completions - done))
        done += n
        for k, v in timings.items():
            rows.setdefault(k, []).extend(v)
        samples.append((done, rss()["total"]))
    seconds = time.monotonic() - t0
    after = rss()
    text, stats = table(rows, ORDER)
    report.say(f"\n-- memory ({started_load}): {describe}; {clients} clients, claims on the long route (manager, director, "
               f"general manager, finance); warm-up {warmup} completions")
    report.say(f"  RSS (MB, master + workers): at start {rss_start:.1f}, after warm-up {before['total']:.1f}, "
               f"after {done} more completions {after['total']:.1f}: growth {after['total'] - before['total']:+.1f}")
    report.say("  RSS every ~1,000 completions: " + ", ".join(f"{n}: {mb:.1f}" for n, mb in samples))
    report.say("  per process (MB): " + ", ".join(f"{pid}: {mb:.1f}" for pid, mb in after["processes"].items()))
    report.say(f"  {done} completions in {seconds:.1f} s ({done / seconds:.1f}/s)")
    report.say(text)
    report.say(failures_line(failures, given_up[0]))
    return {"scenario": "memory", "failures": failures, "completions": done, "rss_start": rss_start, "rss_before": before["total"],
            "rss_after": after["total"], "growth": after["total"] - before["total"], "samples": samples,
            "processes_after": after["processes"], "rows": stats}


# ------------------------------------------------------------------ one database
def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def run_database(report: Report, args, spec: str, scenarios: list[str]) -> None:
    from benchmarks import fill as filling
    keep = args.instance_dir is not None
    folder_ctx = tempfile.TemporaryDirectory(prefix="salesflow-bench-") if not keep else None
    instance_dir = Path(args.instance_dir if keep else folder_ctx.name)
    instance_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{instance_dir / 'salesflow.sqlite3'}" if spec in ("sqlite", "sqlite:") else spec
    backend = backend_of(url)
    run = {"backend": backend, "database": _safe(url), "instance_dir": str(instance_dir), "sessions": []}
    report.data["runs"].append(run)
    report.say(f"\n==== {backend}: {_safe(url)} (instance folder {instance_dir}) ====")
    try:
        shape = filling.Shape.of(args.open_tasks, args.manager_share)
        if args.open_tasks > 0:
            run["fill"] = filling.fill(url, str(instance_dir), shape, args.pool_members, log=lambda m: report.say(m))
        counts = _counts(url)
        run["open_tasks"] = counts
        if "one-client" in scenarios:
            in_process(report, args)
            run["floor"] = report.data["in_process"]["floor"]
        sessions = plan_sessions(args, backend, scenarios)
        for workers, names in sessions:
            session_run(report, run, args, url, backend, instance_dir, workers, names)
        evaluate(report, run, args)
    finally:
        if folder_ctx is not None:
            folder_ctx.cleanup()


def _counts(url: str) -> dict:
    from benchmarks.fill import counts
    from engine.db import Database
    db = Database(url)
    try:
        return counts(db)
    finally:
        db.dispose()


def _safe(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}{':***' if ':' in creds else ''}@{host}"
    return url


def in_process(report: Report, args) -> None:
    """Statements per completion and the SpiffWorkflow floor, once per invocation (both run on SQLite
    in this process, whatever the database of the HTTP scenarios)."""
    from benchmarks import inprocess
    if "in_process" in report.data:
        return
    stmts = inprocess.count_statements(claims=5)
    report.say(f"\n-- statements per completion, in-process (Engine on a scratch SQLite database, demo "
               f"organisation; {stmts['completions']} completions of 5 claims after 3 untimed):")
    for name, v in stmts["by_task"].items():
        report.say(f"  {name:20} {v['sql']:5.1f} statements + {v['tx']:.1f} BEGIN/COMMIT")
    report.say(f"  mean {stmts['mean_sql']:.1f} statements per completion (max {stmts['max_sql']}), "
               f"+ {stmts['mean_tx']:.1f} BEGIN/COMMIT; {stmts['mean_sql'] + stmts['mean_tx']:.1f} in all")
    if args.verbose:
        for name, lines in stmts["examples"].items():
            report.say(f"  statements of one {name} completion:")
            for line in lines:
                report.say(f"    {line}")
    floor = inprocess.spiff_floor(args.floor_iterations)
    report.data["in_process"] = {"statements": stmts, "floor": floor}
    report.target("one completion: SQL statements (without BEGIN/COMMIT)", "sqlite", stmts["mean_sql"], 7,
                  "statements", note=f"max {stmts['max_sql']}; with BEGIN/COMMIT {stmts['mean_sql'] + stmts['mean_tx']:.1f}")
    report.say(f"\n-- SpiffWorkflow floor, in-process: restore the saved state of a claim at the manager's "
               f"approval ({floor['state_bytes']} bytes, spec by reference), complete it, run engine steps to "
               f"finance's task, serialize: median {floor['median_ms']:.3f} ms, p95 {floor['p95_ms']:.3f} ms "
               f"({floor['iterations']} iterations)")


def plan_sessions(args, backend: str, scenarios: list[str]) -> list[tuple[int, list[str]]]:
    """Which servers to start, in order: (workers, scenarios on it). Memory always gets a fresh
    one-worker server of its own; concurrent on PostgreSQL runs on 4 workers unless --workers says."""
    if args.url:
        return [(0, [s for s in SCENARIOS if s in scenarios])]
    sessions: dict[int, list[str]] = {}
    for name in ("one-client", "inbox", "concurrent"):
        if name in scenarios:
            workers = args.workers or (4 if name == "concurrent" and backend == "postgresql" else 1)
            sessions.setdefault(workers, []).append(name)
    planned = list(sessions.items())
    if "memory" in scenarios:
        planned.append((1, ["memory"]))
    return planned


def session_run(report: Report, run: dict, args, url: str, backend: str, instance_dir: Path, workers: int,
                names: list[str]) -> None:
    clients = args.clients or (8 if backend == "postgresql" else 4)
    session = {"workers": workers, "threads": args.threads, "scenarios": []}
    run["sessions"].append(session)
    if args.url:
        server, base = None, args.url
        session["server"] = f"already running at {args.url}" + (f" (pid {args.server_pid})" if args.server_pid else "")
        session["workers"] = None
    else:
        server = Server(url, instance_dir, workers, args.threads, args.no_worker).start()
        base = server.url
        session["server"] = server.describe()
    report.say(f"\n-- server: {session['server']}")
    try:
        session["rss_start"] = _rss(server, args)
        if names == ["memory"] and server is not None:  # a fresh server: its warm-up is the scenario's own
            session["scenarios"].append(memory(report, base, server.rss, server.describe(), args.memory_clients,
                                               args.memory_completions, args.memory_warmup))
            return
        session["warmup_failures"] = warm_up(base, max(1, workers), args.warmup)
        if session["warmup_failures"]:
            report.say("  warm-up:" + failures_line(session["warmup_failures"])[1:])
        session["rss_before"] = _rss(server, args)
        for name in names:
            if name == "memory":
                if args.server_pid:
                    session["scenarios"].append(memory(
                        report, base, lambda: rss_mb(args.server_pid), session["server"], args.memory_clients,
                        args.memory_completions, args.memory_warmup))
                else:
                    report.say("\n-- memory: needs a server the benchmark started, or --server-pid: skipped")
            elif name == "one-client":
                session["scenarios"].append(one_client(report, base, args.completions))
            elif name == "inbox":
                session["scenarios"].append(inbox(report, base, args.inbox_repeat, run.get("open_tasks")))
            elif name == "concurrent":
                session["scenarios"].append(concurrent(report, base, clients, args.completions))
        session["rss_after"] = _rss(server, args)
        if session["rss_before"] is not None:
            report.say(f"  server RSS (MB, master + workers): at start {session['rss_start']:.1f}, after warm-up "
                       f"{session['rss_before']:.1f}, after these scenarios {session['rss_after']:.1f}")
    except Exception:
        if server is not None:
            report.say("server log (tail):\n" + server.log_tail())
        raise
    finally:
        if server is not None:
            server.stop()


def _rss(server: Server | None, args) -> float | None:
    if server is not None:
        return server.rss()["total"]
    if args.server_pid:
        return rss_mb(args.server_pid)["total"]
    return None


# ------------------------------------------------------------------ targets
def evaluate(report: Report, run: dict, args) -> None:
    backend = run["backend"]
    counts = run.get("open_tasks") or {}
    full = counts.get("total", 0) >= FULL_OPEN_TASKS
    size_note = f"open tasks {counts.get('total', 0)} < {FULL_OPEN_TASKS}"
    by_name = {}
    for session in run["sessions"]:
        for sc in session["scenarios"]:
            by_name[sc["scenario"]] = (session, sc)
    floor = run.get("floor")
    failures = [f for session in run["sessions"] for f in session.get("warmup_failures", [])]
    failures += [f for session in run["sessions"] for sc in session["scenarios"] for f in sc.get("failures", [])]
    if run["sessions"]:
        report.target("calls the server failed (5xx), every scenario and warm-up", backend, len(failures), 0,
                      "calls", note=failures[0][:160] if failures else "")
    if "concurrent" in by_name:
        session, sc = by_name["concurrent"]
        p95 = sc["rows"][http.COMPLETE]["p95"]
        if backend == "postgresql":
            cond = sc["clients"] == 8 and session["workers"] in (4, None)
            why = "needs 8 clients and --workers 4"
            report.target("8 clients, serve --workers 4: completions/s", backend, sc["completions_per_s"], 300,
                          "/s", at_most=False, measured_if=cond, why_not=why)
            report.target("8 clients, serve --workers 4: complete p95", backend, p95, 40, "ms",
                          measured_if=cond, why_not=why)
        else:
            report.target("4 clients: complete p99", backend, sc["rows"][http.COMPLETE]["p99"], 25, "ms",
                          measured_if=sc["clients"] == 4, why_not="needs 4 clients")
    if "one-client" in by_name:
        _session, sc = by_name["one-client"]
        p50 = sc["rows"][http.COMPLETE]["p50"]
        if floor:
            report.target("one client: complete p50 / SpiffWorkflow floor", backend, p50 / floor["median_ms"], 3,
                          "x floor", measured_if=backend == "sqlite", why_not="a SQLite target",
                          note=f"p50 {p50:.2f} ms, floor {floor['median_ms']:.3f} ms: 3x = {3 * floor['median_ms']:.2f} ms")
    if "inbox" in by_name:
        _session, sc = by_name["inbox"]
        cond = full and counts.get("manager", 0) >= FULL_MANAGER
        why = size_note if not full else f"{counts.get('manager', 0)} of dave's < {FULL_MANAGER}"
        for user, kind in sc["kinds"].items():
            who = "manager" if user == "dave" else "claim-pool member"
            report.target(f"inbox first page p95, {who} {user} ({sc['totals'][user]} tasks)", backend,
                          sc["rows"][kind]["p95"], 5, "ms", measured_if=cond, why_not=why)
    if "memory" in by_name:
        session, sc = by_name["memory"]
        cond = full and sc["completions"] >= FULL_MEMORY_COMPLETIONS and session["workers"] in (1, None)
        why = (size_note if not full else f"{sc['completions']} completions < {FULL_MEMORY_COMPLETIONS}"
               if sc["completions"] < FULL_MEMORY_COMPLETIONS else "needs one worker")
        peak = max(mb for _n, mb in sc["samples"] + [(0, sc["rss_after"])])
        report.target("serve (one worker): RSS, master + workers", backend, peak, 150, "MB",
                      measured_if=cond, why_not=why, note="largest of the samples after the warm-up")
        report.target(f"RSS growth over {sc['completions']} completions", backend, sc["growth"],
                      GROWTH_LIMIT_MB, "MB", measured_if=cond, why_not=why,
                      note=f"before {sc['rss_before']:.1f}, after {sc['rss_after']:.1f}; "
                           f"threshold {GROWTH_LIMIT_MB:g} MB")


# ------------------------------------------------------------------ command line
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", default=None,
                   help="one-client, concurrent, inbox, memory or all (repeat or comma-separate; default all)")
    p.add_argument("--database-url", action="append", default=None,
                   help="SQLAlchemy URL, or 'sqlite' for a fresh SQLite file in a temporary instance folder "
                        "(the default); repeat to run on several databases in one report")
    p.add_argument("--instance-dir", default=None,
                   help="instance folder to use (kept; a SQLite database there is reused) instead of a temporary one")
    p.add_argument("--url", default=None, help="use this running server instead of starting one")
    p.add_argument("--server-pid", type=int, default=None, help="with --url: the server's master pid, for RSS")
    p.add_argument("--workers", type=int, default=None,
                   help="server workers (default 1; 4 for concurrent on PostgreSQL; memory always runs 1)")
    p.add_argument("--threads", type=int, default=8, help="threads per server worker (serve's default 8)")
    p.add_argument("--no-worker", action="store_true", help="start the server with --no-worker")
    p.add_argument("--clients", type=int, default=None, help="concurrent clients (default 8 on PostgreSQL, 4 on SQLite)")
    p.add_argument("--completions", type=int, default=1000, help="completions of one-client and of concurrent")
    p.add_argument("--open-tasks", type=int, default=FULL_OPEN_TASKS,
                   help="open tasks to have in the database first (0: no fill)")
    p.add_argument("--manager-share", type=float, default=0.6, help="share of the open tasks dave holds")
    p.add_argument("--pool-members", type=int, default=5, help="people in the legal claim pool")
    p.add_argument("--inbox-repeat", type=int, default=300, help="inbox calls per user")
    p.add_argument("--memory-completions", type=int, default=FULL_MEMORY_COMPLETIONS)
    p.add_argument("--memory-warmup", type=int, default=400, help="completions before the memory baseline")
    p.add_argument("--memory-clients", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10, help="untimed claims per worker before timed scenarios")
    p.add_argument("--floor-iterations", type=int, default=300)
    p.add_argument("--json", default=None, metavar="FILE", help="also write everything as JSON")
    p.add_argument("--verbose", action="store_true", help="list the statements of one completion")
    args = p.parse_args(argv)
    chosen = []
    for item in args.scenario or ["all"]:
        for name in item.split(","):
            name = name.strip()
            if name == "all":
                chosen.extend(SCENARIOS)
            elif name in SCENARIOS:
                chosen.append(name)
            elif name:
                p.error(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)}, all)")
    args.scenarios = [s for s in SCENARIOS if s in chosen]
    if args.url and args.database_url and len(args.database_url) > 1:
        p.error("--url goes with at most one --database-url (the running server's, for the fill)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    report = Report(args.json)
    env = report.data["environment"]
    report.say(f"SalesFlow benchmarks: {env['checkout']} at {env['commit']}; Python {env['python']}, "
               f"SpiffWorkflow {env['spiffworkflow']}, {env['cpus']} CPUs, {env['at']}")
    report.say(f"scenarios: {', '.join(args.scenarios)}")
    try:
        if args.url and not args.database_url:
            report.say("no --database-url: no fill, open task counts unknown")
            args.open_tasks = 0
            run_external_only(report, args)
        else:
            for spec in args.database_url or ["sqlite"]:
                run_database(report, args, spec, args.scenarios)
    except KeyboardInterrupt:
        report.say("interrupted")
        return 130
    ok = report.print_targets()
    report.write_json()
    return 0 if ok else 1


def run_external_only(report: Report, args) -> None:
    run = {"backend": "unknown", "database": "unknown", "sessions": []}
    report.data["runs"].append(run)
    if "one-client" in args.scenarios:
        in_process(report, args)
        run["floor"] = report.data["in_process"]["floor"]
    session_run(report, run, args, "", "unknown", Path(tempfile.gettempdir()), 0, args.scenarios)
    evaluate(report, run, args)


if __name__ == "__main__":
    sys.exit(main())
