"""gunicorn's settings for `salesflow serve`, read by path: the master process then imports gunicorn
and this file only, never the app (it serves nothing; the workers load the app themselves), so it
stays small. `salesflow serve` prepares the instance (migrations, demo, the secret key), sets the
SALESFLOW_SERVE_* variables and replaces itself with gunicorn on this file."""
import os

bind = os.environ.get("SALESFLOW_SERVE_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("SALESFLOW_SERVE_WORKERS", "1"))
threads = int(os.environ.get("SALESFLOW_SERVE_THREADS", "8"))
worker_class = "gthread"
wsgi_app = "webui.wsgi:app"
accesslog = os.environ.get("SALESFLOW_ACCESS_LOG") or None
timeout = 60
# gunicorn >= 25 opens a control socket at one fixed path per user ($XDG_RUNTIME_DIR or
# ~/.gunicorn/gunicorn.ctl), shared by every server of that user: off unless asked for at a path of
# this server's own (SALESFLOW_CONTROL_SOCKET)
if os.environ.get("SALESFLOW_CONTROL_SOCKET"):
    control_socket = os.environ["SALESFLOW_CONTROL_SOCKET"]
else:
    control_socket_disable = True


def post_fork(server, worker):
    """In each worker, before it loads the app: no `Server: gunicorn` header on any response."""
    from webui.cli import hide_server_header
    hide_server_header()


def post_worker_init(worker):
    """The app is loaded: what it loaded (Flask, SQLAlchemy, SpiffWorkflow) lives as long as the
    worker, so it leaves the garbage collector's full passes; then the background worker starts,
    unless `--no-worker` (the instance folder's lock lets exactly one worker process run it)."""
    import gc
    gc.collect()
    gc.freeze()
    if os.environ.get("SALESFLOW_SERVE_BACKGROUND", "1") == "1":
        from webui.cli import start_background_worker
        start_background_worker(worker)
