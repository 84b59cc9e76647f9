"""The JSON API described as OpenAPI 3.1: data, one entry per operation in OPERATIONS.

Served at GET /api/v1/openapi.json and rendered for people at GET /api/v1/docs (both from
`document()`). tests/api/test_openapi.py fails when a route of /api/v1 has no entry here or an
entry has no route, and tests/api/test_fuzz.py fuzzes every entry with schemathesis: the
responses an entry lists (and their schemas) are what the route must answer.

Adding a route: append one `op(...)` to OPERATIONS (method, path as in the route with `{name}`
for each variable part, summary, parameters, request body, responses). Reuse the schemas in
SCHEMAS (`ref("Instance")`) and the helpers below; a new object shape goes into SCHEMAS.
"""
from __future__ import annotations

import copy
import re
from functools import lru_cache

PREFIX = "/api/v1"
MAX_ID = 2 ** 31 - 1

# ------------------------------------------------------------------ helpers
def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: dict, **extra) -> dict:
    return {"type": "array", "items": items, **extra}


def obj(required: tuple[str, ...] = (), additional: bool = True, **properties) -> dict:
    """An object schema: `properties` by name, those in `required` must be present."""
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if not additional:
        schema["additionalProperties"] = False
    return schema


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


STRING = {"type": "string"}
TEXT = {"type": "string", "maxLength": 5000}
USERNAME = {"type": "string", "minLength": 1, "maxLength": 64}
DATETIME = {"type": "string", "format": "date-time"}
INSTANCE_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
TASK_ID = {"type": "string", "format": "uuid",
           "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"}


def path_param(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


INSTANCE = path_param("instance_id", INSTANCE_ID, "instance id: ASCII digits, 1..2^31-1 (else 404)")
TASK = path_param("task_id", TASK_ID, "task id: a UUID (else 404)")
NOTIFICATION = path_param("notification_id", INSTANCE_ID, "notification id: ASCII digits, 1..2^31-1 (else 404)")
PROCESS = path_param("process_id", {"type": "string", "minLength": 1, "maxLength": 200},
                     "process id, e.g. expense_approval")


def paging(default_limit: int) -> list[dict]:
    return [query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": default_limit},
                  "page size, 1-1000 (else 422)"),
            query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_ID, "default": 0},
                  "rows to skip (else 422)")]


def json_body(schema: dict, required: bool = True, description: str = "", example: dict | None = None) -> dict:
    media: dict = {"schema": schema}
    if example is not None:
        media["example"] = example
    body = {"required": required, "content": {"application/json": media}}
    if description:
        body["description"] = description
    return body


def ok(schema: dict | None, description: str = "OK", headers: dict | None = None) -> dict:
    response: dict = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response


