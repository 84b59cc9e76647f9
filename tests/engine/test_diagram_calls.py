"""The diagram of a lead inside its contract review: the calling step is highlighted and links to the
called process, whose own diagram shows the open review step; labels follow the language asked for."""
from __future__ import annotations

from lxml import etree

from tests.engine.test_lead import LEAD, STEPS

SVG = "{http://www.w3.org/2000/svg}"


def classes(svg: str, element_id: str) -> str:
    root = etree.fromstring(svg.encode())
    g = root.find(f".//{SVG}g[@data-element-id='{element_id}']")
    return g.get("class") if g is not None else ""


def test_a_lead_in_contract_review_highlights_the_call_and_opens_the_called_process(engine):
    iid = engine.start("lead_to_aftersales", "alice", LEAD)["id"]
    for name, user, data in STEPS[:6]:  # up to the submitted contract: the manager reviews it
        [task] = engine.tasks(user, instance_id=iid)
        engine.complete(task["id"], user, data)
    svg = engine.diagram(iid, "alice", "en", link=lambda pid: f"/instances/{iid}?process={pid}")
    assert "active" in classes(svg, "contract_review_call")
    assert f'href="/instances/{iid}?process=contract_review"' in svg
    text = " ".join(etree.fromstring(svg.encode()).itertext())
    assert "Sales rep" in text and "Qualified" in text and "Operations" in text  # lanes, gateways in English
    called = engine.called_processes(iid, "alice")
    assert {c["id"] for c in called} >= {"contract_review"}
    inner = engine.diagram(iid, "alice", "zh", process="contract_review")
    assert "active" in classes(inner, "contract_review_round_call")
    assert "active" in classes(inner, "manager_review_task")
    assert "提交人" in inner and "Submitter" not in "".join(etree.fromstring(inner.encode()).itertext())
