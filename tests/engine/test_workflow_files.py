"""Static checks of everything in workflows/: schemas, diagram information, lanes, forms, expressions."""
from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import Path

import jsonschema
import pytest
from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.dmn.parser.BpmnDmnParser import XSD_DIR
from SpiffWorkflow.spiff.parser.process import VALIDATOR

from engine.definitions import WorkflowDirectory, parse_bundle
from engine.expressions import compile_expression

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
SPIFF = "http://spiffworkflow.org/bpmn/schema/1.0/core"
DMN13 = "https://www.omg.org/spec/DMN/20191111/MODEL/"
NS = {"bpmn": BPMN, "bpmndi": BPMNDI, "dc": DC, "di": DI, "spiffworkflow": SPIFF, "dmn": DMN13}

BPMN_FILES = sorted(WORKFLOWS.glob("*.bpmn"))
DMN_FILES = sorted(WORKFLOWS.glob("*.dmn"))
FORM_FILES = sorted((WORKFLOWS / "forms").glob("*.json"))
CATALOG = json.loads((WORKFLOWS / "processes.json").read_text(encoding="utf-8"))
LANES = json.loads((WORKFLOWS / "lanes.json").read_text(encoding="utf-8"))
PROCESSES = ["expense_approval", "contract_review", "performance_appraisal", "lead_to_aftersales", "budget_plan"]
VOCABULARY = json.loads((WORKFLOWS / "vocabulary.json").read_text(encoding="utf-8"))
# the outcomes every approval ends with (the engine and the web pages know their words); a process's own
# outcomes have theirs in its vocabulary (the x-enum-titles of "outcome")
OUTCOMES = {"approved", "rejected"}
CJK = re.compile(r"[\u4e00-\u9fff]")
FLOW_NODES = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
              "userTask", "serviceTask", "businessRuleTask", "callActivity", "manualTask", "task",
              "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway"}


def parse(path: Path):
    return etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))


def local(el) -> str:
    return etree.QName(el).localname


def props(el) -> dict:
    return {p.get("name"): p.get("value") for p in el.iterfind("bpmn:extensionElements/spiffworkflow:properties/"
                                                               "spiffworkflow:property", NS)}


def flow_nodes(root):
    return [el for el in root.iterfind("bpmn:process/*", NS) if local(el) in FLOW_NODES]


def bounds(root) -> dict:
    result = {}
    for shape in root.iterfind(".//bpmndi:BPMNShape", NS):
        b = shape.find("dc:Bounds", NS)
        result[shape.get("bpmnElement")] = tuple(float(b.get(k)) for k in ("x", "y", "width", "height"))
    return result


def test_the_processes_are_in_the_catalog():
    assert [k for k in CATALOG if not k.startswith("_")] == PROCESSES
    owners = {proc.get("id"): path.name for path in BPMN_FILES for proc in parse(path).iterfind("bpmn:process", NS)}
    assert set(PROCESSES) <= set(owners)


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_bpmn_validates_against_the_xsd(path):
    VALIDATOR.validate(parse(path))


