"""Server-side rendering of BPMN 2.0 diagrams to SVG.

The drawing is taken from the diagram interchange (``bpmndi``) part of the
BPMN XML; the process model is only consulted for element types, names and a
few attributes (default flow, event definitions, ``cancelActivity`` ...).

Usage::

    svg = render_svg(xml, "Process_1", active={"Task_approve"}, completed={"Start_1", "Flow_1"})

Every drawn element is an SVG ``<g>`` carrying ``data-element-id`` (the BPMN
id) and a ``class`` with the element type plus ``active`` / ``completed``
when highlighted.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Iterable, Mapping

from lxml import etree

__all__ = ["render_svg", "DiagramError"]

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS = "http://www.omg.org/spec/DD/20100524/DI"
SVG_NS = "http://www.w3.org/2000/svg"

MARGIN = 20
FONT_SIZE = 12
LINE_HEIGHT = 14
UNIT_PX = 6.6  # approximate width of one "narrow" character at FONT_SIZE; CJK counts as 2 units

# Stroke / fill per highlight state.
STYLE = {
    None: {"stroke": "#22242a", "fill": "#ffffff", "width": 1.5},
    "completed": {"stroke": "#2e7d32", "fill": "#f1f8e9", "width": 2},
    "active": {"stroke": "#f57c00", "fill": "#fff3e0", "width": 4},
}

TASK_TYPES = {"task", "userTask", "serviceTask", "businessRuleTask", "scriptTask", "manualTask",
              "sendTask", "receiveTask", "callActivity", "subProcess", "transaction", "adHocSubProcess"}
EVENT_TYPES = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"}
GATEWAY_TYPES = {"exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway"}
EXTERNAL_LABEL = EVENT_TYPES | GATEWAY_TYPES | {"dataObjectReference", "dataStoreReference"}
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class DiagramError(ValueError):
    """The XML is not BPMN, or has no diagram for the requested process."""


# --------------------------------------------------------------------------- helpers

def _local(tag) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _ref(value: str | None) -> str:
    """Strip an optional QName prefix from an id reference ("tns:Process_1" -> "Process_1")."""
    return (value or "").strip().rsplit(":", 1)[-1]


def _n(v: float) -> str:
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _d(*parts) -> str:
    """SVG path data from commands and numbers: _d("M", 1.5, 2, "H", 10) -> "M 1.5 2 H 10"."""
    return " ".join(p if isinstance(p, str) else _n(p) for p in parts)


def _clean(text: str) -> str:
    return _XML_INVALID.sub("", text)


def _char_units(ch: str) -> float:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _text_units(text: str) -> float:
    return sum(_char_units(c) for c in text)


def wrap_text(text: str, max_units: float) -> list[str]:
    """Greedy word wrap by display width. Latin words break at spaces; CJK
    characters may break anywhere; over-long words are broken hard."""
    max_units = max(max_units, 2)
    tokens = re.findall(r"\n|\s+|[^\s\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]+|\S", text)
    lines: list[str] = []
    line = ""
    for tok in tokens:
        if tok == "\n":
            lines.append(line.rstrip())
            line = ""
            continue
        if tok.isspace():
            line += " " if line else ""
            continue
        if _text_units(line + tok) <= max_units:
            line += tok
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = ""
        while _text_units(tok) > max_units:  # hard-break an over-long word
            cut, used = 0, 0.0
            while cut < len(tok) and used + _char_units(tok[cut]) <= max_units:
                used += _char_units(tok[cut])
                cut += 1
            cut = max(cut, 1)
            lines.append(tok[:cut])
            tok = tok[cut:]
        line = tok
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _sub(parent, tag: str, attrs: Mapping[str, object] | None = None, text: str | None = None):
    el = etree.SubElement(parent, f"{{{SVG_NS}}}{tag}")
    for k, v in (attrs or {}).items():
        el.set(k, _n(v) if isinstance(v, (int, float)) else str(v))
    if text is not None:
        el.text = _clean(text)
    return el


def _text(parent, text: str, cx: float, *, width: float, cy: float | None = None, top: float | None = None,
          max_height: float | None = None, rotate: bool = False, cls: str = "label"):
    """Write wrapped, horizontally centred text; vertically centred on `cy` or starting at `top`."""
    text = _clean(text or "").strip()
    if not text:
        return None
    lines = wrap_text(text, (width - 6) / UNIT_PX)
    if max_height is not None:
        max_lines = max(1, int(max_height // LINE_HEIGHT))
        if len(lines) > max_lines:
            lines = lines[:max_lines]
            lines[-1] = lines[-1][:-1].rstrip() + "…" if len(lines[-1]) > 1 else lines[-1] + "…"
    height = len(lines) * LINE_HEIGHT
    if cy is None:
        cy = (top or 0) + height / 2
    y0 = cy - height / 2 + LINE_HEIGHT / 2 + FONT_SIZE * 0.35
    el = _sub(parent, "text", {"class": cls, "x": cx, "y": y0, "text-anchor": "middle"})
    if rotate:
        el.set("transform", f"rotate(-90 {_n(cx)} {_n(cy)})")
    for i, line in enumerate(lines):
        _sub(el, "tspan", {"x": cx, "y": y0 + i * LINE_HEIGHT}, line)
    return el


# --------------------------------------------------------------------------- parsing

def _parse(bpmn_xml: bytes | str):
    if isinstance(bpmn_xml, str):
        # lxml refuses unicode strings with an encoding declaration
        bpmn_xml = re.sub(r"^\s*<\?xml[^>]*\?>", "", bpmn_xml, count=1).encode("utf-8")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(bpmn_xml, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise DiagramError(f"not well-formed XML: {exc}") from exc
    if root.tag != f"{{{BPMN_NS}}}definitions":
        raise DiagramError(f"not a BPMN 2.0 document (root element {root.tag!r})")
    return root


def _find_plane(root, process_id: str):
    model = {el.get("id"): el for el in root.iter(f"{{{BPMN_NS}}}*") if el.get("id")}
    for plane in root.iter(f"{{{BPMNDI_NS}}}BPMNPlane"):
        target = model.get(_ref(plane.get("bpmnElement")))
        if target is None:
            continue
        if target.get("id") == process_id and _local(target.tag) == "process":
            return plane, model
        if _local(target.tag) == "collaboration":
            if any(_ref(p.get("processRef")) == process_id for p in target.iter(f"{{{BPMN_NS}}}participant")):
                return plane, model
    raise DiagramError(f"no diagram found for process {process_id!r}")


def _bounds(el):
    b = el.find(f"{{{DC_NS}}}Bounds")
    if b is None:
        return None
    try:
        return tuple(float(b.get(k, "0")) for k in ("x", "y", "width", "height"))
    except ValueError:
        return None


# --------------------------------------------------------------------------- drawing

def _defs(svg):
    defs = _sub(svg, "defs")
    _sub(defs, "style", text="text{font-family:Arial,'Noto Sans CJK SC','Microsoft YaHei',sans-serif;"
                             f"font-size:{FONT_SIZE}px;fill:#22242a}}"
                             ".note{fill:#b45309;font-weight:bold}.bpmn-link{cursor:pointer}")
    for state, st in STYLE.items():
        sfx = f"-{state}" if state else ""
        m = _sub(defs, "marker", {"id": f"arrow{sfx}", "viewBox": "0 0 20 20", "refX": 11, "refY": 10,
                                  "markerWidth": 10, "markerHeight": 10, "orient": "auto"})
        _sub(m, "path", {"d": "M 1 5 L 11 10 L 1 15 Z", "fill": st["stroke"], "stroke": st["stroke"]})
    m = _sub(defs, "marker", {"id": "open-arrow", "viewBox": "0 0 20 20", "refX": 12, "refY": 10,
                              "markerWidth": 10, "markerHeight": 10, "orient": "auto"})
    _sub(m, "path", {"d": "M 1 5 L 11 10 L 1 15", "fill": "none", "stroke": "#22242a"})
    m = _sub(defs, "marker", {"id": "default-slash", "viewBox": "0 0 20 20", "refX": 0, "refY": 10,
                              "markerWidth": 10, "markerHeight": 10, "orient": "auto"})
    _sub(m, "path", {"d": "M 6 4 L 12 16", "stroke": "#22242a", "stroke-width": 1.5})
    m = _sub(defs, "marker", {"id": "msg-start", "viewBox": "0 0 20 20", "refX": 6, "refY": 10,
                              "markerWidth": 10, "markerHeight": 10, "orient": "auto"})
    _sub(m, "circle", {"cx": 6, "cy": 10, "r": 3.5, "fill": "#ffffff", "stroke": "#22242a"})


def _event_glyph(g, model_el, cx, cy, r, stroke):
    kinds = {_local(d.tag) for d in model_el if _local(d.tag).endswith("EventDefinition")}
    throw = _local(model_el.tag) in ("endEvent", "intermediateThrowEvent")
    if "timerEventDefinition" in kinds:
        cr = r * 0.6
        _sub(g, "circle", {"cx": cx, "cy": cy, "r": cr, "fill": "#ffffff", "stroke": stroke, "stroke-width": 1.5})
        ticks = " ".join(_d("M", cx + cr * 0.8 * math.cos(a), cy + cr * 0.8 * math.sin(a),
                            "L", cx + cr * math.cos(a), cy + cr * math.sin(a))
                         for a in (i * math.pi / 6 for i in range(12)))
        _sub(g, "path", {"d": ticks, "stroke": stroke, "stroke-width": 1})
        _sub(g, "path", {"d": _d("M", cx, cy - cr * 0.7, "V", cy, "H", cx + cr * 0.5),
                         "fill": "none", "stroke": stroke, "stroke-width": 1.5})
    elif "messageEventDefinition" in kinds:
        w, h = r * 0.95, r * 0.65
        x, y = cx - w / 2, cy - h / 2
        _sub(g, "rect", {"x": x, "y": y, "width": w, "height": h, "stroke": stroke,
                         "fill": stroke if throw else "#ffffff"})
        _sub(g, "path", {"d": _d("M", x, y, "L", cx, cy, "L", x + w, y), "fill": "none",
                         "stroke": "#ffffff" if throw else stroke})
    elif "signalEventDefinition" in kinds:
        s = r * 0.6
        _sub(g, "path", {"d": _d("M", cx, cy - s, "L", cx + s, cy + s * 0.6, "H", cx - s, "Z"),
                         "stroke": stroke, "fill": stroke if throw else "none"})
    elif "terminateEventDefinition" in kinds:
        _sub(g, "circle", {"cx": cx, "cy": cy, "r": r * 0.6, "fill": stroke})


def _draw_shape(g, kind, model_el, shape, b, name, st):
    x, y, w, h = b
    cx, cy = x + w / 2, y + h / 2
    stroke, fill, sw = st["stroke"], st["fill"], st["width"]
    base = {"stroke": stroke, "stroke-width": sw}
    if kind in ("participant", "lane"):
        _sub(g, "rect", {"x": x, "y": y, "width": w, "height": h, "fill": "none" if kind == "lane" else fill, **base})
        if shape.get("isHorizontal") == "false":  # vertical pool: name along the top
            _sub(g, "path", {"d": _d("M", x, y + 30, "H", x + w), **base})
            _text(g, name, cx, cy=y + 15, width=w, max_height=28)
        else:
            _sub(g, "path", {"d": _d("M", x + 30, y, "V", y + h), **base})
            _text(g, name, x + 15, cy=cy, width=h, max_height=28, rotate=True)
    elif kind in TASK_TYPES:
        expanded = shape.get("isExpanded") == "true"
        if kind == "callActivity":
            base["stroke-width"] = max(sw, 4)
        if model_el.get("triggeredByEvent") == "true":  # event sub-process
            base["stroke-dasharray"] = "4 3"
        _sub(g, "rect", {"x": x, "y": y, "width": w, "height": h, "rx": 10, "ry": 10, "fill": fill, **base})
        if kind == "transaction":
            _sub(g, "rect", {"x": x + 3, "y": y + 3, "width": w - 6, "height": h - 6, "rx": 8, "ry": 8,
                             "fill": "none", "stroke": stroke})
        if expanded:
            _text(g, name, x + min(w, 200) / 2 + 5, top=y + 5, width=min(w, 200))
        else:
            _text(g, name, cx, cy=cy, width=w - 4, max_height=h - 8)
        # 12x12 markers centred at the bottom: [+] collapsed sub-process, ||| / ≡ multi-instance
        markers = []
        if kind in ("subProcess", "transaction", "adHocSubProcess") and not expanded:
            markers.append(lambda l, b: _d("M", l, b, "h 12 v -12 h -12 Z M", l + 6, b - 10, "v 8",
                                           "M", l + 2, b - 6, "h 8"))
        mi = model_el.find(f"{{{BPMN_NS}}}multiInstanceLoopCharacteristics")
        if mi is not None and mi.get("isSequential") == "true":
            markers.append(lambda l, b: _d("M", l, b, "h 12 M", l, b - 6, "h 12 M", l, b - 12, "h 12"))
        elif mi is not None:
            markers.append(lambda l, b: _d("M", l, b, "v -12 M", l + 6, b, "v -12 M", l + 12, b, "v -12"))
        for i, marker in enumerate(markers):
            _sub(g, "path", {"d": marker(cx - len(markers) * 8 + i * 16 + 2, y + h - 5),
                             "fill": "none", "stroke": stroke, "stroke-width": 1.5})
    elif kind in EVENT_TYPES:
        r = min(w, h) / 2
        dashed = {"stroke-dasharray": "4 3"} if (model_el.get("cancelActivity") == "false"
                                                 or model_el.get("isInterrupting") == "false") else {}
        if kind == "endEvent":
            base["stroke-width"] = max(sw, 4)
        elif kind == "startEvent" and sw < 2:
            base["stroke-width"] = 1.5
        _sub(g, "circle", {"cx": cx, "cy": cy, "r": r, "fill": fill, **base, **dashed})
        if kind not in ("startEvent", "endEvent"):
            _sub(g, "circle", {"cx": cx, "cy": cy, "r": r - 3, "fill": "none", "stroke": stroke, **dashed})
        _event_glyph(g, model_el, cx, cy, r, stroke)
    elif kind in GATEWAY_TYPES:
        _sub(g, "path", {"d": _d("M", cx, y, "L", x + w, cy, "L", cx, y + h, "L", x, cy, "Z"), "fill": fill, **base})
        s = min(w, h) * 0.22
        mark = {"fill": "none", "stroke": stroke, "stroke-width": 3}
        cross = _d("M", cx - s, cy - s, "L", cx + s, cy + s, "M", cx + s, cy - s, "L", cx - s, cy + s)
        plus = _d("M", cx, cy - s * 1.3, "V", cy + s * 1.3, "M", cx - s * 1.3, cy, "H", cx + s * 1.3)
        if kind == "exclusiveGateway":
            _sub(g, "path", {"d": cross, **mark})
        elif kind in ("parallelGateway", "complexGateway"):
            _sub(g, "path", {"d": plus + (" " + cross if kind == "complexGateway" else ""), **mark})
        elif kind == "inclusiveGateway":
            _sub(g, "circle", {"cx": cx, "cy": cy, "r": s * 1.2, **mark, "stroke-width": 2.5})
        else:  # eventBasedGateway: double circle around a pentagon
            _sub(g, "circle", {"cx": cx, "cy": cy, "r": s * 1.6, "fill": "none", "stroke": stroke})
            _sub(g, "circle", {"cx": cx, "cy": cy, "r": s * 1.35, "fill": "none", "stroke": stroke})
            pts = " ".join(f"{_n(cx + s * 0.9 * math.sin(a))},{_n(cy - s * 0.9 * math.cos(a))}"
                           for a in (i * 2 * math.pi / 5 for i in range(5)))
            _sub(g, "polygon", {"points": pts, "fill": "none", "stroke": stroke, "stroke-width": 1.5})
    elif kind == "textAnnotation":
        _sub(g, "path", {"d": _d("M", x + 10, y, "H", x, "V", y + h, "H", x + 10), "fill": "none", **base})
        text = model_el.findtext(f"{{{BPMN_NS}}}text") or ""
        _text(g, name or text, cx, cy=cy, width=w, max_height=h)
    elif kind == "group":
        _sub(g, "rect", {"x": x, "y": y, "width": w, "height": h, "rx": 10, "ry": 10, "fill": "none",
                         "stroke-dasharray": "8 3 1 3", **base})
    elif kind == "dataObjectReference":
        _sub(g, "path", {"d": _d("M", x, y, "H", x + w - 10, "L", x + w, y + 10, "V", y + h, "H", x, "Z",
                                 "M", x + w - 10, y, "V", y + 10, "H", x + w), "fill": fill, **base})
    else:  # data stores and anything unknown: plain box with the name
        _sub(g, "rect", {"x": x, "y": y, "width": w, "height": h, "fill": fill, **base})
        if kind != "dataStoreReference":
            _text(g, name, cx, cy=cy, width=w, max_height=h)


def _label_place(di, b=None, pts=None):
    """(centre x, top y, wrap width) of an external label: its BPMNLabel bounds if present, else
    under shape bounds `b`, else above the middle segment of waypoints `pts`."""
    label = di.find(f"{{{BPMNDI_NS}}}BPMNLabel")
    lb = _bounds(label) if label is not None else None
    if lb:
        return lb[0] + lb[2] / 2, lb[1], max(lb[2] + 20, 90)
    if b:
        return b[0] + b[2] / 2, b[1] + b[3] + 4, max(b[2], 100)
    (ax, ay), (bx, by) = pts[(len(pts) - 1) // 2], pts[(len(pts) - 1) // 2 + 1]
    return (ax + bx) / 2, (ay + by) / 2 - 10 - LINE_HEIGHT, 100


def _note_place(b, note: str):
    """(centre x, top y, width) of a note drawn above a shape."""
    width = max(b[2], 150)
    lines = len(wrap_text(note, (width - 6) / UNIT_PX))
    return b[0] + b[2] / 2, b[1] - 6 - lines * LINE_HEIGHT, width


def _waypoints(di):
    try:
        return [(float(wp.get("x")), float(wp.get("y"))) for wp in di.findall(f"{{{DI_NS}}}waypoint")]
    except (TypeError, ValueError):
        return []


SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"


def _title_en(model_el) -> str | None:
    """The element's `titleEn` extension property (tasks, events, gateways, flows carry one)."""
    for prop in model_el.iterfind(f"{{{BPMN_NS}}}extensionElements/{{{SPIFF_NS}}}properties/{{{SPIFF_NS}}}property"):
        if prop.get("name") == "titleEn" and prop.get("value"):
            return prop.get("value")
    return None


