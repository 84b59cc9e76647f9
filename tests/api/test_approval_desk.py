"""The approval desk through the JSON API (CONTRACT "Approval semantics", "Return to a step",
"Transfer, add signer", "CC, urge, comments"): every verb and every refusal."""
from __future__ import annotations

from sqlalchemy import select

from engine.models import BudgetEntry, Notification, User
from tests.helpers import APPROVE, BIG, CLAIM, events, names


def ret(comment="请补充", **extra):
    return {"decision": "return", "comment": comment, **extra}


def notifications(engine, username, kind=None):
    with engine.db.read() as s:
        uid = s.scalar(select(User.id).where(User.username == username))
        rows = s.scalars(select(Notification).where(Notification.user_id == uid)).all()
        return [(n.kind, n.instance_id) for n in rows if kind is None or n.kind == kind]


def through_to_finance(api):
    inst = api.start("alice", "expense_approval", BIG)
    inst = api.complete("dave", api.open_task(inst, "manager_approval")["id"], APPROVE)["instance"]
    inst = api.complete("frank", api.open_task(inst, "director_approval")["id"], APPROVE)["instance"]
    inst = api.complete("judy", api.open_task(inst, "gm_approval")["id"], APPROVE)["instance"]
    return inst, api.open_task(inst, "finance_approval")


# ---------------------------------------------------------------- return to a step
def test_return_targets_are_the_earlier_steps_oldest_first(api):
    inst, finance = through_to_finance(api)
    task = api.get("heidi", f"/tasks/{finance['id']}").get_json()
    assert [(t["name"], t["assignee"]) for t in task["return_targets"]] == [
        ("submit_claim", "alice"), ("manager_approval", "dave"), ("director_approval", "frank"),
        ("gm_approval", "judy")]
    assert task["return_targets"][1]["title"] == "直属经理审批"
    # the manager's task offers only the submitter's step
    inst2 = api.start("bob", "expense_approval", CLAIM)
    first = api.get("dave", f"/tasks/{api.open_task(inst2, 'manager_approval')['id']}").get_json()
    assert [t["name"] for t in first["return_targets"]] == ["submit_claim"]


def test_return_to_an_earlier_approver_resumes_with_them_and_later_steps_run_again(api, engine):
    inst, finance = through_to_finance(api)
    r = api.post("heidi", f"/tasks/{finance['id']}/complete",
                 json={"data": ret("发票抬头不对，请经理复核", return_to="manager_approval")})
    assert r.status_code == 200, r.get_json()
    inst = r.get_json()["instance"]
    again = api.open_task(inst, "manager_approval")
    assert again["assignee"] == "dave" and names(inst) == ["manager_approval"]
    detail = api.get("dave", f"/tasks/{again['id']}").get_json()
    assert detail["returned"]["by"] == "heidi" and detail["returned"]["comment"] == "发票抬头不对，请经理复核"
    assert ("returned", inst["id"]) in notifications(engine, "dave", "returned")
    assert events(inst, "returned_to")[0]["task"] == "manager_approval"
    # every later step runs again: the director, then finance
    inst = api.complete("dave", again["id"], APPROVE)["instance"]
    inst = api.complete("frank", api.open_task(inst, "director_approval")["id"], APPROVE)["instance"]
    inst = api.complete("judy", api.open_task(inst, "gm_approval")["id"], APPROVE)["instance"]
    inst = api.complete("heidi", api.open_task(inst, "finance_approval")["id"], APPROVE)["instance"]
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "approved"
    # 已办 keeps both of dave's decisions
    assert [h["actor"] for h in events(inst, "approved")].count("dave") == 2


def test_return_to_a_step_not_offered_is_422_and_changes_nothing(api):
    inst, finance = through_to_finance(api)
    for target in ("finance_approval", "revise_claim", "nonsense"):
        r = api.post("heidi", f"/tasks/{finance['id']}/complete", json={"data": ret(return_to=target)})
        assert r.status_code == 422 and "return_to" in r.get_json()["errors"], target
    r = api.post("heidi", f"/tasks/{finance['id']}/complete", json={"data": {**APPROVE, "return_to": "submit_claim"}})
    assert r.status_code == 422 and "return_to" in r.get_json()["errors"]
    assert names(api.instance("alice", inst["id"])) == ["finance_approval"]