@pytest.mark.parametrize("path", DMN_FILES, ids=lambda p: p.name)
def test_dmn_validates_against_the_xsd_and_cells_compile(path):
    tree = parse(path)
    assert tree.getroot().tag == f"{{{DMN13}}}definitions"
    BpmnValidator(str(Path(XSD_DIR) / "DMN13.xsd")).validate(tree)
    root = tree.getroot()
    for text in root.iterfind(".//dmn:inputExpression/dmn:text", NS):
        compile_expression(text.text.strip())
    for text in root.iterfind(".//dmn:outputEntry/dmn:text", NS):
        compile_expression(text.text.strip())
    for table in root.iterfind(".//dmn:decisionTable", NS):
        n_in, n_out = len(table.findall("dmn:input", NS)), len(table.findall("dmn:output", NS))
        for rule in table.iterfind("dmn:rule", NS):
            assert len(rule.findall("dmn:inputEntry", NS)) == n_in and len(rule.findall("dmn:outputEntry", NS)) == n_out


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_every_node_has_a_shape_and_every_flow_an_edge(path):
    root = parse(path).getroot()
    shapes, edges = set(), {}
    for shape in root.iterfind(".//bpmndi:BPMNShape", NS):
        shapes.add(shape.get("bpmnElement"))
    for edge in root.iterfind(".//bpmndi:BPMNEdge", NS):
        edges[edge.get("bpmnElement")] = [(float(w.get("x")), float(w.get("y"))) for w in edge.iterfind("di:waypoint", NS)]
    for node in flow_nodes(root):
        assert node.get("id") in shapes, f"{node.get('id')} has no BPMNShape"
    for flow in root.iterfind("bpmn:process/bpmn:sequenceFlow", NS):
        assert flow.get("id") in edges, f"{flow.get('id')} has no BPMNEdge"
        assert len(edges[flow.get("id")]) >= 2
    for lane in root.iterfind(".//bpmn:lane", NS):
        assert lane.get("id") in shapes


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_diagram_is_readable(path):
    """No two shapes overlap (a boundary event sits on its own task), nodes lie in their lanes, flows are orthogonal
    and start/end on the shapes they connect."""
    root = parse(path).getroot()
    box = bounds(root)
    nodes = {n.get("id"): n for n in flow_nodes(root)}
    attached = {n.get("id"): n.get("attachedToRef") for n in nodes.values() if local(n) == "boundaryEvent"}
    for a, b in combinations(nodes, 2):
        if attached.get(a) == b or attached.get(b) == a:
            continue
        (ax, ay, aw, ah), (bx, by, bw, bh) = box[a], box[b]
        assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, f"{a} overlaps {b}"
    for lane in root.iterfind(".//bpmn:lane", NS):
        lx, ly, lw, lh = box[lane.get("id")]
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            x, y, w, h = box[ref.text]
            assert lx <= x and x + w <= lx + lw and ly <= y and y + h <= ly + lh, f"{ref.text} is outside its lane"
    for edge in root.iterfind(".//bpmndi:BPMNEdge", NS):
        pts = [(float(w.get("x")), float(w.get("y"))) for w in edge.iterfind("di:waypoint", NS)]
        for (x1, y1), (x2, y2) in zip(pts, pts[1:]):
            assert x1 == x2 or y1 == y2, f"{edge.get('bpmnElement')} is not orthogonal"
        flow = root.find(f"bpmn:process/bpmn:sequenceFlow[@id='{edge.get('bpmnElement')}']", NS)
        for end, point in ((flow.get("sourceRef"), pts[0]), (flow.get("targetRef"), pts[-1])):
            x, y, w, h = box[end]
            on_border = (x <= point[0] <= x + w and y <= point[1] <= y + h
                         and (point[0] in (x, x + w) or point[1] in (y, y + h)))
            assert on_border, f"{edge.get('bpmnElement')} does not touch {end}"


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: p.name)
def test_model_conventions(path):
    root = parse(path).getroot()
    assert not root.findall(".//bpmn:scriptTask", NS)
    assert not root.findall(".//spiffworkflow:preScript", NS) and not root.findall(".//spiffworkflow:postScript", NS)
    assert root.find("bpmn:collaboration/bpmn:participant", NS) is not None
    for lane in root.iterfind(".//bpmn:lane", NS):
        assert lane.get("name") in LANES, f"lane {lane.get('name')} is not in lanes.json"
    laned = {ref.text for ref in root.iterfind(".//bpmn:flowNodeRef", NS)}
    for node in flow_nodes(root):
        nid, kind, p = node.get("id"), local(node), props(node)
        assert nid in laned, f"{nid} is in no lane"
        if "Gateway" not in kind:
            assert node.get("name") and p.get("titleEn"), f"{nid} needs a (Chinese) name and titleEn"
        elif kind == "exclusiveGateway" and len(node.findall("bpmn:outgoing", NS)) > 1:
            assert node.get("name"), f"decision {nid} needs a name"  # merges and parallel gateways may be unnamed
        if kind == "userTask":
            form = p.get("formJsonSchemaFilename")
            assert form and (WORKFLOWS / form).is_file(), f"{nid}: form {form!r} missing"
            if p.get("approval") == "true":
                assert p.get("dataKey"), f"approval task {nid} needs a dataKey"
                schema = json.loads((WORKFLOWS / form).read_text(encoding="utf-8"))
                assert set(schema["properties"]["decision"]["enum"]) <= {"approve", "return", "reject"}
        if kind == "endEvent" and p.get("outcome"):
            process = node.getparent().get("id")
            own = (VOCABULARY.get(process, {}).get("data", {}).get("outcome") or {}).get("x-enum-titles", {})
            assert p["outcome"] in OUTCOMES | set(own), f"{nid}: outcome {p['outcome']!r} has no words"
        for timer in node.iterfind("bpmn:timerEventDefinition", NS):
            expr = timer.find("bpmn:timeDate", NS)
            assert expr is not None, f"{nid}: SalesFlow timers are timeDate expressions"
            compile_expression(expr.text.strip())
            if p.get("notify"):
                assert p["notify"] in LANES
        if kind == "exclusiveGateway" and len(node.findall("bpmn:outgoing", NS)) > 1:
            for flow_id in node.iterfind("bpmn:outgoing", NS):
                flow = root.find(f"bpmn:process/bpmn:sequenceFlow[@id='{flow_id.text}']", NS)
                assert flow.find("bpmn:conditionExpression", NS) is not None or node.get("default") == flow_id.text, \
                    f"{flow_id.text} out of {nid} has no condition"
    for cond in root.iterfind(".//bpmn:conditionExpression", NS):
        compile_expression(cond.text.strip())


