import re

import pytest
from lxml import etree

from engine.diagram import DiagramError, render_svg, wrap_text

SVG = "http://www.w3.org/2000/svg"
NS = {"svg": SVG}

HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI"
    xmlns:dc="http://www.omg.org/spec/DD/20100524/DC"
    xmlns:di="http://www.omg.org/spec/DD/20100524/DI"
    id="Defs_1" targetNamespace="http://salesflow.example/bpmn">
"""

PROCESS = """
  <bpmn:process id="Order" name="Order" isExecutable="true">
    <bpmn:laneSet id="LaneSet_1">
      <bpmn:lane id="Lane_sales" name="销售部 Sales">
        <bpmn:flowNodeRef>Start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>Approve</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>Check</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>Timeout</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>End</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>Reject</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="Start" name="收到订单"/>
    <bpmn:userTask id="Approve" name="销售经理审批订单并确认价格和交货期限"/>
    <bpmn:exclusiveGateway id="Check" name="Amount &lt; 1000 &amp; &quot;ok&quot;?" default="Flow_no"/>
    <bpmn:boundaryEvent id="Timeout" name="3 days" attachedToRef="Approve" cancelActivity="false">
      <bpmn:timerEventDefinition id="TimerDef"><bpmn:timeDuration>P3D</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:serviceTask id="Reject" name="Reject &lt;order&gt;"/>
    <bpmn:endEvent id="End" name="完成"/>
    <bpmn:sequenceFlow id="Flow_1" sourceRef="Start" targetRef="Approve"/>
    <bpmn:sequenceFlow id="Flow_2" sourceRef="Approve" targetRef="Check"/>
    <bpmn:sequenceFlow id="Flow_yes" name="yes &amp; &lt;approved&gt;" sourceRef="Check" targetRef="End">
      <bpmn:conditionExpression>${approved}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="Flow_no" name="no" sourceRef="Check" targetRef="Reject"/>
    <bpmn:sequenceFlow id="Flow_t" sourceRef="Timeout" targetRef="Reject"/>
    <bpmn:textAnnotation id="Note"><bpmn:text>Needs &lt;manager&gt; sign-off</bpmn:text></bpmn:textAnnotation>
    <bpmn:association id="Assoc" sourceRef="Approve" targetRef="Note"/>
  </bpmn:process>
"""

SHAPES = """
      <bpmndi:BPMNShape id="Lane_sales_di" bpmnElement="Lane_sales" isHorizontal="true">
        <dc:Bounds x="130" y="60" width="720" height="300"/>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Start_di" bpmnElement="Start">
        <dc:Bounds x="182" y="182" width="36" height="36"/>
        <bpmndi:BPMNLabel><dc:Bounds x="176" y="225" width="48" height="14"/></bpmndi:BPMNLabel>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Approve_di" bpmnElement="Approve">
        <dc:Bounds x="270" y="160" width="100" height="80"/>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Check_di" bpmnElement="Check" isMarkerVisible="true">
        <dc:Bounds x="425" y="175" width="50" height="50"/>
        <bpmndi:BPMNLabel><dc:Bounds x="410" y="140" width="80" height="27"/></bpmndi:BPMNLabel>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Reject_di" bpmnElement="Reject">
        <dc:Bounds x="530" y="270" width="100" height="80"/>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="End_di" bpmnElement="End">
        <dc:Bounds x="562" y="182" width="36" height="36"/>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Timeout_di" bpmnElement="Timeout">
        <dc:Bounds x="302" y="222" width="36" height="36"/>
        <bpmndi:BPMNLabel><dc:Bounds x="345" y="265" width="33" height="14"/></bpmndi:BPMNLabel>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Note_di" bpmnElement="Note">
        <dc:Bounds x="700" y="80" width="120" height="40"/>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNEdge id="Flow_1_di" bpmnElement="Flow_1">
        <di:waypoint x="218" y="200"/><di:waypoint x="270" y="200"/>
      </bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="Flow_2_di" bpmnElement="Flow_2">
        <di:waypoint x="370" y="200"/><di:waypoint x="425" y="200"/>
      </bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="Flow_yes_di" bpmnElement="Flow_yes">
        <di:waypoint x="475" y="200"/><di:waypoint x="562" y="200"/>
        <bpmndi:BPMNLabel><dc:Bounds x="490" y="182" width="60" height="14"/></bpmndi:BPMNLabel>
      </bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="Flow_no_di" bpmnElement="Flow_no">
        <di:waypoint x="450" y="225"/><di:waypoint x="450" y="310"/><di:waypoint x="530" y="310"/>
      </bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="Flow_t_di" bpmnElement="Flow_t">
        <di:waypoint x="320" y="258"/><di:waypoint x="320" y="330"/><di:waypoint x="530" y="330"/>
      </bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="Assoc_di" bpmnElement="Assoc">
        <di:waypoint x="370" y="170"/><di:waypoint x="700" y="100"/>
      </bpmndi:BPMNEdge>
