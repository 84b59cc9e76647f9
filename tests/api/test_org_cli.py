"""`salesflow org import|export`, `user add|set-password`, `region add`: all or nothing, every bad
line reported (line number, field, why), never a half-imported company."""
from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select

from engine.models import AuditEvent, User
from webui.cli import main as salesflow_main

HEADER = "username,display_name,email,roles,region,manager,active\n"


def run(*args, input=None):
    return CliRunner().invoke(salesflow_main, list(args), input=input)


def user_count(engine):
    with engine.db.read() as s:
        return s.scalar(select(func.count()).select_from(User))


def test_import_creates_changes_and_keeps(cli, engine, tmp_path, api):
    path = tmp_path / "company.csv"
    path.write_text(HEADER +
                    "nina,Nina 倪娜,nina@corp.example,sales_manager,north,frank,true\n"
                    "oliver,Oliver 欧,,sales_rep;operations,north,nina,true\n"  # his manager comes in the same file
                    "alice,Alice 艾丽斯,alice@salesflow.example,sales_rep,east,dave,true\n"  # unchanged
                    "carol,Carol 曹卡罗,carol@salesflow.example,sales_rep,north,nina,true\n",  # new manager
                    encoding="utf-8")
    out = cli("org", "import", str(path))
    assert "2 created, 1 changed, 1 unchanged" in out
    users = {u["username"]: u for u in api.get("admin", "/admin/users").get_json()}
    assert users["oliver"] == {"username": "oliver", "display_name": "Oliver 欧", "email": None,
                               "roles": ["operations", "sales_rep"], "region": "north", "manager": "nina",
                               "active": True}
    assert users["carol"]["manager"] == "nina"
    # the next claim of carol goes to her new manager
    assert api.open_task(api.start("carol", "expense_approval", {
        "category": "travel", "amount": 100, "incurred_on": "2026-11-02", "description": "出租车"}),
        "manager_approval")["assignee"] == "nina"
    assert "0 created, 0 changed, 4 unchanged" in cli("org", "import", str(path))  # idempotent
    with engine.db.read() as s:
        sources = set(s.scalars(select(AuditEvent.source).where(AuditEvent.entity == "user")))
    assert sources == {"import"}


def test_export_round_trips(cli, tmp_path):
    exported = cli("org", "export")
    lines = exported.splitlines()
    assert lines[0] == HEADER.strip()
    assert "alice,Alice 艾丽斯,alice@salesflow.example,sales_rep,east,dave,true" in lines
    assert "judy,Judy 朱总,judy@salesflow.example,general_manager,,,true" in lines
    path = tmp_path / "again.csv"
    path.write_text(exported, encoding="utf-8")
    assert "0 created, 0 changed, 12 unchanged" in cli("org", "import", str(path))


def test_a_bad_file_imports_nothing_and_names_every_bad_line(cli, engine, tmp_path):
    before = cli("org", "export")
    count = user_count(engine)
    path = tmp_path / "bad.csv"
    path.write_text(HEADER +
                    "nina,Nina,nina@corp.example,sales_manager,north,frank,true\n"   # 2: fine
                    "oscar2,Oscar,,wizard,east,dave,true\n"                          # 3: unknown role
                    "pete,Pete,,sales_rep,atlantis,dave,true\n"                      # 4: unknown region
                    "quinn,Quinn,,sales_rep,east,ghost,true\n"                       # 5: dangling manager
                    "nina,Nina again,,sales_rep,east,dave,true\n"                     # 6: duplicate
                    "dave,Dave 戴经理,dave@salesflow.example,sales_manager,east,alice,true\n"  # 7: cycle
                    "rose,,not-mail,sales_rep,east,dave,maybe\n",                     # 8: three problems
                    encoding="utf-8")
    result = run("org", "import", str(path))
    assert result.exit_code == 1, result.output
    out = result.output
    assert "line 2:" not in out
    for expected in ("line 3: roles: unknown role: wizard",
                     "line 4: region: unknown region 'atlantis'",
                     "line 5: manager: manager 'ghost' is neither in the file nor in the database",
                     "line 6: username: duplicate username 'nina' (first on line 2)",
                     "line 7: manager: manager cycle: dave → alice → dave",
                     "line 8: display_name:", "line 8: email:", "line 8: active:",
                     "nothing was imported"):
        assert expected in out, (expected, out)
    assert user_count(engine) == count and cli("org", "export") == before


def test_a_bad_header_or_encoding_is_refused(tmp_path, cli):
    path = tmp_path / "header.csv"
    path.write_text("user,name\nalice,Alice\n", encoding="utf-8")
    result = run("org", "import", str(path))
    assert result.exit_code == 1 and "line 1: _header" in result.output
    path.write_bytes(HEADER.encode() + "zoe,张三,,sales_rep,east,dave,true\n".encode("gbk"))
    result = run("org", "import", str(path))
    assert result.exit_code == 1 and "not UTF-8" in result.output


def test_deactivating_in_an_import_hands_over_the_open_tasks(cli, api, tmp_path):
    inst = api.start("alice", "expense_approval", {"category": "travel", "amount": 100, "incurred_on": "2026-11-02",
                                                   "description": "出租车"})
    assert api.open_task(inst, "manager_approval")["assignee"] == "dave"
    path = tmp_path / "leave.csv"
    path.write_text(HEADER + "dave,Dave 戴经理,dave@salesflow.example,sales_manager,east,frank,false\n",
                    encoding="utf-8")
    out = cli("org", "import", str(path))
    assert "1 changed" in out and "1 open task(s) handed over" in out
    assert api.open_task(api.instance("alice", inst["id"]), "manager_approval")["assignee"] == "frank"


def test_first_administrator_and_passwords(cli, api):
    out = cli("user", "add", "boss", "--role", "admin", "--email", "boss@corp.example")
    assert "created boss (admin)" in out
    login = api.client.post("/api/v1/auth/token", json={"username": "boss", "password": "long-enough-1"})
    assert login.status_code == 401  # no password yet
    result = run("user", "set-password", "boss", input="long-enough-1\n")
    assert result.exit_code == 0 and "password of boss set" in result.output
    login = api.client.post("/api/v1/auth/token", json={"username": "boss", "password": "long-enough-1"})
    assert login.status_code == 200
    token = login.get_json()["token"]
    r = api.client.get("/api/v1/admin/users", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and "boss" in {u["username"] for u in r.get_json()}
    short = run("user", "set-password", "boss", input="short\n")
    assert short.exit_code == 1 and "password" in short.output
    assert run("user", "set-password", "ghost", input="long-enough-1\n").exit_code == 1
    dup = run("user", "add", "boss", "--role", "admin")
    assert dup.exit_code == 1 and "exists already" in dup.output
    bad = run("user", "add", "zed", "--role", "emperor")
    assert bad.exit_code == 1 and "unknown role: emperor" in bad.output


def test_region_add(cli, api):
    out = cli("region", "add", "south", "--name-zh", "华南大区", "--name-en", "South", "--manager", "erin")
    assert "region south added" in out
    regions = {r["id"]: r for r in api.get("admin", "/admin/regions").get_json()}
    assert regions["south"]["name"] == {"zh": "华南大区", "en": "South"} and regions["south"]["manager"] == "erin"
    again = run("region", "add", "south", "--name-zh", "x", "--name-en", "y")
    assert again.exit_code == 1 and "exists already" in again.output
    bad = run("region", "add", "Bad Id", "--name-zh", "x", "--name-en", "y")
    assert bad.exit_code == 1 and "id:" in bad.output