def test_ids_are_unique_within_a_process_and_the_processes_it_calls():
    """The engine keys tasks and events by BPMN id across a definition bundle (a process and what it calls)."""
    for pid, bundle in WorkflowDirectory(WORKFLOWS).bundles().items():
        seen = {}
        for fname, text in bundle["bpmn"].items():
            root = etree.fromstring(text.encode())
            for node in root.iterfind("bpmn:process/*", NS):
                if node.get("id") and local(node) in FLOW_NODES:
                    assert node.get("id") not in seen, f"{pid}: {node.get('id')} in {fname} and {seen[node.get('id')]}"
                    seen[node.get("id")] = fname


@pytest.mark.parametrize("path", FORM_FILES, ids=lambda p: p.name)
def test_forms_are_valid_schemas_with_titles(path):
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema.get("type") == "object" and schema.get("title") and schema.get("x-title-zh")
    for name, field in schema["properties"].items():
        assert field.get("title") and field.get("x-title-zh"), f"{path.name}: {name} needs title and x-title-zh"
        if "enum" in field:
            assert set(field.get("x-enum-titles", {})) == set(field["enum"]), f"{path.name}: {name} enum titles"
    for name in schema.get("required", []):
        assert name in schema["properties"]


def _messages(node, path=""):
    if isinstance(node, dict):
        if "x-error" in node:
            yield path, node["x-error"], node.get("x-error-zh")
        for key, value in node.items():
            yield from _messages(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _messages(value, f"{path}.{index}")


@pytest.mark.parametrize("path", FORM_FILES, ids=lambda p: p.name)
def test_every_message_of_a_form_has_its_chinese_beside_it(path):
    """A form's x-error is shown in Chinese from its x-error-zh: the web UI has no list of form messages."""
    for where, message, chinese in _messages(json.loads(path.read_text(encoding="utf-8"))):
        assert isinstance(message, str) and message.strip(), f"{path.name}: {where}"
        assert isinstance(chinese, str) and CJK.search(chinese), f"{path.name}: {where} needs an x-error-zh"


def test_a_message_reads_the_same_in_chinese_in_every_form():
    """One English message, one Chinese one: pages that show a message without its form (a bulk
    approval's refusals) find it in the vocabulary of every form."""
    seen: dict[str, tuple[str, str]] = {}
    for path in FORM_FILES:
        for where, message, chinese in _messages(json.loads(path.read_text(encoding="utf-8"))):
            first = seen.setdefault(message, (chinese, f"{path.name}: {where}"))
            assert first[0] == chinese, f"{message!r}: {chinese!r} in {path.name}, {first[0]!r} in {first[1]}"


def _set_outside_forms(bundle) -> dict[str, str]:
    """Data key -> what sets it, for the keys a bundle's processes set outside forms: DMN outputs and
    service task results (a step's stored answer, dataKey, is titled by its step)."""
    keys, steps = {}, set()
    for text in bundle["dmn"].values():
        for output in etree.fromstring(text.encode()).iter(f"{{{DMN13}}}output"):
            keys[output.get("name")] = "DMN output"
    for text in bundle["bpmn"].values():
        root = etree.fromstring(text.encode())
        for op in root.iter(f"{{{SPIFF}}}serviceTaskOperator"):
            if op.get("resultVariable"):
                keys[op.get("resultVariable")] = f"service task {op.get('id')}"
        steps |= {p.get("value") for p in root.iter(f"{{{SPIFF}}}property") if p.get("name") == "dataKey"}
    return {k: v for k, v in keys.items() if k not in steps}


def test_every_key_a_process_sets_outside_its_forms_has_its_words_in_both_languages():
    """vocabulary.json titles what DMN tables and service tasks store, in English and Chinese; the values
    it names have both languages too (the engine refuses a vocabulary that does not, at deploy)."""
    for pid, bundle in WorkflowDirectory(WORKFLOWS).bundles().items():
        words = parse_bundle(bundle).vocabulary["data"]
        for key, source in _set_outside_forms(bundle).items():
            assert key in words, f"{pid}: {key} ({source}) has no words in vocabulary.json"
            assert words[key].get("title") and CJK.search(words[key].get("x-title-zh") or ""), f"{pid}: {key}"
            for value, titles in words[key].get("x-enum-titles", {}).items():
                assert titles["en"] and CJK.search(titles["zh"]), f"{pid}: {key} = {value}"
    bpmn_processes = {p.get("id") for path in BPMN_FILES for p in parse(path).getroot().iterfind("bpmn:process", NS)}
    assert set(VOCABULARY) - {"_comment"} <= bpmn_processes


def test_catalog_entries_reference_existing_forms_and_tasks():
    for pid in PROCESSES:
        entry = CATALOG[pid]
        assert entry["name"]["en"] and entry["name"]["zh"]
        if entry.get("start_form"):
            assert (WORKFLOWS / entry["start_form"]).is_file()
        assert entry.get("subject_rule") in (None, "self_or_report", "has_manager", "not_self")


def test_every_process_deploys():
    """The engine's own checks: XSD, allowed elements, expressions, lanes, forms, and SpiffWorkflow's parser."""
    for pid, bundle in WorkflowDirectory(WORKFLOWS).bundles().items():
        parsed = parse_bundle(bundle)
        first = CATALOG[pid].get("first_task")
        if first:
            assert first in {info.name for info in parsed.tasks.values()}, f"{pid}: first_task {first} unknown"


def test_lead_calls_contract_review():
    bundle = WorkflowDirectory(WORKFLOWS).bundles()["lead_to_aftersales"]
    assert set(bundle["bpmn"]) == {"lead_to_aftersales.bpmn", "contract_review.bpmn"}
    root = parse(WORKFLOWS / "lead_to_aftersales.bpmn").getroot()
    assert [c.get("calledElement") for c in root.iterfind(".//bpmn:callActivity", NS)] == ["contract_review"]