def test_return_to_the_submitters_step_is_the_revision(api):
    inst, finance = through_to_finance(api)
    inst = api.complete("heidi", finance["id"], ret("金额有误", return_to="submit_claim"))["instance"]
    revise = api.open_task(inst, "revise_claim")
    assert revise["assignee"] == "alice"
    assert api.get("alice", f"/tasks/{revise['id']}").get_json()["returned"]["comment"] == "金额有误"


def test_director_returns_a_major_contract_to_the_manager_review_the_parallel_step_runs_again(api):
    data = {"customer": "华东机电", "amount": 800000, "payment_terms": "standard",
            "customer_has_credit_record": True, "summary": "年度框架协议"}
    inst = api.start("alice", "contract_review")
    inst = api.complete("alice", api.open_task(inst, "submit_contract")["id"], data)["instance"]
    inst = api.complete("grace", api.open_task(inst, "legal_review_task")["id"], APPROVE)["instance"]
    inst = api.complete("dave", api.open_task(inst, "manager_review_task")["id"], APPROVE)["instance"]
    director = api.get("frank", f"/tasks/{api.open_task(inst, 'director_review_task')['id']}").get_json()
    assert [t["name"] for t in director["return_targets"]] == [
        "submit_contract", "legal_review_task", "manager_review_task"]
    inst = api.complete("frank", director["id"], ret("付款节点需经理确认", return_to="manager_review_task"))["instance"]
    tasks = {t["name"]: t for t in inst["tasks"]}
    assert set(tasks) == {"legal_review_task", "manager_review_task"}
    assert tasks["manager_review_task"]["assignee"] == "dave" and tasks["legal_review_task"]["assignee"] == "grace"
    inst = api.complete("grace", tasks["legal_review_task"]["id"], APPROVE)["instance"]
    inst = api.complete("dave", tasks["manager_review_task"]["id"], APPROVE)["instance"]
    assert names(inst) == ["director_review_task"]
    inst = api.complete("frank", api.open_task(inst, "director_review_task")["id"], APPROVE)["instance"]
    assert inst["data"]["outcome"] == "approved"