def render_svg(bpmn_xml: bytes | str, process_id: str, *, active: Iterable[str] = (),
               completed: Iterable[str] = (), titles: Mapping[str, str] | None = None, lang: str | None = None,
               lane_titles: Mapping[str, str] | None = None, notes: Mapping[str, str] | None = None,
               links: Mapping[str, str] | None = None) -> str:
    """SVG text for the diagram that shows process `process_id`.

    active: BPMN element ids of open tasks (thick orange border + light fill, CSS class "active").
    completed: element ids already passed (green border, CSS class "completed").
    titles: optional element id -> label override (e.g. translated names); else, for lang "en", the
    element's `titleEn` property; else the `name` attribute; a pool's "中文 English" name in `lang`
    (None: every name as the BPMN has it). lane_titles: lane name -> label.
    notes: element id -> a second line drawn under the element ("waiting until ...").
    links: element id -> the address a click on the element opens (a called process).
    Raises DiagramError when the XML is not BPMN or has no diagram for `process_id`.
    """
    root = _parse(bpmn_xml)
    plane, model = _find_plane(root, process_id)
    active, completed, titles = set(active), set(completed), dict(titles or {})
    notes, links = dict(notes or {}), dict(links or {})

    # 1. collect drawable items with their geometry, and the extent of the drawing
    items = []  # (z-layer, document order, di element, model element, kind, name, bounds, points)
    xs, ys = [], []
    for order, di in enumerate(plane):
        if _local(di.tag) not in ("BPMNShape", "BPMNEdge"):
            continue
        model_el = model.get(_ref(di.get("bpmnElement")))
        if model_el is None:
            continue
        kind = _local(model_el.tag)
        title = titles.get(model_el.get("id"))  # may be a lazy translation string: coerce with str()
        if title is None and kind == "lane":
            title = (lane_titles or {}).get(model_el.get("name") or "")
        if title is None and lang == "en":
            title = _title_en(model_el)
        name = str(title) if title is not None else model_el.get("name") or ""
        b, pts = None, []
        if _local(di.tag) == "BPMNShape":
            b = _bounds(di)
            if b is None:
                continue
            xs += [b[0], b[0] + b[2]]
            ys += [b[1], b[1] + b[3]]
            expanded = kind in TASK_TYPES and di.get("isExpanded") == "true"
            layer = {"participant": 0, "lane": 1, "group": 5, "boundaryEvent": 6}.get(kind, 2 if expanded else 3)
        else:
            pts = _waypoints(di)
            if len(pts) < 2:
                continue
            xs += [p[0] for p in pts]
            ys += [p[1] for p in pts]
            layer = 4
        if b is not None and model_el.get("id") in notes:
            nx, ntop, nwidth = _note_place(b, notes[model_el.get("id")])
            xs += [nx - nwidth / 2, nx + nwidth / 2]
            ys += [ntop]
        if lang and title is None and kind == "participant":
            name = _in_language(name, lang)
        items.append((layer, order, di, model_el, kind, name, b, pts))

    # 1b. external labels (events, gateways, flows) where they cover no shape and no other label
    places = _place_labels(items)
    for lx, top, width, lines in places.values():
        xs += [lx - width / 2, lx + width / 2]
        ys += [top, top + lines * LINE_HEIGHT]

    # 2. the <svg> root, sized to the drawing
    min_x, min_y = (min(xs), min(ys)) if xs else (0.0, 0.0)
    max_x, max_y = (max(xs), max(ys)) if xs else (0.0, 0.0)
    vb = (min_x - MARGIN, min_y - MARGIN, max_x - min_x + 2 * MARGIN, max_y - min_y + 2 * MARGIN)
    svg = etree.Element(f"{{{SVG_NS}}}svg", nsmap={None: SVG_NS})
    svg.set("viewBox", " ".join(_n(v) for v in vb))
    svg.set("width", _n(math.ceil(vb[2])))
    svg.set("height", _n(math.ceil(vb[3])))
    svg.set("class", "bpmn-diagram")
    _defs(svg)
    default_flows = {el.get("default") for el in model.values() if el.get("default")}

    # 3. draw: pools, lanes, expanded sub-processes, nodes, flows, groups, boundary events
    for _layer, _order, di, model_el, kind, name, b, pts in sorted(items, key=lambda it: it[:2]):
        eid = model_el.get("id")
        state = "active" if eid in active else "completed" if eid in completed else None
        st = STYLE[state]
        parent = svg
        if eid in links:
            parent = _sub(svg, "a", {"href": links[eid], "class": "bpmn-link"})
            _sub(parent, "title", text=name)
        g = _sub(parent, "g", {"class": " ".join(filter(None, ["bpmn-element", kind, state])), "data-element-id": eid})
        if b is not None:
            _draw_shape(g, kind, model_el, di, b, name, st)
            if kind in EXTERNAL_LABEL and eid in places:
                lx, top, width, _lines = places[eid]
                _text(g, name, lx, top=top, width=width)
            if eid in notes:
                nx, ntop, nwidth = _note_place(b, notes[eid])
                _text(g, notes[eid], nx, top=ntop, width=nwidth, cls="note")
            continue
        attrs = {"points": " ".join(f"{_n(px)},{_n(py)}" for px, py in pts), "fill": "none",
                 "stroke": st["stroke"], "stroke-width": 1.5 if state is None else st["width"] - 1}
        if kind == "sequenceFlow":
            attrs["marker-end"] = f"url(#arrow{'-' + state if state else ''})"
            if eid in default_flows:
                attrs["marker-start"] = "url(#default-slash)"
        elif kind == "messageFlow":
            attrs.update({"stroke-dasharray": "8 4", "marker-start": "url(#msg-start)",
                          "marker-end": "url(#open-arrow)"})
        else:  # associations, data associations
            attrs.update({"stroke-dasharray": "2 4", "stroke-linecap": "round"})
            if kind != "association" or model_el.get("associationDirection") in ("One", "Both"):
                attrs["marker-end"] = "url(#open-arrow)"
        _sub(g, "polyline", attrs)
        if name and eid in places:
            lx, top, width, _lines = places[eid]
            _text(g, name, lx, top=top, width=width)
    return etree.tostring(svg, encoding="unicode")


