"""JSON API v1 (CONTRACT.md). Validates input, calls the engine, maps its errors to HTTP."""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, Response, current_app, g, jsonify, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from engine.errors import EngineError, RateLimited, ValidationFailed

from . import edge, openapi
from .auth import Throttled, check_credentials, issue_token, revoke_token, user_from_token

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.before_request(edge.check_api_body)  # one JSON parser with the edge's limits, for every route


def engine():
    return current_app.extensions["salesflow"]


def error(status: int, message: str, **extra):
    return jsonify({"error": message, **extra}), status


@bp.errorhandler(EngineError)
def _engine_error(exc: EngineError):
    if isinstance(exc, ValidationFailed):
        return error(422, exc.message, errors=exc.errors)
    if isinstance(exc, RateLimited):
        response, status = error(429, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, status
    if exc.status == 422:  # ProcessError: the process itself failed; every 422 has `errors` (CONTRACT.md)
        return error(422, exc.message, errors={"_process": exc.message})
    return error(exc.status, exc.message)


def exception_headers(exc: HTTPException) -> dict:
    """The headers an HTTP error carries besides its body's type: `Allow` on a 405, `Retry-After`."""
    return {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    if isinstance(exc, edge.BodyRejected) and exc.code == 422:
        return error(422, exc.description, errors={"_body": exc.description})
    response, status = error(exc.code or 500, exc.description or exc.name)
    response.headers.update(exception_headers(exc))
    return response, status


def authenticated(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        username = user_from_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if username is None:
            return error(401, "authentication required: send Authorization: Bearer <token>")
        g.username = username
        return view(*args, **kwargs)
    return wrapper


def json_body(required: bool = True) -> dict:
    """The request body as a JSON object (parsed and checked at the edge); no body is {} unless required."""
    body = g.get("json_body")
    if body is None:
        if required:
            raise ValidationFailed({"_body": "a JSON object is required"}, "request body missing")
        return {}
    if not isinstance(body, dict):
        raise ValidationFailed({"_body": "must be a JSON object"}, "request body is not a JSON object")
    return body


def data_field(body: dict):
    data = body.get("data")
    if data is not None and not isinstance(data, dict):
        raise ValidationFailed({"data": "must be a JSON object"})
    return data


@bp.get("/openapi.json")
def openapi_json():
    """This API described as OpenAPI 3.1 (webui/openapi.py); no token needed."""
    return jsonify(openapi.document())


@bp.get("/docs")
def docs():
    """The same description as a page for people (server-rendered: the CSP allows no external scripts)."""
    return render_template("api_docs.html", doc=openapi.document(), operations=openapi.OPERATIONS)


@bp.post("/auth/token")
@edge.body_errors(400)
def token():
    body = g.get("json_body")
    if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
            or not isinstance(body.get("password"), str):
        return error(400, "send {\"username\": ..., \"password\": ...}")
    try:
        info = check_credentials(body["username"].strip(), body["password"])
    except Throttled as exc:
        response, status = error(429, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, status
    if info is None:
        return error(401, "wrong username or password")
    return jsonify({"token": issue_token(info["username"])})


@bp.delete("/auth/token")
@authenticated
def revoke():
    """Revoke the caller's own token (204); other tokens and sessions of the user stay valid."""
    revoke_token(g.token_claims)
    return "", 204


@bp.get("/processes")
@authenticated
def processes():
    return jsonify([{"id": p["id"], "name": p["name"], "version": p["version"], "names": p["names"]}
                    for p in engine().processes(g.username)])


@bp.post("/processes/<process_id>/instances")
@authenticated
def start(process_id: str):
    body = json_body(required=False)
    instance = engine().start(process_id, g.username, data_field(body))
    return jsonify(instance), 201


@bp.get("/instances")
@authenticated
def instances():
    status = request.args.get("status") or None
    if status and status not in ("running", "completed", "cancelled", "error"):
        return error(400, "status must be running, completed, cancelled or error")
    limit, offset = _page_args()
    return jsonify(engine().instances(g.username, process_id=request.args.get("process_id") or None,
                                      status=status, limit=limit, offset=offset,
                                      scope=request.args.get("scope") or "all", q=request.args.get("q")))


@bp.get("/instances/<iid:instance_id>")
@authenticated
def instance(instance_id):
    return jsonify(engine().instance(instance_id, g.username))


@bp.post("/instances/<iid:instance_id>/withdraw")
@authenticated
def withdraw(instance_id):
    return jsonify(engine().withdraw(instance_id, g.username))


@bp.get("/instances/<iid:instance_id>/diagram.svg")
@authenticated
def diagram(instance_id):
    lang = request.args.get("lang") or request.accept_languages.best_match(("zh", "en")) or "zh"
    svg = engine().diagram(instance_id, g.username, titles_lang=lang)
    return Response(svg, mimetype="image/svg+xml")


def _page_args(default_limit: int = 200) -> tuple[int, int]:
    return edge.page_args(default_limit)


def _instance_filter():
    """The `instance_id` filter: an instance id, or 422."""
    raw = request.args.get("instance_id") or None
    if raw is None:
        return None
    number = edge.instance_id(raw)
    if number is None:
        raise ValidationFailed({"instance_id": "not an instance id"}, "bad instance_id")
    return number


@bp.get("/tasks")
@authenticated
def tasks():
    limit, offset = _page_args()
    overdue = request.args.get("overdue") in ("1", "true", "yes")
    rows, total = engine().tasks(g.username, process_id=request.args.get("process_id") or None,
                                 instance_id=_instance_filter(), limit=limit, offset=offset, with_total=True,
                                 scope=request.args.get("scope") or "open", q=request.args.get("q"),
                                 overdue=overdue)
    response = jsonify(rows)
    response.headers["X-Total-Count"] = str(total)
    return response


@bp.get("/tasks/<tid:task_id>")
@authenticated
def task(task_id):
    return jsonify(engine().task(task_id, g.username))


@bp.post("/tasks/<tid:task_id>/claim")
@authenticated
def claim(task_id):
    return jsonify(engine().claim(task_id, g.username))


@bp.post("/tasks/<tid:task_id>/complete")
@authenticated
def complete(task_id):
    body = json_body(required=False)
    return jsonify(engine().complete(task_id, g.username, data_field(body) or {}))


@bp.post("/tasks/<tid:task_id>/delegate")
@authenticated
def delegate(task_id):
    body = json_body()
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ValidationFailed({"comment": "must be a string"})
    return jsonify(engine().delegate(task_id, g.username, body.get("to"), comment))



def _optional_text(body: dict, name: str):
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ValidationFailed({name: "must be a string"})
    return value


@bp.post("/tasks/<tid:task_id>/add-signer")
@authenticated
def add_signer(task_id):
    body = json_body()
    return jsonify(engine().add_signer(task_id, g.username, body.get("users"), body.get("mode"),
                                       _optional_text(body, "comment")))


@bp.post("/tasks/bulk-complete")
@authenticated
def bulk_complete():
    body = json_body()
    sent = body.get("ids")
    ids = sent
    if isinstance(sent, list):  # each id as the route converter reads it (any case); others get their own 404
        ids = [edge.task_id(i) or i if isinstance(i, str) else i for i in sent]
    results = engine().bulk_complete(ids, g.username, body.get("data", {}))
    for result, original in zip(results, sent):
        result["id"] = original  # each result names the id as it was sent
    return jsonify({"results": results})


@bp.post("/instances/<iid:instance_id>/cc")
@authenticated
def copy(instance_id):
    body = json_body()
    return jsonify(engine().copy(instance_id, g.username, body.get("users"), _optional_text(body, "comment")))


@bp.post("/instances/<iid:instance_id>/urge")
@authenticated
def urge(instance_id):
    body = json_body(required=False)
    return jsonify(engine().urge(instance_id, g.username, _optional_text(body, "comment")))


@bp.get("/instances/<iid:instance_id>/comments")
@authenticated
def comments(instance_id):
    return jsonify(engine().comments(instance_id, g.username))


@bp.post("/instances/<iid:instance_id>/comments")
@authenticated
def add_comment(instance_id):
    body = json_body()
    return jsonify(engine().comment(instance_id, g.username, body.get("text"), body.get("attachments"))), 201


@bp.get("/notifications")
@authenticated
def notifications():
    unread = request.args.get("unread") in ("1", "true", "yes")
    limit, offset = _page_args(100)
    return jsonify(engine().notifications(g.username, unread=unread, limit=limit, offset=offset))


@bp.post("/notifications/<iid:notification_id>/read")
@authenticated
def notification_read(notification_id):
    engine().mark_read(g.username, notification_id)
    return jsonify({"read": True})


@bp.post("/notifications/read-all")
@authenticated
def notifications_read_all():
    return jsonify({"read": engine().mark_read(g.username)})


@bp.get("/me")
@authenticated
def me():
    return jsonify(engine().me(g.username))


@bp.patch("/me")
@authenticated
def update_me():
    return jsonify(engine().update_me(g.username, json_body()))


@bp.post("/me/password")
@authenticated
def change_password():
    body = json_body()
    engine().change_password(g.username, body.get("old"), body.get("new"))
    return "", 204


UPLOAD_LIMIT = 20 * 1024 * 1024 + 64 * 1024  # a 20 MiB file and its multipart framing


def _uploaded_file():
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed({"file": "send the file as the multipart/form-data part `file`"})
    return upload


@bp.post("/attachments")
@edge.accepts("multipart/form-data")
@edge.max_body(UPLOAD_LIMIT)
@authenticated
def upload_attachment():
    upload = _uploaded_file()
    return jsonify(engine().upload(g.username, upload.stream, upload.filename)), 201


@bp.get("/attachments/<attachment_id>")
@authenticated
def download_attachment(attachment_id):
    meta, handle = engine().open_attachment(attachment_id, g.username)
    return send_file(handle, mimetype=meta["content_type"], as_attachment=True, download_name=meta["filename"],
                     max_age=0, etag=meta["sha256"])


@bp.get("/instances/<iid:instance_id>/attachments")
@authenticated
def instance_attachments(instance_id):
    return jsonify(engine().attachments(instance_id, g.username))


@bp.post("/instances/<iid:instance_id>/attachments")
@edge.accepts("multipart/form-data")
@edge.max_body(UPLOAD_LIMIT)
@authenticated
def add_instance_attachment(instance_id):
    upload = _uploaded_file()
    return jsonify(engine().upload(g.username, upload.stream, upload.filename, instance_id=instance_id)), 201


# ------------------------------------------------------------------ administration (admin only: 403)
@bp.get("/admin/users")
@authenticated
def admin_users():
    return jsonify(engine().admin_users(g.username, request.args.get("q") or None))


@bp.post("/admin/users")
@authenticated
def admin_create_user():
    return jsonify(engine().create_user(g.username, json_body())), 201


@bp.get("/admin/users/<username>")
@authenticated
def admin_user(username):
    return jsonify(engine().admin_user(g.username, username))


@bp.patch("/admin/users/<username>")
@authenticated
def admin_update_user(username):
    return jsonify(engine().update_user(g.username, username, json_body()))


@bp.get("/admin/org-chart")
@authenticated
def admin_org_chart():
    return jsonify(engine().org_chart(g.username))


@bp.get("/admin/regions")
@authenticated
def admin_regions():
    return jsonify(engine().regions(g.username))


@bp.post("/admin/regions")
@authenticated
def admin_add_region():
    return jsonify(engine().add_region(g.username, json_body())), 201


@bp.patch("/admin/regions/<code>")
@authenticated
def admin_update_region(code):
    return jsonify(engine().update_region(g.username, code, json_body()))


@bp.get("/admin/roles")
@authenticated
def admin_roles():
    return jsonify(engine().roles(g.username))


@bp.get("/admin/definitions")
@authenticated
def admin_definitions():
    return jsonify([{k: v for k, v in d.items() if k != "latest"} for d in engine().admin_definitions(g.username)])


@bp.get("/admin/instances")
@authenticated
def admin_instances():
    status = request.args.get("status", "error") or None
    if status and status not in ("running", "completed", "cancelled", "error"):
        return error(400, "status must be running, completed, cancelled or error")
    return jsonify(engine().admin_instances(g.username, status))


@bp.post("/admin/instances/<iid:instance_id>/retry")
@authenticated
def admin_retry(instance_id):
    return jsonify(engine().retry(instance_id, g.username))


@bp.post("/admin/instances/<iid:instance_id>/cancel")
@authenticated
def admin_cancel(instance_id):
    body = json_body()
    return jsonify(engine().cancel(instance_id, g.username, body.get("comment")))


@bp.post("/admin/tasks/<tid:task_id>/reassign")
@authenticated
def admin_reassign(task_id):
    body = json_body()
    return jsonify(engine().reassign(task_id, g.username, body.get("to")))


@bp.get("/admin/audit")
@authenticated
def admin_audit():
    limit, offset = _page_args()
    return jsonify(engine().audit(g.username, request.args.get("entity") or None, request.args.get("key") or None,
                                  limit, offset))


@bp.get("/budgets")
@authenticated
def budgets():
    return jsonify(engine().budgets(g.username, request.args.get("month") or None, request.args.get("region") or None))
