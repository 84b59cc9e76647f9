"""The edge: every request is checked here, once, before a view or the engine sees it.

- Ids in paths: an instance id is plain ASCII digits within the id columns' range
  (1..2^31-1 on every backend), a task id is a canonical UUID; anything else does not
  match the route (404). Query parameters that are ids or page numbers use the same rules.
- Text: no NUL and no lone surrogate in any query parameter, form field, path part or
  JSON string (400): PostgreSQL refuses NUL in text, and a lone surrogate cannot be
  encoded as UTF-8, so once stored every later read of it fails.
- JSON bodies (the API): only `application/json` (415 for forms and multipart unless a
  route declares `accepts(...)`), strict UTF-8, at most MAX_JSON_DEPTH levels of nesting
  (checked on the raw text, before parsing), finite numbers only (no NaN/Infinity, no
  1e999), integers within +-2^53 (400).
- Redirect targets: only same-site relative paths (`/...`, no scheme, host, backslash,
  control character or whitespace).
- Security headers on every response.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from urllib.parse import urlsplit

from flask import Flask, current_app, g, request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType
from werkzeug.routing import BaseConverter, ValidationError

MAX_ID = 2 ** 31 - 1  # process_instances.id is an INTEGER (int4 on PostgreSQL)
MAX_OFFSET = 2 ** 31 - 1
MAX_JSON_DEPTH = 32
MAX_JSON_INT = 2 ** 53  # what every JSON reader can represent exactly

_DIGITS = re.compile(r"[0-9]{1,10}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
# a JSON string literal (escapes included) or a bracket: what the depth scan looks at
_JSON_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)
_JSON_TYPES = ("application/json",)


class Rejected(BadRequest):
    """A request refused at the edge (400), with a message saying what was wrong."""


# ------------------------------------------------------------------ ids
def instance_id(value) -> int | None:
    """An instance id from text: ASCII digits, 1..MAX_ID; None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 1 <= value <= MAX_ID else None
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ID else None


def task_id(value) -> str | None:
    """A task id: a UUID in its canonical lower-case form (as the engine writes them)."""
    if not isinstance(value, str):
        return None
    value = value.lower()
    return value if _UUID.fullmatch(value) else None


def _at_most(limit: str) -> str:
    """A regex for the decimal numbers 0..limit written with len(limit) digits (leading zeros included)."""
    if len(limit) == 1:
        return f"[0-{limit}]"
    head, rest = int(limit[0]), limit[1:]
    options = [f"{limit[0]}(?:{_at_most(rest)})"]
    if head > 0:
        options.append(f"[0-{head - 1}][0-9]{{{len(rest)}}}")
    return "|".join(options)


# what instance_id() accepts, as a route regex: 1..10 ASCII digits, at most MAX_ID, not all zeros.
# The range must be in the regex: a converter that refuses a value after its regex matched makes
# Werkzeug answer 405, not 404, when the same path has a route for another method
# (POST /instances/2147483648/comments next to GET /instances/<iid>/comments).
INSTANCE_ID_REGEX = rf"(?!0+(?![0-9]))(?:[0-9]{{1,{len(str(MAX_ID)) - 1}}}|{_at_most(str(MAX_ID))})"


class InstanceIdConverter(BaseConverter):
    regex = INSTANCE_ID_REGEX

    def to_python(self, value):
        number = instance_id(value)
        if number is None:
            raise ValidationError()
        return number

    def to_url(self, value):
        return str(int(value))


class TaskIdConverter(BaseConverter):
    regex = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def to_python(self, value):
        return value.lower()


def page_args(default_limit: int = 200, max_limit: int = 1000) -> tuple[int, int]:
    """`limit` and `offset` from the query string: ASCII digits, 1 <= limit <= max_limit,
    0 <= offset <= MAX_OFFSET; else 422 (ValidationFailed)."""
    from engine.errors import ValidationFailed
    raw_limit = request.args.get("limit", str(default_limit))
    raw_offset = request.args.get("offset", "0")
    if not (re.fullmatch(r"[0-9]{1,10}", raw_limit) and re.fullmatch(r"[0-9]{1,10}", raw_offset)):
        raise ValidationFailed({"limit": "limit and offset must be integers"}, "bad paging parameters")
    limit, offset = int(raw_limit), int(raw_offset)
    if not 1 <= limit <= max_limit or offset > MAX_OFFSET:
        raise ValidationFailed({"limit": f"limit must be 1-{max_limit} and offset 0-{MAX_OFFSET}"},
                               "bad paging parameters")
    return limit, offset


# ------------------------------------------------------------------ text
def check_text(value: str, where: str) -> str:
    if _BAD_TEXT.search(value):
        raise Rejected(f"{where}: NUL characters and lone surrogates are not allowed")
    return value


def _check_multidict(values, where: str) -> None:
    for key, value in values.items(multi=True):
        check_text(key, where)
        if isinstance(value, str):
            check_text(value, f"{where} {key!r}")