"""

PROCESS_XML = (HEADER + PROCESS + """
  <bpmndi:BPMNDiagram id="Diagram_1">
    <bpmndi:BPMNPlane id="Plane_1" bpmnElement="Order">""" + SHAPES + """
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>""")

COLLAB_XML = (HEADER + """
  <bpmn:collaboration id="Collab_1">
    <bpmn:participant id="Pool_sales" name="SalesFlow &amp; Co" processRef="Order"/>
    <bpmn:participant id="Pool_customer" name="Customer"/>
    <bpmn:messageFlow id="Msg_1" sourceRef="Pool_customer" targetRef="Start"/>
  </bpmn:collaboration>
""" + PROCESS + """
  <bpmndi:BPMNDiagram id="Diagram_1">
    <bpmndi:BPMNPlane id="Plane_1" bpmnElement="Collab_1">
      <bpmndi:BPMNShape id="Pool_sales_di" bpmnElement="Pool_sales" isHorizontal="true">
        <dc:Bounds x="100" y="60" width="750" height="300"/>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Pool_customer_di" bpmnElement="Pool_customer" isHorizontal="true">
        <dc:Bounds x="100" y="-100" width="750" height="80"/>
      </bpmndi:BPMNShape>
      <bpmndi:BPMNEdge id="Msg_1_di" bpmnElement="Msg_1">
        <di:waypoint x="200" y="-20"/><di:waypoint x="200" y="182"/>
      </bpmndi:BPMNEdge>""" + SHAPES + """
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>""")

NODE_IDS = ["Lane_sales", "Start", "Approve", "Check", "Reject", "End", "Timeout", "Note"]
FLOW_IDS = ["Flow_1", "Flow_2", "Flow_yes", "Flow_no", "Flow_t", "Assoc"]


def parse(svg: str):
    root = etree.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{{{SVG}}}svg"
    return root


def groups(root):
    return {g.get("data-element-id"): g for g in root.iterfind(".//svg:g[@data-element-id]", NS)}


def classes(el):
    return set((el.get("class") or "").split())


def all_text(el):
    """Text of an element, wrapped lines re-joined with a space (CJK lines joined directly)."""
    lines = [t for t in el.itertext() if t.strip()]
    out = ""
    for line in lines:
        out += line if not out or ord(out[-1]) > 0x2E80 or ord(line[0]) > 0x2E80 else " " + line
    return out


def test_output_is_svg_with_every_element():
    svg = render_svg(PROCESS_XML, "Order")
    assert 'xmlns="http://www.w3.org/2000/svg"' in svg
    root = parse(svg)
    found = groups(root)
    for eid in NODE_IDS + FLOW_IDS:
        assert eid in found, eid
    assert "userTask" in classes(found["Approve"])
    assert found["Approve"].find("svg:rect", NS).get("rx")  # rounded
    # sequence flows are polylines with an arrowhead; the default flow gets the slash marker
    line = found["Flow_1"].find("svg:polyline", NS)
    assert line.get("points") == "218,200 270,200"
    assert line.get("marker-end") == "url(#arrow)"
    assert found["Flow_no"].find("svg:polyline", NS).get("marker-start") == "url(#default-slash)"
    assert "stroke-dasharray" in found["Assoc"].find("svg:polyline", NS).attrib
    # markers referenced are defined
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    for url in re.findall(r"url\(#([\w-]+)\)", svg):
        assert url in ids


def test_shapes_per_kind():
    found = groups(parse(render_svg(PROCESS_XML, "Order")))
    # boundary timer: double circle, dashed (non-interrupting), plus a clock glyph
    circles = found["Timeout"].findall("svg:circle", NS)
    assert len(circles) >= 3
    assert circles[0].get("stroke-dasharray")
    # end event has a thicker border than start event
    start_w = float(found["Start"].find("svg:circle", NS).get("stroke-width"))
    end_w = float(found["End"].find("svg:circle", NS).get("stroke-width"))
    assert end_w > start_w
    # gateway is a diamond with an X marker
    paths = found["Check"].findall("svg:path", NS)
    assert len(paths) == 2
    # lane name is written vertically
    lane_text = found["Lane_sales"].find("svg:text", NS)
    assert "rotate(-90" in lane_text.get("transform")
    assert all_text(lane_text) == "销售部 Sales"


def test_highlight_classes():
    svg = render_svg(PROCESS_XML, "Order", active=["Approve"], completed=["Start", "Flow_1"])
    found = groups(parse(svg))
    assert "active" in classes(found["Approve"])
    assert found["Approve"].find("svg:rect", NS).get("stroke") == "#f57c00"
    assert "completed" in classes(found["Start"]) and "completed" in classes(found["Flow_1"])
    assert found["Flow_1"].find("svg:polyline", NS).get("marker-end") == "url(#arrow-completed)"
    for eid in ("End", "Check", "Reject"):
        assert not classes(found[eid]) & {"active", "completed"}
    # active wins over completed
    found = groups(parse(render_svg(PROCESS_XML, "Order", active={"Approve"}, completed={"Approve"})))
    assert "active" in classes(found["Approve"]) and "completed" not in classes(found["Approve"])


def test_text_is_escaped():
    svg = render_svg(PROCESS_XML, "Order")
    found = groups(parse(svg))
    assert all_text(found["Reject"]) == "Reject <order>"
    assert "&lt;order&gt;" in svg and "<order>" not in svg
    assert all_text(found["Check"]) == 'Amount < 1000 & "ok"?'
    assert all_text(found["Flow_yes"]) == "yes & <approved>"
    assert all_text(found["Note"]) == "Needs <manager> sign-off"


def test_titles_override_and_chinese_wrapping():
    class Lazy:  # stands in for a lazy gettext string
        def __str__(self):
            return "Done"

    svg = render_svg(PROCESS_XML, "Order", titles={"Approve": "Manager <approval>", "End": Lazy()})
    found = groups(parse(svg))
    assert all_text(found["Approve"]) == "Manager <approval>"
    assert all_text(found["End"]) == "Done"
    assert all_text(found["Start"]) == "收到订单"  # no override: the name attribute
    found = groups(parse(render_svg(PROCESS_XML, "Order")))
    lines = [t.text for t in found["Approve"].iterfind(".//svg:tspan", NS)]
    assert len(lines) > 1  # long Chinese name is wrapped inside the 100px task
    assert "".join(lines) == "销售经理审批订单并确认价格和交货期限"


def test_wrap_text_counts_cjk_double():
    assert wrap_text("abcd efgh", 4) == ["abcd", "efgh"]
    assert wrap_text("审批订单", 4) == ["审批", "订单"]
    assert wrap_text("ab审批", 4) == ["ab审", "批"]
    assert wrap_text("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def _viewbox(root):
    x, y, w, h = (float(v) for v in root.get("viewBox").split())
    return x, y, x + w, y + h


def _diagram_coords(xml):
    root = etree.fromstring(xml.encode("utf-8"))
    pts = []
    for b in root.iter("{http://www.omg.org/spec/DD/20100524/DC}Bounds"):
        x, y, w, h = (float(b.get(k)) for k in ("x", "y", "width", "height"))
        pts += [(x, y), (x + w, y + h)]
    for wp in root.iter("{http://www.omg.org/spec/DD/20100524/DI}waypoint"):
        pts.append((float(wp.get("x")), float(wp.get("y"))))
    return pts


@pytest.mark.parametrize("xml", [PROCESS_XML, COLLAB_XML], ids=["process", "collaboration"])
def test_viewbox_covers_all_bounds(xml):
    root = parse(render_svg(xml, "Order"))
    x0, y0, x1, y1 = _viewbox(root)
    for px, py in _diagram_coords(xml):
        assert x0 < px < x1 and y0 < py < y1
    assert float(root.get("width")) >= x1 - x0 and float(root.get("height")) >= y1 - y0


def test_collaboration_draws_pools_and_lanes():
    svg = render_svg(COLLAB_XML, "Order", active={"Approve"})
    root = parse(svg)
    found = groups(root)
    for eid in NODE_IDS + FLOW_IDS + ["Pool_sales", "Pool_customer", "Msg_1"]:
        assert eid in found, eid
    assert all_text(found["Pool_sales"]) == "SalesFlow & Co"
    assert "rotate(-90" in found["Pool_sales"].find("svg:text", NS).get("transform")
    assert found["Msg_1"].find("svg:polyline", NS).get("stroke-dasharray")
    assert "active" in classes(found["Approve"])
    # pools are drawn first, lanes next, so flow nodes are painted on top
    order = [g.get("data-element-id") for g in root.iterfind("svg:g", NS)]
    assert order.index("Pool_sales") < order.index("Lane_sales") < order.index("Approve")
    assert order.index("Approve") < order.index("Timeout")  # boundary event over its task


def test_accepts_bytes_and_str_with_declaration():
    a = render_svg(PROCESS_XML, "Order")
    b = render_svg(PROCESS_XML.encode("utf-8"), "Order")
    assert a == b


def test_missing_process_raises():
    with pytest.raises(DiagramError):
        render_svg(PROCESS_XML, "NoSuchProcess")
    # a process that exists but has no diagram
    xml = HEADER + '<bpmn:process id="Other"/>' + PROCESS_XML[len(HEADER):]
    with pytest.raises(DiagramError):
        render_svg(xml, "Other")


@pytest.mark.parametrize("xml", [
    "<html><body>hello</body></html>",
    b"not xml at all",
    "",
    '<svg xmlns="http://www.w3.org/2000/svg"/>',
])
def test_non_bpmn_raises(xml):
    with pytest.raises(DiagramError):
        render_svg(xml, "Order")
    assert issubclass(DiagramError, ValueError)


def test_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    xml = PROCESS_XML.replace(
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file://{secret}">]>',
    ).replace("<bpmn:text>Needs &lt;manager&gt; sign-off</bpmn:text>", "<bpmn:text>&xxe;</bpmn:text>")
    try:
        svg = render_svg(xml, "Order")
    except DiagramError:
        return
    assert "TOP-SECRET-VALUE" not in svg