ERROR_TEXT = {
    400: "Bad request: a NUL or a lone surrogate in a parameter, or a bad filter value",
    401: "No valid bearer token (missing, forged, expired, revoked, or its user signed out)",
    403: "Not the caller's to see or do",
    404: "No such thing (or an id of the wrong shape)",
    409: "Conflict: already done, or done concurrently by someone else",
    413: "Body over 1 MiB",
    415: "Body not application/json",
    422: "Invalid data: `errors` names each field (`_body` for a body that is not a JSON object, "
         "`_process` when the process itself failed on the data; nothing was changed)",
    429: "Too soon: try again after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 0}}}


def errors(*codes: int) -> dict:
    """Error responses, each an Error object."""
    out = {}
    for code in codes:
        response = ok(ref("ValidationError" if code == 422 else "Error"), ERROR_TEXT[code])
        if code == 429:
            response["headers"] = RETRY_AFTER
        out[str(code)] = response
    return out


# what every authenticated route may answer
AUTH_ERRORS = (400, 401, 404)


def op(method: str, path: str, summary: str, *, responses: dict, params: tuple = (), body: dict | None = None,
       auth: bool = True, tag: str, description: str = "", error_codes: tuple[int, ...] = (),
       refused_body: int = 422) -> dict:
    """One operation. `error_codes` are added to the errors every route may answer: AUTH_ERRORS (400 and
    404 without a token), and 413, 415 and `refused_body` (the status of a malformed JSON body) for a
    method that takes a body."""
    codes = set(error_codes) | (set(AUTH_ERRORS) if auth else {400, 404})
    if method in ("post", "patch", "put", "delete"):
        codes |= {413, 415, refused_body}
    operation: dict = {"summary": summary, "tags": [tag],
                       "operationId": method + "_" + (re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_") or "root"),
                       "parameters": list(params),
                       "responses": {**responses, **{k: v for k, v in errors(*sorted(codes)).items()
                                                     if k not in responses}}}
    if description:
        operation["description"] = description
    if body is not None:
        operation["requestBody"] = body
    if not auth:
        operation["security"] = []
    return {"method": method, "path": path, "operation": operation}


# ------------------------------------------------------------------ schemas
TASK_OBJECT = obj(
    ("id", "instance_id", "process_id", "name", "title", "lane", "assignee", "status", "due_at", "created_at"),
    id={"type": "string", "format": "uuid"},
    instance_id=INSTANCE_ID,
    process_id=STRING,
    name={"type": "string", "description": "the BPMN element id"},
    title=STRING,
    title_en=nullable(STRING),
    lane=nullable(STRING),
    assignee=nullable(STRING),
    status={"type": "string", "enum": ["open", "completed", "cancelled", "waiting", "held"]},
    due_at=nullable(DATETIME),
    overdue={"type": "boolean"},
    created_at=DATETIME,
    completed_at=nullable(DATETIME),
    is_approval={"type": "boolean"},
)

SCHEMAS: dict[str, dict] = {
    "Error": obj(("error",), error={"type": "string"},
                 errors={"type": "object", "additionalProperties": {"type": "string"}}),
    "ValidationError": obj(("error", "errors"), error={"type": "string"},
                           errors={"type": "object", "additionalProperties": {"type": "string"}}),
    "Token": obj(("token",), token={"type": "string", "minLength": 1}),
    "Process": obj(("id", "name", "version"), id=STRING, name=STRING, version={"type": "integer"},
                   names={"type": "object", "additionalProperties": {"type": "string"}}),
    "Task": TASK_OBJECT,
    "TaskDetail": {"allOf": [ref("Task"), obj(
        ("form", "data"),
        form={"type": "object", "description": "the task's JSON Schema"},
        data={"type": "object", "description": "the instance data the form shows"},
        return_targets=array(obj(("name", "title", "assignee"), name=STRING, title=STRING,
                                 assignee=nullable(STRING))),
    )]},
    "HistoryEvent": obj(("at", "actor", "action", "task", "detail"), at=DATETIME, actor=nullable(STRING),
                        action=STRING, task=nullable(STRING), detail={}),
    "InstanceSummary": obj(
        ("id", "process_id", "status", "started_by", "data", "tasks"),
        id=INSTANCE_ID, process_id=STRING,
        status={"type": "string", "enum": ["running", "completed", "cancelled", "error"]},
        started_by=nullable(STRING), subject=nullable(STRING), data={"type": "object"},
        tasks=array(ref("Task")), created_at=DATETIME, updated_at=DATETIME, completed_at=nullable(DATETIME),
    ),
    "Instance": {"allOf": [ref("InstanceSummary"), obj(("history",), history=array(ref("HistoryEvent")))]},
    "Completed": obj(("instance", "tasks"), instance=ref("Instance"), tasks=array(ref("Task"))),
    "BulkResults": obj(("results",), results=array(obj(
        ("id", "status"), id={}, status={"type": "integer", "enum": [200, 403, 404, 409, 422]},
        error={"type": "string"}))),
    "Attachment": obj(("id",), id=STRING, filename=STRING, content_type=STRING, size={"type": "integer"},
                      sha256=STRING, uploaded_by=nullable(STRING), at=DATETIME),
    "Comment": obj(("id", "at", "author", "text", "attachments"), id={"type": "integer"}, at=DATETIME,
                   author=nullable(STRING), text=STRING, attachments=array(ref("Attachment"))),
    "Notification": obj(
        ("id", "at", "kind", "text", "instance_id", "task_id", "read"),
        id={"type": "integer"}, at=DATETIME,
        kind={"type": "string", "enum": ["task_assigned", "returned", "outcome", "cc", "urge", "mention",
                                         "reminder", "overdue", "escalation"]},
        text=STRING, instance_id=nullable(INSTANCE_ID), task_id=nullable(STRING), read={"type": "boolean"}),
    "OutOfOffice": obj(("from", "until"), additional=False, **{"from": DATETIME, "until": DATETIME},
                       delegate=nullable({"type": "string", "maxLength": 64,
                                          "description": "who stands in (empty or null: the lane decides)"})),
    "Me": obj(
        ("username", "display_name", "email", "roles", "region", "manager", "locale", "mail_notifications",
         "out_of_office"),
        username=STRING, display_name=STRING, email=nullable(STRING), roles=array(STRING),
        region=nullable(STRING), manager=nullable(STRING), locale=nullable({"type": "string", "enum": ["zh", "en"]}),
        mail_notifications={"type": "boolean"},
        out_of_office=nullable(obj(("from", "until", "delegate"), **{"from": DATETIME, "until": DATETIME},
                                   delegate=nullable(STRING)))),
}

DATA = {"type": "object", "description": "the form's fields (see the task's `form`)"}
COMMENT = nullable(TEXT)
SIGNERS = array(USERNAME, minItems=1, maxItems=10)
COPY_TO = array(USERNAME, minItems=1, maxItems=20)
FILE_BODY = {"required": True, "content": {"multipart/form-data": {"schema": obj(
    ("file",), file={"type": "string", "format": "binary"})}},
    "description": "one part `file`: PDF, OFD, XML, JPEG, PNG, XLSX or DOCX by content, at most 20 MiB"}
ATTACHMENT_ID = path_param("attachment_id", {"type": "string", "minLength": 1, "maxLength": 64},
                           "attachment id (32 hex digits; anything else: 404)")
USER = path_param("username", USERNAME, "a username")
REGION = path_param("code", {"type": "string", "minLength": 1, "maxLength": 40}, "a region id, e.g. east")
ANY = {}
ADMIN_USER = obj(username=USERNAME, display_name=STRING, email=nullable(STRING), roles=array(STRING),
                 region=nullable(STRING), manager=nullable(STRING), active={"type": "boolean"}, password=STRING)

# ------------------------------------------------------------------ operations
OPERATIONS: list[dict] = [
    # meta
    op("get", "/openapi.json", "This description (OpenAPI 3.1)", tag="meta", auth=False,
       responses={"200": ok({"type": "object"})}),
    op("get", "/docs", "This description as a page", tag="meta", auth=False,
       responses={"200": {"description": "HTML", "content": {"text/html": {"schema": STRING}}}}),
    # auth
    op("post", "/auth/token", "Sign in: a bearer token", tag="auth", auth=False,
       description="Wrong credentials: 401. Too many failures per username or client address: 429. "
                   "A body that is not {username, password}: 400.",
       body=json_body(obj(("username", "password"), username=STRING, password=STRING),
                      example={"username": "alice", "password": "salesflow-demo"}),
       responses={"200": ok(ref("Token"))}, error_codes=(401, 429), refused_body=400),
    op("delete", "/auth/token", "Revoke the token sent with this request", tag="auth",
       responses={"204": {"description": "revoked"}}),
    # processes
    op("get", "/processes", "The processes the caller may start", tag="processes",
       responses={"200": ok(array(ref("Process")))}),
    op("post", "/processes/{process_id}/instances", "Start an instance", tag="processes", params=(PROCESS,),
       description="The engine runs to its first wait state; when the first open task is the caller's and "
                   "`data` is given, that task is completed with it in the same transaction "
                   "(invalid data: 422, nothing created).",
       body=json_body(obj(data=DATA), required=False, example={"data": {
           "category": "travel", "amount": 1200, "incurred_on": "2026-11-10", "description": "client visit"}}),
       responses={"201": ok(ref("Instance"), "started")}, error_codes=(403, 422)),
    # instances
    op("get", "/instances", "Instances the caller may see", tag="instances",
       params=(query("scope", {"type": "string", "enum": ["", "all", "started", "involved", "cc"]},
                     "all (default): every instance the caller can see; started: they started it; involved: they "
                     "decided a task of it; cc: copied to them (else 422)"),
               query("q", STRING, "matches the summary, the people's names and the instance id"),
               query("process_id", STRING, "only this process"),
               query("status", {"type": "string", "enum": ["", "running", "completed", "cancelled", "error"]},
                     "only this status (empty: any; else 400)"),
               *paging(200)),
       responses={"200": ok(array(ref("InstanceSummary")))}, error_codes=(422,)),
    op("get", "/instances/{instance_id}", "One instance", tag="instances", params=(INSTANCE,),
       responses={"200": ok(ref("Instance"))}, error_codes=(403,)),
    op("post", "/instances/{instance_id}/withdraw", "The starter cancels a running instance", tag="instances",
       params=(INSTANCE,), responses={"200": ok(ref("Instance"))}, error_codes=(403, 409)),
    op("get", "/instances/{instance_id}/diagram.svg", "The BPMN diagram, open tasks highlighted", tag="instances",
       params=(INSTANCE, query("lang", STRING, "titles' language: zh or en (else the Accept-Language's)")),
       responses={"200": {"description": "SVG", "content": {"image/svg+xml": {"schema": STRING}}}},
       error_codes=(403,)),
    op("post", "/instances/{instance_id}/cc", "Copy the instance to people", tag="instances", params=(INSTANCE,),
       body=json_body(obj(("users",), users=COPY_TO, comment=COMMENT),
                      example={"users": ["heidi"], "comment": "FYI"}),
       responses={"200": ok(ref("Instance"))}, error_codes=(403, 409)),
    op("post", "/instances/{instance_id}/urge", "Remind the owners of the open tasks", tag="instances",
       params=(INSTANCE,), body=json_body(obj(comment=COMMENT), required=False, example={"comment": "please"}),
       description="At most once an hour per instance: sooner, 429 with Retry-After.",
       responses={"200": ok(obj(("notified",), notified=array(STRING)))}, error_codes=(403, 409, 429)),
    op("get", "/instances/{instance_id}/comments", "The instance's comments", tag="instances", params=(INSTANCE,),
       responses={"200": ok(array(ref("Comment")))}, error_codes=(403,)),
    op("post", "/instances/{instance_id}/comments", "Comment (@username notifies)", tag="instances",
       params=(INSTANCE,),
       body=json_body(obj(("text",), text={"type": "string", "minLength": 1, "maxLength": 5000, "pattern": "\\S"},
                          attachments=nullable(array(STRING, maxItems=20))), example={"text": "@frank please look"}),
       responses={"201": ok(ref("Comment"), "created")}, error_codes=(403,)),
    # tasks
    op("get", "/tasks", "Open tasks the caller can act on (assigned or claimable), or the ones they did", tag="tasks",
       params=(query("scope", {"type": "string", "enum": ["", "open", "done"]},
                     "open (default): assigned or claimable; done (已办): completed by the caller, newest first"),
               query("q", STRING, "matches the summary, the people's names and the instance id"),
               query("overdue", STRING, "1: only open tasks past their due time"),
               query("process_id", STRING, "only this process"),
               query("instance_id", INSTANCE_ID, "only this instance (else 422)"), *paging(200)),
       responses={"200": ok(array(ref("Task")), headers={
           "X-Total-Count": {"description": "tasks in all pages", "schema": {"type": "integer"}}})},
       error_codes=(422,)),
    op("post", "/tasks/bulk-complete", "Complete several tasks with the same data", tag="tasks",
       description="Each task is its own transaction: one failure changes nothing of the others.",
       body=json_body(obj(("ids",), ids=array({"type": "string", "description": "a task id (UUID); any other "
                                                "string gets a result of its own with status 404"},
                                               minItems=1, maxItems=100), data=DATA),
                      example={"ids": ["00000000-0000-4000-8000-000000000000"],
                               "data": {"decision": "approve", "comment": "ok"}}),
       responses={"200": ok(ref("BulkResults"))}),
    op("get", "/tasks/{task_id}", "One task, with its form and data", tag="tasks", params=(TASK,),
       responses={"200": ok(ref("TaskDetail"))}, error_codes=(403,)),
    op("post", "/tasks/{task_id}/claim", "Take a claimable task", tag="tasks", params=(TASK,),
       responses={"200": ok(ref("Task"))}, error_codes=(403, 409)),
    op("post", "/tasks/{task_id}/complete", "Complete a task", tag="tasks", params=(TASK,),
       description="Approvals take {decision: approve|return|reject, comment, return_to}.",
       body=json_body(obj(data=DATA), required=False, example={"data": {"decision": "approve", "comment": "ok"}}),
       responses={"200": ok(ref("Completed"))}, error_codes=(403, 409)),
    op("post", "/tasks/{task_id}/delegate", "Transfer the task to someone", tag="tasks", params=(TASK,),
       body=json_body(obj(("to",), to=USERNAME, comment=COMMENT), example={"to": "frank", "comment": "yours"}),
       responses={"200": ok(ref("Task"))}, error_codes=(403, 409)),
    op("post", "/tasks/{task_id}/add-signer", "Add signers before, after or alongside the caller", tag="tasks",
       params=(TASK,),
       body=json_body(obj(("users", "mode"), users=SIGNERS,
                          mode={"type": "string", "enum": ["before", "after", "parallel"]}, comment=COMMENT),
                      example={"users": ["heidi"], "mode": "before", "comment": "finance first"}),
       responses={"200": ok(ref("Instance"))}, error_codes=(403, 409)),
    # attachments
    op("post", "/attachments", "Upload a file (until linked, only the uploader can use it)", tag="attachments",
       body=FILE_BODY, responses={"201": ok(ref("Attachment"), "stored")}, error_codes=(413, 415, 422)),
    op("get", "/attachments/{attachment_id}", "A file's bytes, for whoever can see its instance", tag="attachments",
       params=(ATTACHMENT_ID,), responses={"200": {"description": "the bytes, with their Content-Type and "
                                                               "Content-Disposition: attachment",
                                                "content": {"*/*": {"schema": {"type": "string",
                                                                               "format": "binary"}}}}},
       error_codes=(403,)),
    op("get", "/instances/{instance_id}/attachments", "The instance's files", tag="attachments", params=(INSTANCE,),
       responses={"200": ok(array(ref("Attachment")))}, error_codes=(403,)),
    op("post", "/instances/{instance_id}/attachments", "Add a file to a running instance", tag="attachments",
       params=(INSTANCE,), body=FILE_BODY, responses={"201": ok(ref("Attachment"), "added")},
       error_codes=(403, 409, 413, 415, 422)),
    # administration (admins only: 403 for everyone else)
    op("get", "/admin/users", "Users", tag="admin", params=(query("q", STRING, "search"),),
       responses={"200": ok(array(ANY))}, error_codes=(403,)),
    op("post", "/admin/users", "Create a user", tag="admin",
       body=json_body(ADMIN_USER, example={"username": "mia", "display_name": "Mia", "roles": ["sales_rep"],
                                           "region": "east", "manager": "dave", "password": "a long password"}),
       responses={"201": ok(ANY, "created")}, error_codes=(403, 409, 422)),
    op("get", "/admin/users/{username}", "One user", tag="admin", params=(USER,),
       responses={"200": ok(ANY)}, error_codes=(403,)),
    op("patch", "/admin/users/{username}", "Change a user (deactivating hands their tasks over)", tag="admin",
       params=(USER,), body=json_body(ADMIN_USER, example={"manager": "erin"}),
       responses={"200": ok(ANY)}, error_codes=(403, 409, 422)),
    op("get", "/admin/org-chart", "The org chart as a tree", tag="admin", responses={"200": ok(ANY)},
       error_codes=(403,)),
    op("get", "/admin/regions", "Regions", tag="admin", responses={"200": ok(array(ANY))}, error_codes=(403,)),
    op("post", "/admin/regions", "Add a region", tag="admin",
       body=json_body(obj(("id", "name"), id=STRING, name=obj(zh=STRING, en=STRING), manager=nullable(STRING)),
                      example={"id": "south", "name": {"zh": "华南", "en": "South"}}),
       responses={"201": ok(ANY, "created")}, error_codes=(403, 409, 422)),
    op("patch", "/admin/regions/{code}", "Change a region", tag="admin", params=(REGION,),
       body=json_body(obj(name=obj(zh=STRING, en=STRING), manager=nullable(STRING)),
                      example={"manager": "dave"}),
       responses={"200": ok(ANY)}, error_codes=(403, 409, 422)),
    op("get", "/admin/roles", "Roles and who holds them", tag="admin", responses={"200": ok(array(ANY))},
       error_codes=(403,)),
    op("get", "/admin/definitions", "Deployed versions and the instances running on each", tag="admin",
       responses={"200": ok(array(obj(("process_id", "version", "deployed_at", "running_instances"),
                                      process_id=STRING, version={"type": "integer"}, deployed_at=DATETIME,
                                      running_instances={"type": "integer"})))}, error_codes=(403,)),
    op("get", "/admin/instances", "Instances by status (default: in error, with what failed)", tag="admin",
       params=(query("status", STRING, "running, completed, cancelled or error (else 400)"),),
       responses={"200": ok(array(ANY))}, error_codes=(403,)),
    op("post", "/admin/instances/{instance_id}/retry", "Re-run an instance in error from its last saved state",
       tag="admin", params=(INSTANCE,), responses={"200": ok(ANY)}, error_codes=(403, 409, 422)),
    op("post", "/admin/instances/{instance_id}/cancel", "Cancel an instance, with a comment", tag="admin",
       params=(INSTANCE,), body=json_body(obj(("comment",), comment=TEXT), example={"comment": "duplicate"}),
       responses={"200": ok(ANY)}, error_codes=(403, 409, 422)),
    op("post", "/admin/tasks/{task_id}/reassign", "Give a task to someone else", tag="admin", params=(TASK,),
       body=json_body(obj(("to",), to=USERNAME), example={"to": "erin"}),
       responses={"200": ok(ANY)}, error_codes=(403, 409, 422)),
    op("get", "/admin/audit", "Who changed what, before and after", tag="admin",
       params=(query("entity", STRING, "user, region, budget, ..."), query("key", STRING, "the entity's key"),
               *paging(200)),
       responses={"200": ok(array(ANY))}, error_codes=(403, 422)),
    op("get", "/budgets", "Budgets of a month: amount, reserved, spent, remaining", tag="budgets",
       params=(query("month", STRING, "YYYY-MM (default: this month)"), query("region", STRING, "one region")),
       responses={"200": ok(array(obj(("region", "category", "month", "amount", "reserved", "spent", "remaining"),
                                      region=STRING, category=STRING, month=STRING, amount={"type": "number"},
                                      reserved={"type": "number"}, spent={"type": "number"},
                                      remaining={"type": "number"})))},
       error_codes=(403, 422)),
    # notifications
    op("get", "/notifications", "The caller's notifications, newest first", tag="notifications",
       params=(query("unread", STRING, "1, true or yes: unread only (anything else: all)"),
               *paging(100)),
       responses={"200": ok(array(ref("Notification")))}, error_codes=(422,)),
    op("post", "/notifications/{notification_id}/read", "Mark one read", tag="notifications",
       params=(NOTIFICATION,), responses={"200": ok(obj(("read",), read={"const": True}))}),
    op("post", "/notifications/read-all", "Mark all read", tag="notifications",
       responses={"200": ok(obj(("read",), read={"type": "integer", "minimum": 0,
                                                 "description": "how many were marked"}))}),
    # me
    op("get", "/me", "The caller's profile", tag="me", responses={"200": ok(ref("Me"))}),
    op("patch", "/me", "Change the caller's profile", tag="me",
       body=json_body(obj(additional=False, email={"anyOf": [{"type": "string", "format": "email", "maxLength": 254},
                                                             {"const": ""}, {"type": "null"}],
                                                   "description": "empty or null: no address"},
                          display_name={"type": "string", "minLength": 1, "maxLength": 120},
                          locale={"type": "string", "enum": ["zh", "en"]},
                          mail_notifications={"type": "boolean"}, out_of_office=nullable(ref("OutOfOffice"))),
                      example={"locale": "en", "out_of_office": {"from": "2026-12-01T09:00:00+08:00",
                                                                 "until": "2026-12-05T18:00:00+08:00",
                                                                 "delegate": "erin"}}),
       responses={"200": ok(ref("Me"))}),
    op("post", "/me/password", "Change the caller's password", tag="me",
       body=json_body(obj(("old", "new"), old=STRING, new={"type": "string", "minLength": 10, "maxLength": 1024}),
                      example={"old": "salesflow-demo", "new": "a much longer secret"}),
       responses={"204": {"description": "changed"}}, error_codes=(403,)),
]


@lru_cache(maxsize=1)
def _document() -> dict:
    paths: dict[str, dict] = {}
    for entry in OPERATIONS:
        methods = paths.setdefault(entry["path"], {})
        if entry["method"] in methods:
            raise ValueError(f"two descriptions of {entry['method'].upper()} {entry['path']}")
        methods[entry["method"]] = entry["operation"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "SalesFlow API", "version": "1",
                 "description": "The JSON API of SalesFlow (CONTRACT.md). Every route but POST /auth/token "
                                "and this description needs `Authorization: Bearer <token>`. Errors are "
                                "`{\"error\": \"...\"}`, plus `\"errors\": {\"field\": \"message\"}` on 422."},
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "tags": [{"name": t} for t in dict.fromkeys(e["operation"]["tags"][0] for e in OPERATIONS)],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a token from POST /auth/token"}},
            "schemas": SCHEMAS,
        },
    }


def document() -> dict:
    """The OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_document())


def operations() -> list[tuple[str, str]]:
    """(METHOD, full path with {name}) of every described operation."""
    return [(e["method"].upper(), PREFIX + e["path"]) for e in OPERATIONS]
