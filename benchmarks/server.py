"""Start and stop `salesflow serve` for a benchmark, and read its memory.

The server runs this checkout's code (PYTHONPATH is set to the repository the benchmark lives in),
on a free port, with SALESFLOW_DATABASE_URL and SALESFLOW_INSTANCE_DIR of the benchmark's choosing.
Its resident memory is the sum of VmRSS (/proc/<pid>/status) over the gunicorn master and every
process below it, found through the process tree of the process the benchmark started.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    """pid and every process below it."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(tree.get(p, []))
    return found


def vm_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid: int) -> dict:
    """{"total": MB, "processes": {pid: MB}} of the tree under pid."""
    per = {p: vm_rss_kb(p) / 1024 for p in process_tree(pid)}
    return {"total": sum(per.values()), "processes": per}


class Server:
    def __init__(self, database_url: str, instance_dir: Path, workers: int, threads: int,
                 no_worker: bool = False, log_dir: Path | None = None):
        self.database_url, self.instance_dir = database_url, Path(instance_dir)
        self.workers, self.threads, self.no_worker = workers, threads, no_worker
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log_dir or instance_dir) / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def describe(self) -> str:
        return (f"salesflow serve --workers {self.workers} --threads {self.threads}"
                + (" --no-worker" if self.no_worker else "") + f" on {self.url}")

    def start(self, timeout: float = 120) -> "Server":
        env = {k: v for k, v in os.environ.items() if not k.startswith("SALESFLOW_") and k != "XDG_RUNTIME_DIR"}
        env.update(SALESFLOW_DATABASE_URL=self.database_url, SALESFLOW_INSTANCE_DIR=str(self.instance_dir),
                   SALESFLOW_LOG_LEVEL="WARNING",
                   PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        cmd = [sys.executable, "-m", "webui.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--demo", "--workers", str(self.workers), "--threads", str(self.threads)]
        if self.no_worker:
            cmd.append("--no-worker")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.log_tail()}")
            if self._answers() and len(process_tree(self.proc.pid)) > self.workers:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/api/v1/openapi.json")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def rss(self) -> dict:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM to the server's own process group (it was started in a session of its own)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