# ---------------------------------------------------------------- separation of duties
def test_a_transferred_step_never_makes_a_later_step_auto_approve(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    assert api.post("dave", f"/tasks/{task['id']}/delegate", json={"to": "heidi"}).status_code == 200
    inst = api.complete("heidi", task["id"], APPROVE)["instance"]
    finance = api.open_task(inst, "finance_approval")  # heidi must sign again, as finance
    assert finance["assignee"] == "heidi" and not events(inst, "auto_approved")
    # the natural owner of two steps in a row is still not asked twice
    inst = api.start("dave", "expense_approval", {**BIG})  # dave's manager is frank, then the director frank
    inst = api.complete("frank", api.open_task(inst, "manager_approval")["id"], APPROVE)["instance"]
    assert [e["task"] for e in events(inst, "auto_approved")] == ["director_approval"]


def test_appeals_never_go_to_the_appellant(api):
    from tests.api.test_appraisal_api import SELF, TALK, evaluation, step, appraisal, by_name
    for employee, expected in (("frank", {"director_appeal_decision": "judy"}),
                               ("ivan", {"hr_appeal_review": "judy"})):
        starter = "ivan" if employee != "ivan" else "ivan"
        inst = api.start(starter, "performance_appraisal", appraisal(employee=employee))
        inst = step(api, inst, "self_evaluation", employee, SELF)
        inst = step(api, inst, "manager_evaluation", "judy", evaluation(85))
        inst = step(api, inst, "result_talk", "judy", TALK)
        inst = step(api, inst, "employee_decision", employee, {"decision": "appeal", "reason": "统计遗漏"})
        if employee == "ivan":
            task = by_name(inst)["hr_appeal_review"]
            assert task["assignee"] == expected["hr_appeal_review"]
        else:
            inst = step(api, inst, "hr_appeal_review", "ivan",
                        {"decision": "uphold", "comment": "维持"})
            assert by_name(inst)["director_appeal_decision"]["assignee"] == "judy"


def test_the_subject_of_a_lead_may_withdraw_it(api):
    inst = api.start("dave", "lead_to_aftersales", {"company": "华东机电", "contact": "王经理", "source": "web",
                                                     "rep": "alice"})
    assert api.post("bob", f"/instances/{inst['id']}/withdraw").status_code == 404  # may not even see it
    assert api.post("frank", f"/instances/{inst['id']}/withdraw").status_code == 403  # sees it, is neither
    r = api.post("alice", f"/instances/{inst['id']}/withdraw")
    assert r.status_code == 200 and r.get_json()["data"]["outcome"] == "withdrawn"


# ---------------------------------------------------------------- budgets
def test_two_claims_in_flight_cannot_both_skip_the_special_approval(api, engine):
    eight = {**CLAIM, "amount": 8000}
    first = api.start("alice", "expense_approval", eight)
    second = api.start("bob", "expense_approval", eight)
    first = api.complete("dave", api.open_task(first, "manager_approval")["id"], APPROVE)["instance"]
    second = api.complete("dave", api.open_task(second, "manager_approval")["id"], APPROVE)["instance"]
    assert names(first) == ["finance_approval"]
    assert names(second) == ["gm_approval"]  # ¥10,000 − ¥8,000 reserved < ¥8,000
    with engine.db.read() as s:
        kinds = sorted((e.instance_id, e.kind) for e in s.scalars(select(BudgetEntry)))
    assert kinds == [(first["id"], "reserved"), (second["id"], "reserved")]
    # reject releases the reservation, approval turns it into spending
    api.complete("judy", api.open_task(second, "gm_approval")["id"], {"decision": "reject", "comment": "超预算"})
    api.complete("heidi", api.open_task(first, "finance_approval")["id"], APPROVE)
    with engine.db.read() as s:
        kinds = sorted((e.instance_id, e.kind) for e in s.scalars(select(BudgetEntry)))
    assert kinds == [(first["id"], "spent")]
    third = api.start("alice", "expense_approval", {**CLAIM, "amount": 2000})
    third = api.complete("dave", api.open_task(third, "manager_approval")["id"], APPROVE)["instance"]
    assert names(third) == ["finance_approval"]  # 10,000 − 8,000 spent leaves exactly 2,000


def test_return_and_withdraw_release_the_reservation(api, engine):
    inst = api.start("alice", "expense_approval", {**CLAIM, "amount": 9000})
    api.complete("dave", api.open_task(inst, "manager_approval")["id"], ret())
    with engine.db.read() as s:
        assert s.scalars(select(BudgetEntry)).all() == []
    inst = api.instance("alice", inst["id"])
    api.complete("alice", api.open_task(inst, "revise_claim")["id"], {**CLAIM, "amount": 9000})
    with engine.db.read() as s:
        assert [e.kind for e in s.scalars(select(BudgetEntry))] == ["reserved"]  # a resubmission reserves again
    assert api.post("alice", f"/instances/{inst['id']}/withdraw").status_code == 200
    with engine.db.read() as s:
        assert s.scalars(select(BudgetEntry)).all() == []


def test_a_claim_needing_special_approval_is_copied_to_the_managers_manager(api, engine):
    inst = api.start("alice", "expense_approval", {**CLAIM, "amount": 12000})
    inst = api.complete("dave", api.open_task(inst, "manager_approval")["id"], APPROVE)["instance"]
    inst = api.complete("judy", api.open_task(inst, "gm_approval")["id"], APPROVE)["instance"]
    inst = api.complete("heidi", api.open_task(inst, "finance_approval")["id"], APPROVE)["instance"]
    assert inst["data"]["outcome"] == "approved" and inst["copied_to"] == ["frank"]
    assert events(inst, "copied")[0]["detail"]["automatic"] is True
    assert ("cc", inst["id"]) in notifications(engine, "frank", "cc")
    small = api.start("alice", "expense_approval", {**CLAIM, "category": "communication"})
    small = api.complete("dave", api.open_task(small, "manager_approval")["id"], APPROVE)["instance"]
    small = api.complete("heidi", api.open_task(small, "finance_approval")["id"], APPROVE)["instance"]
    assert small["copied_to"] == []


# ---------------------------------------------------------------- add signer
def add(api, user, task, users, mode, comment="请一并审核"):
    return api.post(user, f"/tasks/{task['id']}/add-signer", json={"users": users, "mode": mode, "comment": comment})


def test_add_signer_before_comes_back_to_the_owner(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    r = add(api, "dave", task, ["frank"], "before")
    assert r.status_code == 200, r.get_json()
    assert api.get("dave", "/tasks").get_json() == []  # dave's step waits
    signer = api.get("frank", "/tasks").get_json()[0]
    assert signer["name"] == "manager_approval" and signer["signs_for"] == task["id"]
    detail = api.get("frank", f"/tasks/{signer['id']}").get_json()
    assert detail["signer"]["mode"] == "before" and detail["signer"]["added_by"] == "dave"
    assert api.post("dave", f"/tasks/{task['id']}/complete", json={"data": APPROVE}).status_code == 409
    inst = api.complete("frank", signer["id"], APPROVE)["instance"]
    assert [t["id"] for t in api.get("dave", "/tasks").get_json()] == [task["id"]]  # back to dave
    inst = api.complete("dave", task["id"], APPROVE)["instance"]
    assert names(inst) == ["finance_approval"]
    assert [e["actor"] for e in events(inst, "approved")] == ["frank", "dave"]


def test_add_signer_after_holds_the_owners_approval(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    assert add(api, "dave", task, ["frank", "heidi"], "after").status_code == 200
    inst = api.complete("dave", task["id"], APPROVE)["instance"]
    assert names(inst) == ["manager_approval", "manager_approval"]  # the two signers' tasks; dave's is held
    assert api.get("dave", f"/tasks/{task['id']}").get_json()["status"] == "completed"
    frank = api.get("frank", "/tasks").get_json()[0]
    heidi = next(t for t in api.get("heidi", "/tasks").get_json() if t.get("signs_for") == task["id"])
    inst = api.complete("frank", frank["id"], APPROVE)["instance"]
    assert "finance_approval" not in names(inst)
    inst = api.complete("heidi", heidi["id"], APPROVE)["instance"]
    assert names(inst) == ["finance_approval"]
    assert inst["data"]["manager_review"]["by"] == "dave"


def test_add_signer_parallel_waits_for_everyone_and_a_signers_return_ends_the_step(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    assert add(api, "dave", task, ["frank"], "parallel").status_code == 200
    frank = api.get("frank", "/tasks").get_json()[0]
    inst = api.complete("frank", frank["id"], APPROVE)["instance"]
    assert names(inst) == ["manager_approval"]  # still dave's
    inst = api.complete("dave", task["id"], APPROVE)["instance"]
    assert names(inst) == ["finance_approval"]

    inst = api.start("bob", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    assert add(api, "dave", task, ["frank"], "parallel").status_code == 200
    frank = api.get("frank", "/tasks").get_json()[0]
    inst = api.complete("frank", frank["id"], ret("票据不全"))["instance"]
    assert names(inst) == ["revise_claim"]  # the signer's return acts for the whole step
    assert api.get("dave", "/tasks").get_json() == []
    assert api.get("dave", f"/tasks/{task['id']}").get_json()["status"] == "cancelled"


def test_add_signer_refusals(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    for users, mode, field in ((["alice"], "before", "users"), (["admin"], "after", "users"),
                               (["bob"], "parallel", "users"), (["nobody"], "before", "users"),
                               ([], "before", "users"), ([f"u{i}" for i in range(11)], "before", "users"),
                               (["frank", "frank"], "before", "users"), (["dave"], "before", "users"),
                               (["frank"], "sideways", "mode"), ("frank", "before", "users")):
        r = add(api, "dave", task, users, mode)
        assert r.status_code == 422 and field in r.get_json()["errors"], (users, mode, r.get_json())
    r = add(api, "dave", task, ["alice", "frank"], "before")
    assert "alice" in r.get_json()["errors"]["users"] and "frank" not in r.get_json()["errors"]["users"]
    assert add(api, "erin", task, ["frank"], "before").status_code == 403
    assert add(api, "bob", task, ["frank"], "before").status_code == 403
    assert api.post("dave", f"/tasks/{task['id']}/add-signer", json=None).status_code == 422
    assert names(api.instance("alice", inst["id"])) == ["manager_approval"]


# ---------------------------------------------------------------- CC, urge, comments
def test_cc_lets_people_read_and_comment_but_decide_nothing(api, engine):
    inst = api.start("alice", "expense_approval", CLAIM)
    assert api.get("carol", f"/instances/{inst['id']}").status_code == 404
    r = api.post("alice", f"/instances/{inst['id']}/cc", json={"users": ["carol"], "comment": "供参考"})
    assert r.status_code == 200 and r.get_json()["copied_to"] == ["carol"]
    assert api.get("carol", f"/instances/{inst['id']}").status_code == 200
    assert ("cc", inst["id"]) in notifications(engine, "carol", "cc")
    task = api.open_task(inst, "manager_approval")
    assert api.post("carol", f"/tasks/{task['id']}/complete", json={"data": APPROVE}).status_code == 403
    assert api.post("carol", f"/instances/{inst['id']}/comments", json={"text": "已阅"}).status_code == 201
    # refusals
    assert api.post("bob", f"/instances/{inst['id']}/cc", json={"users": ["erin"]}).status_code == 404
    for body in ({"users": []}, {"users": ["nobody"]}, {"users": "carol"}, {"users": ["alice"]}, {}):
        r = api.post("alice", f"/instances/{inst['id']}/cc", json=body)
        assert r.status_code == 422 and "users" in r.get_json()["errors"], body


def test_urge_notifies_the_owners_once_an_hour(api, engine):
    inst = api.start("alice", "expense_approval", CLAIM)
    r = api.post("alice", f"/instances/{inst['id']}/urge", json={"comment": "请尽快"})
    assert r.status_code == 200 and r.get_json() == {"notified": ["dave"]}
    assert ("urge", inst["id"]) in notifications(engine, "dave", "urge")
    r = api.post("alice", f"/instances/{inst['id']}/urge", json={})
    assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 3600
    assert api.post("dave", f"/instances/{inst['id']}/urge", json={}).status_code == 403
    assert api.post("bob", f"/instances/{inst['id']}/urge", json={}).status_code == 404
    # a claim pool is urged as a whole
    inst = api.start("bob", "expense_approval", CLAIM)
    inst = api.complete("dave", api.open_task(inst, "manager_approval")["id"], APPROVE)["instance"]
    assert api.post("bob", f"/instances/{inst['id']}/urge").get_json() == {"notified": ["heidi"]}


def test_comments_thread_with_mentions(api, engine):
    inst = api.start("alice", "expense_approval", CLAIM)
    r = api.post("alice", f"/instances/{inst['id']}/comments", json={"text": "@dave 发票已补，@carol 请看"})
    assert r.status_code == 201
    body = r.get_json()
    assert body["author"] == "alice" and body["attachments"] == [] and body["at"]
    assert ("mention", inst["id"]) in notifications(engine, "dave", "mention")
    assert notifications(engine, "carol", "mention") == []  # carol cannot see the claim: not told
    r = api.post("dave", f"/instances/{inst['id']}/comments", json={"text": "收到"})
    thread = api.get("alice", f"/instances/{inst['id']}/comments").get_json()
    assert [(c["author"], c["text"]) for c in thread] == [("alice", "@dave 发票已补，@carol 请看"), ("dave", "收到")]
    for body in ({"text": ""}, {"text": "   "}, {"text": 5}, {}, {"text": "x" * 5001},
                 {"text": "见附件", "attachments": ["no-such-file"]}):
        r = api.post("alice", f"/instances/{inst['id']}/comments", json=body)
        assert r.status_code == 422, body
    assert api.get("bob", f"/instances/{inst['id']}/comments").status_code == 404
    assert api.post("bob", f"/instances/{inst['id']}/comments", json={"text": "hi"}).status_code == 404
    assert api.get("alice", "/instances/999/comments").status_code == 404


def test_bulk_complete_each_task_its_own_transaction(api):
    a = api.start("alice", "expense_approval", CLAIM)
    b = api.start("bob", "expense_approval", CLAIM)
    c = api.start("carol", "expense_approval", CLAIM)  # erin's, not dave's
    ids = [api.open_task(i, "manager_approval")["id"] for i in (a, b, c)] + ["00000000-0000-0000-0000-000000000000"]
    r = api.post("dave", "/tasks/bulk-complete", json={"ids": ids, "data": APPROVE})
    assert r.status_code == 200
    assert [x["status"] for x in r.get_json()["results"]] == [200, 200, 403, 404]
    r = api.post("dave", "/tasks/bulk-complete", json={"ids": ids[:1], "data": APPROVE})
    assert r.get_json()["results"][0]["status"] == 409
    r = api.post("erin", "/tasks/bulk-complete", json={"ids": ids[2:3], "data": {"decision": "reject"}})
    assert r.get_json()["results"][0]["status"] == 422
    for body in ({"ids": [], "data": APPROVE}, {"ids": ["x"] * 101, "data": APPROVE}, {"ids": "x"}):
        assert api.post("dave", "/tasks/bulk-complete", json=body).status_code == 422