# ------------------------------------------------------------------ JSON
def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 17:  # cheap bound before the conversion (int() of long digit runs is quadratic)
        raise ValueError(f"integer {text[:20]}... is out of range")
    value = int(text)
    if abs(value) > MAX_JSON_INT:
        raise ValueError(f"integer {text} is out of range (at most 2^53)")
    return value


def _check_json_value(value) -> None:
    """Every string (keys too) free of NUL and lone surrogates; iterative, depth is bounded already."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_text(item, "JSON string")
        elif isinstance(item, dict):
            for key, child in item.items():
                check_text(key, "JSON key")
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped), without recursion."""
    depth = deepest = 0
    for match in _JSON_STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif token in "]}":
            depth -= 1
    return deepest


def parse_json(raw: bytes):
    """Parse a request body strictly; Rejected (400) says why it is refused."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("the request body is not UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if json_depth(text) > MAX_JSON_DEPTH:
        raise Rejected(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except (ValueError, RecursionError) as exc:
        raise Rejected(f"the request body is not valid JSON: {exc}") from None
    _check_json_value(value)
    return value


class BodyRejected(Rejected):
    """A JSON body refused at the edge: 422 with {"errors": {"_body": ...}} on the API (as a body
    that is not a JSON object always was), unless the route declares another status."""
    code = 422


def body_errors(status: int):
    """Declare the status a refused body gets on this route (the token route keeps its 400)."""
    def mark(view):
        view.edge_body_status = status
        return view
    return mark


def accepts(*mimetypes: str):
    """Declare that a view takes bodies of these (non-JSON) types, e.g. multipart/form-data."""
    def mark(view):
        view.edge_accepts = frozenset(mimetypes)
        return view
    return mark


def max_body(limit: int):
    """Declare a larger body limit for this view (uploads); enforced while the body streams in."""
    def mark(view):
        view.edge_max_body = limit
        return view
    return mark


def _is_json(mimetype: str) -> bool:
    return mimetype in _JSON_TYPES or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def check_api_body() -> None:
    """The API's body rule: a JSON body parsed once into g.json_body (None when there is none)."""
    g.json_body = None
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    mimetype = request.mimetype or ""
    view = current_app.view_functions.get(request.endpoint)
    if mimetype and mimetype in getattr(view, "edge_accepts", ()):
        return
    if mimetype and not _is_json(mimetype):
        raise UnsupportedMediaType(f"send the body as application/json, not {mimetype}")
    if not _has_body():
        return
    raw = request.get_data(cache=True)  # no Content-Type at all: read as JSON too
    if raw.strip():
        try:
            g.json_body = parse_json(raw)
        except Rejected as exc:
            refused = BodyRejected(exc.description)
            refused.code = getattr(view, "edge_body_status", BodyRejected.code)
            raise refused from None


def check_request() -> None:
    """Every request: path parts, query parameters and form fields are free of NUL and lone surrogates."""
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "edge_max_body", None):
        request.max_content_length = view.edge_max_body
    for key, value in (request.view_args or {}).items():
        if isinstance(value, str):
            check_text(value, f"path {key}")
    _check_multidict(request.args, "query parameter")
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.mimetype in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        _check_multidict(request.form, "form field")


# ------------------------------------------------------------------ redirects
def safe_target(target: str | None) -> str | None:
    """`target` when it is a same-site relative path, else None. Refused: anything with a scheme or
    host, `//` or `/\\` (protocol-relative), backslashes, whitespace and control characters
    (browsers strip tabs and newlines, so `/\\t/evil.example` becomes `//evil.example`)."""
    if not target or not isinstance(target, str) or len(target) > 2000:
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    if any(ch <= " " or ch in "\\\x7f" for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return target


def same_site_referrer() -> str | None:
    """The Referer's path and query when it points at this site, else None."""
    referrer = request.referrer
    if not referrer:
        return None
    try:
        parts = urlsplit(referrer)
    except ValueError:
        return None
    if parts.scheme or parts.netloc:
        if parts.scheme not in ("http", "https") or parts.netloc != request.host:
            return None
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return safe_target(target)


# ------------------------------------------------------------------ headers
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'{styles}; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"


def allow_inline_style(css: str) -> None:
    """Allow one inline <style> element of this page (by its hash): the diagram SVG's."""
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode()
    g.setdefault("edge_styles", set()).add(f"'sha256-{digest}'")


def inline_styles_of(svg: str) -> None:
    for css in re.findall(r"<style[^>]*>(.*?)</style>", svg, re.S):
        allow_inline_style(css)


def security_headers(response):
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    if "Content-Security-Policy" not in headers:
        if response.mimetype == "image/svg+xml":
            headers["Content-Security-Policy"] = SVG_CSP
        else:
            styles = "".join(" " + s for s in sorted(g.get("edge_styles", ())))
            headers["Content-Security-Policy"] = CSP.format(styles=styles)
    if request.path.startswith("/api/") or request.endpoint in ("auth.login",):
        headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app: Flask) -> None:
    app.url_map.converters["iid"] = InstanceIdConverter
    app.url_map.converters["tid"] = TaskIdConverter
    app.before_request(check_request)
    app.after_request(security_headers)
