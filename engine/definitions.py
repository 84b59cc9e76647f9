"""Process definitions: read `workflows/`, validate, parse once per content hash,
and record every deployed version in the database.

A definition bundle holds everything one process version needs — its BPMN (and
the BPMN of processes it calls), the DMN tables those reference, the forms its tasks
use, its catalog entry, the lane rules and the words of the data its BPMN processes set
outside forms (their entries of `vocabulary.json`) — so a running instance keeps the exact
rules and words it started with, whatever later changes on disk. A process gets a new version
only when one of these changes (a DMN table another process uses does not count).

Every server notices a deployment made elsewhere (`salesflow deploy`) within
`DEPLOY_CHECK_SECONDS`: a look at the newest definition row's id, never a re-parse.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
from lxml import etree
from sqlalchemy import func, select
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent, ThrowingEvent
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.spiff.specs.defaults import UserTask

from .expressions import MAX_LOOP_COUNT, ExpressionError, compile_expression
from .models import ProcessDefinition

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "bpmndi": BPMNDI_NS, "spiffworkflow": SPIFF_NS}
DMN_NS = {"dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/"}

# Elements a process may contain. Anything else (script tasks above all) is refused.
ALLOWED_FLOW_ELEMENTS = {
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    "userTask", "serviceTask", "businessRuleTask", "callActivity", "manualTask", "task",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway",
    "sequenceFlow", "laneSet", "textAnnotation", "association", "dataObject", "dataObjectReference",
}
DRAWN_ELEMENTS = ALLOWED_FLOW_ELEMENTS - {"laneSet", "dataObject", "sequenceFlow", "association"}

# Every BPMN element whose text SpiffWorkflow evaluates as an expression (tExpression / tFormalExpression):
# gateway conditions, timers, multi-instance cardinality and completion, standard-loop conditions,
# conditional events, message correlation paths; plus Spiff's service parameters and message payloads.
EXPRESSION_ELEMENTS = ("conditionExpression", "timeDate", "timeDuration", "timeCycle", "loopCardinality",
                       "completionCondition", "loopCondition", "condition", "messagePath", "formalExpression",
                       "dataPath")
SPIFF_EXPRESSION_ELEMENTS = ("messagePayload",)
DEPLOY_CHECK_SECONDS = float(os.environ.get("SALESFLOW_DEPLOY_CHECK_SECONDS", "2"))

_secure_parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)


class DefinitionError(ValueError):
    """A process definition that cannot be deployed; the message says where and why."""


@dataclass
class TaskInfo:
    name: str  # BPMN id
    title: str
    title_en: str
    lane: str | None
    form: str | None
    data_key: str | None
    is_approval: bool
    process: str = ""  # the BPMN process (top level or called) the task belongs to


@dataclass
class ParsedDefinition:
    process_id: str
    content_hash: str
    bundle: dict
    spec: object
    subprocess_specs: dict
    forms: dict  # form path -> schema
    catalog: dict
    lanes: dict
    tasks: dict = field(default_factory=dict)  # spec name -> TaskInfo
    events: dict = field(default_factory=dict)  # spec name -> extension properties of events

    @property
    def name(self) -> str:
        return self.catalog.get("name", {}).get("en", self.process_id)

    @functools.cached_property
    def _bpmn_by_process(self) -> dict[str, str]:
        result = {}
        for text in self.bundle["bpmn"].values():
            root = etree.fromstring(text.encode(), _secure_parser)
            for proc in root.findall("bpmn:process", NS):
                result[proc.get("id")] = text
        return result

    def process_bpmn(self, process_id: str | None = None) -> str:
        """The BPMN text that defines `process_id` (default: this process); parsed once per version."""
        pid = process_id or self.process_id
        if pid not in self._bpmn_by_process:
            raise DefinitionError(f"no BPMN for {pid}")
        return self._bpmn_by_process[pid]

    @functools.cached_property
    def titles(self) -> dict[str, dict]:
        """BPMN id -> {"zh", "en"} for every user task and event (history and diagrams show these)."""
        result = {key.split(".")[0]: {"zh": ev["title"], "en": ev["title_en"]} for key, ev in self.events.items()}
        result.update({t.name: {"zh": t.title, "en": t.title_en} for t in self.tasks.values()})
        return result

    @functools.cached_property
    def steps(self) -> dict[str, dict]:
        """BPMN id -> {"title": {zh, en}, "form": path, "data_key": key} for every user task:
        which form labels a history entry, and which step a nested data key belongs to."""
        return {t.name: {"title": {"zh": t.title, "en": t.title_en}, "form": t.form, "data_key": t.data_key}
                for t in self.tasks.values()}

    @functools.cached_property
    def form_properties(self) -> dict[str, dict]:
        """form path -> its properties (titles, enum labels) for display."""
        return {path: schema.get("properties", {}) for path, schema in self.forms.items()}

    @functools.cached_property
    def fields(self) -> dict[str, dict]:
        """Every form field of this version, name -> its schema (titles and enum labels for display)."""
        merged: dict[str, dict] = {}
        for schema in self.forms.values():
            for name, prop in schema.get("properties", {}).items():
                merged.setdefault(name, prop)
        return merged

    @functools.cached_property
    def tasks_by_name(self) -> dict[str, TaskInfo]:
        """BPMN id -> TaskInfo."""
        return {t.name: t for t in self.tasks.values()}

    @functools.cached_property
    def vocabulary(self) -> dict:
        """The words a UI shows for this version's data, in zh and en, all declared in workflows/:
        "data" — data key -> its words, shaped like a form field (title, x-title-zh, x-enum-titles,
        properties, x-also), for the keys the process sets outside forms (vocabulary.json: this
        process's entry first, then those of the processes it calls); "cards" — the result cards
        the processes declare; "messages" — every form's x-error -> its x-error-zh."""
        entries = self.bundle.get("vocabulary") or {}
        data: dict[str, dict] = {}
        cards = []
        for pid in [self.process_id, *sorted(p for p in entries if p != self.process_id)]:
            entry = entries.get(pid) or {}
            for key, words in (entry.get("data") or {}).items():
                data.setdefault(key, words)
            if entry.get("card"):
                cards.append(entry["card"])
        messages: dict[str, str] = {}
        for path in sorted(self.forms):
            messages.update({k: v for k, v in form_messages(self.forms[path]).items() if k not in messages})
        return {"data": data, "cards": cards, "messages": messages}

    def max_returns(self) -> int:
        return int(self.catalog.get("max_returns", 10))


def form_messages(schema) -> dict[str, str]:
    """x-error -> x-error-zh, wherever a form schema gives both (the first wins)."""
    found: dict[str, str] = {}

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("x-error"), str) and isinstance(node.get("x-error-zh"), str):
                found.setdefault(node["x-error"], node["x-error-zh"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return found


def merge_vocabularies(*vocabularies: dict) -> dict:
    """Vocabularies (see ParsedDefinition.vocabulary) as one; a later one's words win."""
    data: dict = {}
    messages: dict = {}
    cards: dict = {}
    for vocabulary in vocabularies:
        data.update(vocabulary.get("data") or {})
        messages.update(vocabulary.get("messages") or {})
        cards.update({card["id"]: card for card in vocabulary.get("cards") or []})
    return {"data": data, "cards": list(cards.values()), "messages": messages}


def _hash(bundle: dict) -> str:
    return hashlib.sha256(json.dumps(bundle, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DefinitionError(f"{path.name}: {exc}") from exc


class WorkflowDirectory:
    """The business rules on disk: BPMN, DMN, forms, the process catalog, lane rules and the words of
    the data processes set outside forms (vocabulary.json)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "processes.json").is_file():
            raise DefinitionError(f"{self.path} has no processes.json: not a SalesFlow workflows directory")

    def bundles(self) -> dict[str, dict]:
        catalog = _read_json(self.path / "processes.json")
        lanes = _read_json(self.path / "lanes.json")
        vocabulary = _read_json(self.path / "vocabulary.json") if (self.path / "vocabulary.json").is_file() else {}
        bpmn_files = {p.name: p.read_text(encoding="utf-8") for p in sorted(self.path.glob("*.bpmn"))}
        dmn_files = {p.name: p.read_text(encoding="utf-8") for p in sorted(self.path.glob("*.dmn"))}
        owners = {}  # process id -> bpmn file
        calls = {}  # bpmn file -> called process ids
        decisions = {}  # bpmn file -> called decision ids
        for fname, text in bpmn_files.items():
            root = _parse_xml(text, fname)
            for proc in root.findall("bpmn:process", NS):
                owners[proc.get("id")] = fname
            calls[fname] = {c.get("calledElement") for c in root.iter(f"{{{BPMN_NS}}}callActivity")}
            decisions[fname] = {(d.text or "").strip() for d in root.iter(f"{{{SPIFF_NS}}}calledDecisionId")}
        decision_files, required = {}, {}  # decision id -> dmn file; dmn file -> decisions it requires
        for fname, text in dmn_files.items():
            root = _parse_xml(text, fname)
            for decision in root.iter("{*}decision"):
                decision_files[decision.get("id")] = fname
            required[fname] = {(r.get("href") or "").lstrip("#") for r in root.iter("{*}requiredDecision")}
        check_vocabulary(vocabulary, set(owners))
        result = {}
        for process_id, entry in catalog.items():
            if process_id.startswith("_"):
                continue
            if process_id not in owners:
                raise DefinitionError(f"processes.json names {process_id}, but no BPMN file defines it")
            files, todo = {}, [owners[process_id]]
            while todo:
                fname = todo.pop()
                if fname in files:
                    continue
                files[fname] = bpmn_files[fname]
                for called in calls[fname]:
                    if called not in owners:
                        raise DefinitionError(f"{fname}: call activity calls unknown process {called!r}")
                    todo.append(owners[called])
            bundle = {"process_id": process_id, "catalog": entry, "lanes": lanes,
                      "bpmn": dict(sorted(files.items())), "dmn": {}, "forms": {}}
            words = {pid: vocabulary[pid] for pid in sorted(owners) if owners[pid] in files and pid in vocabulary}
            if words:  # the words of every BPMN process in the bundle (a process without any: no key, same hash)
                bundle["vocabulary"] = words
            wanted = set().union(*(decisions[f] for f in files)) if files else set()
            while wanted:  # the DMN tables the process's BPMN calls (and the decisions they require)
                decision = wanted.pop()
                fname = decision_files.get(decision)
                if fname is None:
                    raise DefinitionError(f"{process_id}: business rule task calls unknown decision {decision!r}")
                if fname not in bundle["dmn"]:
                    bundle["dmn"][fname] = dmn_files[fname]
                    wanted |= {d for d in required[fname] if d and decision_files.get(d) not in bundle["dmn"]}
            bundle["dmn"] = dict(sorted(bundle["dmn"].items()))
            for form in sorted(_referenced_forms(files.values(), entry)):
                fpath = (self.path / form).resolve()
                if self.path.resolve() not in fpath.parents or not fpath.is_file():
                    raise DefinitionError(f"{process_id}: form {form!r} not found in {self.path}")
                bundle["forms"][form] = _read_json(fpath)
            result[process_id] = bundle
        return result


_WORDS_KEYS = {"title", "x-title-zh", "x-enum-titles", "properties", "x-also", "x-format"}
_CARD_ROW_KEYS = {"key", "title", "x-title-zh", "x-enum-titles", "main", "optional", "unless", "digits", "format"}
_CARD_ID = re.compile(r"[a-z][a-z0-9-]{0,40}")


def _both_languages(words) -> bool:
    return isinstance(words, dict) and all(isinstance(words.get(k), str) and words[k].strip() for k in ("en", "zh"))


def _check_words(where: str, words, problems: list, allowed=_WORDS_KEYS) -> None:
    """A data key's words: a title in both languages (title, x-title-zh), value titles in both."""
    if not isinstance(words, dict):
        problems.append(f"{where}: must be an object")
        return
    unknown = sorted(set(words) - allowed)
    if unknown:
        problems.append(f"{where}: unknown {', '.join(unknown)}")
    if ("title" in words or "x-title-zh" in words) and not _both_languages(
            {"en": words.get("title"), "zh": words.get("x-title-zh")}):
        problems.append(f"{where}: needs both title and x-title-zh")
    if not any(k in words for k in ("title", "x-enum-titles", "properties")):
        problems.append(f"{where}: says nothing (no title, x-enum-titles or properties)")
    titles = words.get("x-enum-titles", {})
    if not isinstance(titles, dict) or not all(_both_languages(t) for t in titles.values()):
        problems.append(f"{where}: every x-enum-titles value needs en and zh")
    for key, sub in (words.get("properties") or {}).items():
        _check_words(f"{where}.{key}", sub, problems)
    if words.get("x-format") not in (None, "money"):
        problems.append(f"{where}: x-format is money or nothing")
    for also in words.get("x-also") or []:
        if not (isinstance(also, dict) and also.get("value") in titles and isinstance(also.get("when"), dict)):
            problems.append(f"{where}: x-also needs a value x-enum-titles names and a when object")


def check_vocabulary(vocabulary, process_ids: set) -> None:
    """vocabulary.json: BPMN process id -> {"data": {key: words}, "card": {...}}; the words in both
    languages. Refused (DefinitionError) before anything is deployed."""
    problems: list[str] = []
    if not isinstance(vocabulary, dict):
        raise DefinitionError("vocabulary.json: must be an object of BPMN process ids")
    for pid, entry in vocabulary.items():
        if pid.startswith("_"):
            continue
        if pid not in process_ids:
            problems.append(f"{pid!r} is not a BPMN process in this directory")
        if not isinstance(entry, dict) or set(entry) - {"data", "card"}:
            problems.append(f"{pid}: an entry has data and card only")
            continue
        for key, words in (entry.get("data") or {}).items():
            _check_words(f"{pid}.{key}", words, problems)
        card = entry.get("card")
        if card is None:
            continue
        if not isinstance(card, dict) or not _CARD_ID.fullmatch(str(card.get("id", ""))) \
                or not isinstance(card.get("when"), list) or not isinstance(card.get("rows"), list):
            problems.append(f"{pid}: a card has an id (a-z, 0-9, -), when (keys) and rows")
            continue
        for row in card["rows"]:
            where = f"{pid}.card.{row.get('key') if isinstance(row, dict) else row}"
            if not isinstance(row, dict) or not isinstance(row.get("key"), str) or "title" not in row:
                problems.append(f"{where}: a row has a key and a title")
                continue
            _check_words(where, row, problems, _CARD_ROW_KEYS)
            if row.get("format") not in (None, "percent") or not isinstance(row.get("digits", 0), int):
                problems.append(f"{where}: format is percent, digits a whole number")
    if problems:
        raise DefinitionError("vocabulary.json: " + "; ".join(problems))


def _parse_xml(text: str, fname: str):
    try:
        return etree.fromstring(text.encode("utf-8"), _secure_parser)
    except etree.XMLSyntaxError as exc:
        raise DefinitionError(f"{fname}: not well-formed XML: {exc}") from exc


def _referenced_forms(bpmn_texts, catalog_entry) -> set[str]:
    forms = set()
    if catalog_entry.get("start_form"):
        forms.add(catalog_entry["start_form"])
    for text in bpmn_texts:
        root = etree.fromstring(text.encode("utf-8"), _secure_parser)
        for prop in root.iter(f"{{{SPIFF_NS}}}property"):
            if prop.get("name") == "formJsonSchemaFilename":
                forms.add(prop.get("value"))
    return forms


def _check_bpmn(fname: str, root, lanes: dict) -> None:
    """Static checks beyond the XSD: allowed elements, no scripts, expressions compile, lanes known, diagram info."""
    problems = []
    shapes = {s.get("bpmnElement") for s in root.iter(f"{{{BPMNDI_NS}}}BPMNShape")}
    edges = {s.get("bpmnElement") for s in root.iter(f"{{{BPMNDI_NS}}}BPMNEdge")}
    for proc in root.findall("bpmn:process", NS):
        for el in proc.iter():
            if not isinstance(el.tag, str) or not el.tag.startswith(f"{{{BPMN_NS}}}"):
                continue
            local = etree.QName(el).localname
            parent = el.getparent()
            if parent is proc:
                if local not in ALLOWED_FLOW_ELEMENTS and local not in ("extensionElements", "documentation", "property"):
                    problems.append(f"element <{local} id={el.get('id')!r}> is not allowed")
                if local in DRAWN_ELEMENTS and el.get("id") not in shapes:
                    problems.append(f"{local} {el.get('id')!r} has no diagram shape")
                if local == "sequenceFlow" and el.get("id") not in edges:
                    problems.append(f"sequence flow {el.get('id')!r} has no diagram edge")
            if local == "lane" and el.get("name") not in lanes:
                problems.append(f"lane {el.get('name')!r} is not defined in lanes.json")
        for tag in ("preScript", "postScript"):
            for el in proc.iter(f"{{{SPIFF_NS}}}{tag}"):
                problems.append(f"{tag} on {el.getparent().getparent().get('id')!r}: scripts are not allowed")
        exprs = []
        for tag in EXPRESSION_ELEMENTS:
            exprs += [e.text for e in proc.iter(f"{{{BPMN_NS}}}{tag}")]
        for tag in SPIFF_EXPRESSION_ELEMENTS:
            exprs += [e.text for e in proc.iter(f"{{{SPIFF_NS}}}{tag}")]
        exprs += [p.get("value") for p in proc.iter(f"{{{SPIFF_NS}}}parameter")]
        for prop in proc.iter(f"{{{SPIFF_NS}}}property"):
            if prop.get("name") == "ccCondition":
                exprs.append(prop.get("value"))
            if prop.get("name") in ("cc", "notify") and prop.get("value") not in lanes:
                problems.append(f"{prop.get('name')} {prop.get('value')!r} is not a lane defined in lanes.json")
        for loop in proc.iter(f"{{{BPMN_NS}}}standardLoopCharacteristics"):
            maximum = (loop.get("loopMaximum") or "").strip()
            if not maximum.isdigit() or not 1 <= int(maximum) <= MAX_LOOP_COUNT:
                problems.append(f"loop on {loop.getparent().get('id')!r}: loopMaximum must be 1-{MAX_LOOP_COUNT}")
        for expr in exprs:
            try:
                compile_expression((expr or "").strip())
            except (ExpressionError, SyntaxError) as exc:
                problems.append(str(exc))
        for tag in ("timeDate", "timeDuration", "timeCycle"):
            for el in proc.iter(f"{{{BPMN_NS}}}{tag}"):
                problem = _timer_problem(tag, (el.text or "").strip())
                if problem:
                    problems.append(f"timer on {el.getparent().getparent().get('id')!r}: {problem}")
        for task in proc.iter(f"{{{BPMN_NS}}}userTask"):
            if task.get("id") and not any(p.get("name") == "formJsonSchemaFilename" for p in task.iter(f"{{{SPIFF_NS}}}property")):
                problems.append(f"user task {task.get('id')!r} has no formJsonSchemaFilename property")
    if problems:
        raise DefinitionError(f"{fname}: " + "; ".join(problems))


_ISO_LIKE = re.compile(r"^(R\d*/)?(P[\dYMWDTHS.]+|\d{4}-\d{2}-\d{2}\S*)$")


def _timer_problem(tag: str, expression: str) -> str | None:
    """A timer whose value can never be a date, a duration or a cycle would never fire: refuse it.
    A literal must parse; an ISO value left unquoted is a name error when reached (ENGINE-NOTES trap 8)."""
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
    if not expression:
        return "no value"
    if _ISO_LIKE.match(expression):
        return f"{expression!r} must be quoted (it is an expression): '{expression}'"
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return None  # compile_expression reports it
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, str):
            return f"{expression!r} is not a date, a duration or a cycle"
        try:
            if tag == "timeDuration":
                TimerEventDefinition.parse_iso_duration(node.value)
            elif tag == "timeCycle":
                TimerEventDefinition.parse_iso_recurring_interval(node.value)
            else:
                TimerEventDefinition.get_datetime(node.value)
        except Exception:  # SpiffWorkflow raises a bare Exception for a bad duration
            return f"{node.value!r} is not a valid {tag}"
    return None


def _check_dmn(fname: str, root) -> None:
    problems = []
    for el in root.iter("{*}inputExpression"):
        text = el.findtext("{*}text") or ""
        try:
            compile_expression(text.strip())
        except (ExpressionError, SyntaxError) as exc:
            problems.append(str(exc))
    for tag in ("inputEntry", "outputEntry"):
        for el in root.iter(f"{{*}}{tag}"):
            text = (el.findtext("{*}text") or "").strip()
            if not text or text == "-":
                continue
            candidates = [text] if tag == "outputEntry" else [text, f"v {text}", text.replace("?", "v")]
            errors = []
            for candidate in candidates:
                try:
                    compile_expression(candidate)
                    break
                except (ExpressionError, SyntaxError) as exc:
                    errors.append(str(exc))
            else:
                problems.append(f"{tag} {text!r}: {errors[-1]}")
    if problems:
        raise DefinitionError(f"{fname}: " + "; ".join(problems))


def _event_expressions(definition) -> list:
    found = []
    for item in [definition, *(getattr(definition, "event_definitions", None) or [])]:
        if item is not None and isinstance(getattr(item, "expression", None), str):
            found.append(item.expression)
    return found


def _check_spec_expressions(process_id: str, specs) -> None:
    """Every expression SpiffWorkflow will evaluate, read off the parsed specs (a second net
    under the XML checks): each must compile under the expression limits. A multi-instance
    cardinality is also bounded when it runs (loop_count)."""
    problems = []
    for wf_spec in specs:
        for ts in wf_spec.task_specs.values():
            exprs = []
            exprs += [cond for cond, _name in getattr(ts, "cond_task_specs", None) or [] if isinstance(cond, str)]
            exprs += _event_expressions(getattr(ts, "event_definition", None))
            for value in (getattr(ts, "operation_params", None) or {}).values():
                if isinstance(value, dict) and isinstance(value.get("value"), str):
                    exprs.append(value["value"])
            for attr in ("condition", "cardinality"):
                if isinstance(getattr(ts, attr, None), str):
                    exprs.append(getattr(ts, attr))
            maximum = getattr(ts, "maximum", None)
            if maximum is not None and type(ts).__name__.endswith("LoopTask") and not 1 <= int(maximum) <= MAX_LOOP_COUNT:
                problems.append(f"{ts.bpmn_id}: loopMaximum must be 1-{MAX_LOOP_COUNT}")
            for expr in exprs:
                try:
                    compile_expression(expr.strip())
                except (ExpressionError, SyntaxError) as exc:
                    problems.append(f"{ts.bpmn_id}: {exc}")
            if isinstance(getattr(ts, "cardinality", None), str) and not ts.cardinality.startswith("loop_count("):
                ts.cardinality = f"loop_count({ts.cardinality.strip()})"
        if isinstance(getattr(wf_spec, "completion_condition", None), str):
            try:
                compile_expression(wf_spec.completion_condition.strip())
            except (ExpressionError, SyntaxError) as exc:
                problems.append(f"{wf_spec.name}: {exc}")
    if problems:
        raise DefinitionError(f"{process_id}: " + "; ".join(problems))


def parse_bundle(bundle: dict, content_hash: str | None = None) -> ParsedDefinition:
    process_id = bundle["process_id"]
    parser = SpiffBpmnParser(validator=VALIDATOR)
    try:
        for fname, text in bundle["bpmn"].items():
            root = _parse_xml(text, fname)
            _check_bpmn(fname, root, bundle["lanes"])
            parser.add_bpmn_xml(etree.ElementTree(root), filename=fname)
        for fname, text in bundle["dmn"].items():
            root = _parse_xml(text, fname)
            _check_dmn(fname, root)
            parser.add_dmn_xml(root, filename=fname)
        spec = parser.get_spec(process_id)
        subprocess_specs = parser.get_subprocess_specs(process_id)
    except ValidationException as exc:
        raise DefinitionError(f"{process_id}: {exc}") from exc
    _check_spec_expressions(process_id, [spec, *subprocess_specs.values()])
    forms = {}
    for path, schema in bundle["forms"].items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise DefinitionError(f"form {path}: not a valid JSON Schema: {exc.message}") from exc
        forms[path] = schema
    parsed = ParsedDefinition(
        process_id=process_id, content_hash=content_hash or _hash(bundle), bundle=bundle,
        spec=spec, subprocess_specs=subprocess_specs, forms=forms,
        catalog=bundle["catalog"], lanes=bundle["lanes"],
    )
    owners: dict[str, str] = {}
    for wf_spec in [spec, *subprocess_specs.values()]:
        for ts in wf_spec.task_specs.values():
            props = (getattr(ts, "extensions", None) or {}).get("properties", {})
            if isinstance(ts, (UserTask, CatchingEvent, ThrowingEvent)):
                if owners.setdefault(ts.name, wf_spec.name) != wf_spec.name:
                    raise DefinitionError(f"{process_id}: element id {ts.name!r} is used in both "
                                          f"{owners[ts.name]} and {wf_spec.name}; ids must be unique")
            if isinstance(ts, UserTask):
                form = props.get("formJsonSchemaFilename")
                if form not in forms:
                    raise DefinitionError(f"{process_id}: task {ts.bpmn_id} uses unknown form {form!r}")
                parsed.tasks[ts.name] = TaskInfo(
                    name=ts.bpmn_id, title=ts.bpmn_name or ts.bpmn_id,
                    title_en=props.get("titleEn", ts.bpmn_name or ts.bpmn_id), lane=ts.lane, form=form,
                    data_key=props.get("dataKey"), is_approval=props.get("approval", "false") == "true",
                    process=wf_spec.name,
                )
            elif isinstance(ts, (CatchingEvent, ThrowingEvent)):
                parsed.events[ts.name] = {"title": ts.bpmn_name or ts.bpmn_id,
                                          "title_en": props.get("titleEn", ts.bpmn_name or ts.bpmn_id), **props}
    return parsed


# Parsed definitions by content hash, shared by every registry of the process: a version's bundle
# is its whole input (the hash covers it), and specs are never changed once parsed. Engines of one
# process (the test suite builds one per test) parse each version once.
_PARSED: dict[str, ParsedDefinition] = {}
_PARSED_LOCK = threading.Lock()


def parsed_for(content_hash: str, bundle_loader) -> ParsedDefinition:
    """The parsed definition of a content hash; `bundle_loader()` gives the bundle when it is new."""
    parsed = _PARSED.get(content_hash)
    if parsed is None:
        with _PARSED_LOCK:
            parsed = _PARSED.get(content_hash)
            if parsed is None:
                parsed = parse_bundle(bundle_loader(), content_hash)
                _PARSED[content_hash] = parsed
    return parsed


class DefinitionRegistry:
    """Deploys definitions and hands out parsed specs (parsed once per content hash, see `parsed_for`)."""

    def __init__(self, directory: WorkflowDirectory, check_seconds: float | None = None):
        self.directory = directory
        self._latest: dict[str, int] = {}  # process id -> definition row id
        self._rows: dict[int, tuple[str, str, int]] = {}  # row id -> (content hash, process id, version)
        self._lock = threading.Lock()
        # how often to look whether another process deployed (the newest row's id: one indexed read)
        self.check_seconds = DEPLOY_CHECK_SECONDS if check_seconds is None else check_seconds
        self._checked_at = float("-inf")
        self._newest_id: int | None = None

    def _fresh(self, session) -> None:
        """Pick up versions deployed by another process (`salesflow deploy`, another server) at most
        `check_seconds` late: a look at max(id), then a reload of the (small) id list when it moved."""
        now = time.monotonic()
        if now - self._checked_at < self.check_seconds:
            return
        self._checked_at = now
        newest = session.scalar(select(func.max(ProcessDefinition.id)))
        if newest != self._newest_id:
            self.refresh_latest(session)

    def deploy(self, session) -> list[ProcessDefinition]:
        """Validate everything on disk; record a new version for each changed process. All or nothing."""
        bundles = self.directory.bundles()
        parsed_now = {pid: parsed_for(_hash(b), lambda b=b: b) for pid, b in bundles.items()}
        created = []
        for pid, parsed in parsed_now.items():
            row = session.scalar(select(ProcessDefinition).where(
                ProcessDefinition.process_id == pid, ProcessDefinition.content_hash == parsed.content_hash))
            if row is None:
                version = (session.scalar(select(func.max(ProcessDefinition.version)).where(
                    ProcessDefinition.process_id == pid)) or 0) + 1
                row = ProcessDefinition(
                    process_id=pid, version=version, name=parsed.name, content_hash=parsed.content_hash,
                    sources=json.dumps(parsed.bundle, ensure_ascii=False), deployed_at=datetime.now(timezone.utc))
                session.add(row)
                session.flush()
                created.append(row)
        return created

    def refresh_latest(self, session) -> None:
        rows = session.execute(select(ProcessDefinition.id, ProcessDefinition.process_id,
                                      ProcessDefinition.content_hash, ProcessDefinition.version)
                               .order_by(ProcessDefinition.version)).all()
        with self._lock:
            for row_id, pid, content_hash, version in rows:
                self._rows[row_id] = (content_hash, pid, version)
                self._latest[pid] = row_id
            self._newest_id = max(self._rows, default=None)
            self._checked_at = time.monotonic()

    def latest_id(self, session, process_id: str) -> int | None:
        self._fresh(session)
        if process_id not in self._latest:
            self.refresh_latest(session)
        return self._latest.get(process_id)

    def process_ids(self, session) -> list[str]:
        self._fresh(session)
        if not self._latest:
            self.refresh_latest(session)
        return sorted(self._latest)

    def versions(self, session) -> list[dict]:
        """Every deployed version: process id, version, deployed at, row id (newest version last)."""
        rows = session.execute(select(ProcessDefinition.id, ProcessDefinition.process_id, ProcessDefinition.version,
                                      ProcessDefinition.deployed_at)
                               .order_by(ProcessDefinition.process_id, ProcessDefinition.version)).all()
        return [{"id": r.id, "process_id": r.process_id, "version": r.version, "deployed_at": r.deployed_at}
                for r in rows]

    def id_of(self, session, process_id: str, version: int) -> int | None:
        return session.scalar(select(ProcessDefinition.id).where(
            ProcessDefinition.process_id == process_id, ProcessDefinition.version == version))

    def get(self, session, definition_id: int) -> ParsedDefinition:
        if definition_id not in self._rows:
            self.refresh_latest(session)
        content_hash, _pid, _version = self._rows[definition_id]

        def load():
            row = session.get(ProcessDefinition, definition_id)
            return json.loads(row.sources)
        return parsed_for(content_hash, load)

    def version_of(self, session, definition_id: int) -> int:
        if definition_id not in self._rows:
            self.refresh_latest(session)
        return self._rows[definition_id][2]