_BILINGUAL = re.compile(r"^(?P<zh>[^A-Za-z]*[\u2e80-\u9fff][^A-Za-z]*?)\s+(?P<en>[A-Za-z].*)$")


def _in_language(name: str, lang: str) -> str:
    """A pool's "中文 English" name in one language."""
    match = _BILINGUAL.match(name or "")
    return (match["en"] if lang == "en" else match["zh"].strip()) if match else name


def _overlaps(a, b, pad: float = 2) -> bool:
    return a[0] < b[0] + b[2] + pad and b[0] < a[0] + a[2] + pad and a[1] < b[1] + b[3] + pad and b[1] < a[1] + a[3] + pad


def _place_labels(items) -> dict:
    """element id -> (centre x, top, wrap width, lines) of each external label: the first of a few
    candidate places (the diagram's own, below, above, right, left of the shape; for a flow, beside
    each of its segments) that covers no shape and no label placed before it."""
    obstacles = [b for _l, _o, di, _m, kind, _n, b, _p in items
                 if b is not None and kind not in ("participant", "lane", "group")
                 and not (kind in TASK_TYPES and di.get("isExpanded") == "true")]
    placed: list[tuple] = []
    result = {}
    for _layer, _order, di, model_el, kind, name, b, pts in sorted(items, key=lambda it: (it[6] is None, it[1])):
        if not name or not (pts or kind in EXTERNAL_LABEL):
            continue
        width = 100 if pts else max(b[2] + 50, 100)
        lines = wrap_text(name, (width - 6) / UNIT_PX)
        tw = max(_text_units(line) for line in lines) * UNIT_PX + 4
        th = len(lines) * LINE_HEIGHT
        candidates = [_label_place(di, b, pts)[:2]]
        if b is not None:
            x, y, w, h = b
            cx, cy = x + w / 2, y + h / 2
            candidates += [(cx, y + h + 4), (cx, y - 4 - th), (x + w + 6 + tw / 2, cy - th / 2),
                           (x - 6 - tw / 2, cy - th / 2), (x + w + 4 + tw / 2, y + h), (x - 4 - tw / 2, y + h)]
        else:
            for (ax, ay), (bx, by) in zip(pts, pts[1:]):
                mx, my = (ax + bx) / 2, (ay + by) / 2
                if abs(ay - by) < abs(ax - bx):  # horizontal: above, below
                    candidates += [(mx, my - 4 - th), (mx, my + 4)]
                else:  # vertical: right, left
                    candidates += [(mx + 6 + tw / 2, my - th / 2), (mx - 6 - tw / 2, my - th / 2)]
        own = [b] if b is not None else []
        chosen = candidates[0]
        for cx, top in candidates:
            rect = (cx - tw / 2, top, tw, th)
            if not any(_overlaps(rect, o) for o in obstacles if o not in own) and \
                    not any(_overlaps(rect, o) for o in placed):
                chosen = (cx, top)
                break
        placed.append((chosen[0] - tw / 2, chosen[1], tw, th))
        result[model_el.get("id")] = (chosen[0], chosen[1], width, len(lines))
    return result
