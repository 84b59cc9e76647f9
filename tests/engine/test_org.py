"""engine/org.py on its own: lane owners, the manager chain (inactive managers skipped), reports,
separation of duties for transfers and signers, out of office, passwords. The demo organisation
has one sales manager per region and no inactive manager, so these tests add people: a second
east manager with a team of their own, and inactive managers in the chain."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import org
from engine.models import User, UserRole
from tests.helpers import CLAIM, by_name, invoiced

LANES = {"Submitter": {"relation": "subject"}, "Manager": {"relation": "manager"},
         "SkipManager": {"relation": "manager", "levels": 2},
         "RegionManager": {"role": "sales_manager", "scope": "region"},
         "Finance": {"role": "finance"}, "Director": {"role": "sales_director"},
         "Broken": {"note": "neither relation nor role"}}


def user(s, name: str) -> User:
    return s.scalar(select(User).where(User.username == name))


def add_person(s, name: str, role: str, region: str | None, manager: str | None, active: bool = True) -> User:
    """Someone the demo organisation lacks (the password hash is never checked here)."""
    region_id = user(s, "alice").region_id if region == "east" else user(s, "carol").region_id if region else None
    person = User(username=name, display_name=name, password_hash="-", region_id=region_id, active=active,
                  manager_id=user(s, manager).id if manager else None)
    person.roles = [UserRole(role=role)]
    s.add(person)
    s.flush()
    return person


def owners(s, lane: str, subject: str, decides: bool = True) -> list[str]:
    return [u.username for u in org.resolve_lane(s, LANES, lane, user(s, subject), decides=decides).users]


@pytest.fixture
def second_east_team(engine):
    """adam: a second sales manager of the east region (sorting before dave), with zoe reporting to him."""
    with engine.db.write() as s:
        add_person(s, "adam", "sales_manager", "east", "frank")
        add_person(s, "zoe", "sales_rep", "east", "adam")
    return engine


# ---------------------------------------------------------------- the manager lane
def test_the_manager_lane_is_the_subjects_own_manager_not_any_manager_of_the_region(second_east_team):
    with second_east_team.db.read() as s:
        assert owners(s, "Manager", "alice") == ["dave"]
        assert owners(s, "Manager", "zoe") == ["adam"]
        assert owners(s, "RegionManager", "zoe") == ["adam", "dave"]  # the region's managers: both
        assert owners(s, "SkipManager", "zoe") == ["frank"]


def test_a_claim_of_the_second_managers_report_goes_to_him(second_east_team):
    inst = second_east_team.start("expense_approval", "zoe", invoiced(second_east_team, "zoe", CLAIM))
    assert by_name(inst)["manager_approval"]["assignee"] == "adam"
    inst = second_east_team.start("expense_approval", "alice", invoiced(second_east_team, "alice", CLAIM))
    assert by_name(inst)["manager_approval"]["assignee"] == "dave"


def test_inactive_managers_are_skipped_walking_up_the_chain(engine):
    with engine.db.write() as s:
        user(s, "dave").active = False
    with engine.db.read() as s:
        assert [m.username for m in org.manager_chain(s, user(s, "alice"))] == ["dave", "frank", "judy"]
        assert org.first_active_manager(s, user(s, "alice")).username == "frank"
        assert owners(s, "Manager", "alice") == ["frank"]
        assert owners(s, "SkipManager", "alice") == ["judy"]  # two active levels up
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    assert by_name(inst)["manager_approval"]["assignee"] == "frank"


def test_two_inactive_levels_and_no_active_manager_left(engine):
    with engine.db.write() as s:
        user(s, "dave").active = False
        user(s, "frank").active = False
    with engine.db.read() as s:
        assert owners(s, "Manager", "alice") == ["judy"]
        # judy is the last: two active levels up from alice there is nobody; the administrators take it
        lane = org.resolve_lane(s, LANES, "SkipManager", user(s, "alice"), decides=True)
        assert [u.username for u in lane.users] == ["admin"]
        assert "no active manager 2 levels up" in lane.note
    with engine.db.write() as s:
        user(s, "judy").active = False
    with engine.db.read() as s:
        lane = org.resolve_lane(s, LANES, "Manager", user(s, "alice"), decides=True)
        assert [u.username for u in lane.users] == ["admin"]
        assert lane.note == "alice has no active manager; routed to administrators"
        assert org.first_active_manager(s, user(s, "alice")) is None


def test_a_manager_cycle_ends_the_chain(engine):
    with engine.db.write() as s:
        user(s, "judy").manager_id = user(s, "alice").id  # a cycle the admin pages refuse; the walk must end
    with engine.db.read() as s:
        assert [m.username for m in org.manager_chain(s, user(s, "alice"))] == ["dave", "frank", "judy"]
    with engine.db.write() as s:  # a cycle above the subject, not through them
        user(s, "judy").manager_id = None
        user(s, "frank").manager_id = user(s, "dave").id
    with engine.db.read() as s:
        assert [m.username for m in org.manager_chain(s, user(s, "alice"))] == ["dave", "frank"]
        assert {s.get(User, i).username for i in org.reports_of(s, user(s, "frank"))} >= {"dave", "alice"}


# ---------------------------------------------------------------- role lanes
def test_role_lanes_scoped_to_the_region_and_never_the_subject(second_east_team):
    with second_east_team.db.read() as s:
        assert owners(s, "RegionManager", "carol") == ["erin"]
        assert owners(s, "Finance", "alice") == ["heidi"]
        # heidi is the only finance: her own claim's finance step goes up her chain, with a note
        lane = org.resolve_lane(s, LANES, "Finance", user(s, "heidi"), decides=True)
        assert [u.username for u in lane.users] == ["judy"] and "no finance other than heidi" in lane.note
        assert owners(s, "Finance", "heidi", decides=False) == ["heidi"]  # told, not deciding
        assert owners(s, "Submitter", "alice") == ["alice"]


def test_lanes_without_owners_go_to_the_administrators_with_the_reason(engine):
    with engine.db.write() as s:
        user(s, "heidi").active = False
    with engine.db.read() as s:
        for lane, reason in (("Nowhere", "lane 'Nowhere' has no owner rule"),
                             ("Broken", "names neither a relation nor a role"),
                             ("Finance", "nobody holds role 'finance'")):
            found = org.resolve_lane(s, LANES, lane, user(s, "alice"), decides=False)
            assert [u.username for u in found.users] == ["admin"], lane
            assert reason in found.note and found.note.endswith("routed to administrators")
        # a step to decide with nobody else in the role goes up the subject's chain (as when the
        # subject is the role's only holder), and says so
        found = org.resolve_lane(s, LANES, "Finance", user(s, "alice"), decides=True)
        assert [u.username for u in found.users] == ["dave"] and found.note == "no finance other than alice; routed to dave"


def test_reports_are_everyone_below_transitively(engine):
    with engine.db.read() as s:
        def below(name):
            return {s.get(User, i).username for i in org.reports_of(s, user(s, name))}
        assert below("dave") == {"alice", "bob"}
        assert below("frank") == {"dave", "erin", "alice", "bob", "carol"}
        assert below("alice") == set()
        assert "frank" in below("judy") and "judy" not in below("judy")


# ---------------------------------------------------------------- who may take a task
def test_who_may_take_a_transferred_or_added_step(second_east_team):
    with second_east_team.db.write() as s:
        user(s, "erin").active = False
        alice = user(s, "alice")
        assert org.may_take(s, LANES, None, alice, "Manager") == "no such user"
        assert org.may_take(s, LANES, user(s, "erin"), alice, "Manager") == "this person is not active"
        assert org.may_take(s, LANES, user(s, "admin"), alice, "Manager") == "administrators do not decide tasks"
        assert org.may_take(s, LANES, alice, alice, "Manager") == "nobody approves their own request"
        assert org.may_take(s, LANES, user(s, "bob"), alice, "Manager") == "this person holds no role that decides this step"
        assert org.may_take(s, LANES, user(s, "bob"), alice, "Submitter") is None  # a colleague may revise
        assert org.may_take(s, LANES, user(s, "dave"), alice, "Finance") is None  # her manager
        assert org.may_take(s, LANES, user(s, "judy"), alice, "Manager") is None  # further up the chain
        assert org.may_take(s, LANES, user(s, "heidi"), alice, "Manager") is None  # holds a lane's role
        assert org.may_take(s, LANES, user(s, "adam"), alice, "Manager") is None  # a sales manager


# ---------------------------------------------------------------- out of office
def test_out_of_office_goes_to_a_fitting_delegate_else_the_manager(engine):
    from engine import clock
    now = clock.now()
    with engine.db.write() as s:
        dave, alice = user(s, "dave"), user(s, "alice")
        dave.ooo_from, dave.ooo_until = now - timedelta(hours=1), now + timedelta(days=1)
        assert org.is_away(dave, now) and not org.is_away(dave, now + timedelta(days=2))
        assert not org.is_away(dave, dave.ooo_until) and org.is_away(dave, dave.ooo_from)  # [from, until)
        single = org.LaneOwners([dave], "a note")
        dave.ooo_delegate_id = user(s, "bob").id  # a peer of the subject: may not decide
        found, away = org.stand_in(s, LANES, single, alice, "Manager", now)
        assert [u.username for u in found.users] == ["frank"] and away.username == "dave" and found.note == "a note"
        dave.ooo_delegate_id = user(s, "heidi").id
        found, away = org.stand_in(s, LANES, single, alice, "Manager", now)
        assert [u.username for u in found.users] == ["heidi"] and away.username == "dave" and found.note == "a note"
        heidi = user(s, "heidi")  # a delegate away too: the manager
        heidi.ooo_from, heidi.ooo_until = now - timedelta(hours=1), now + timedelta(hours=1)
        found, away = org.stand_in(s, LANES, single, alice, "Manager", now)
        assert [u.username for u in found.users] == ["frank"]
        heidi.ooo_from = heidi.ooo_until = None
        # the subject's own step (a revision): a colleague may stand in for them
        alice.ooo_from, alice.ooo_until, alice.ooo_delegate_id = dave.ooo_from, dave.ooo_until, user(s, "bob").id
        found, away = org.stand_in(s, LANES, org.LaneOwners([alice]), alice, "Submitter", now)
        assert [u.username for u in found.users] == ["bob"] and away.username == "alice"
        # a pool skips the absent; a pool of absent people stays as it was
        pool = org.LaneOwners([dave, user(s, "erin")], "why")
        found, away = org.stand_in(s, LANES, pool, alice, "RegionManager", now)
        assert [u.username for u in found.users] == ["erin"] and found.note == "why" and away is None
        erin = user(s, "erin")
        erin.ooo_from, erin.ooo_until = dave.ooo_from, dave.ooo_until
        assert org.stand_in(s, LANES, pool, alice, "RegionManager", now) == (pool, None)  # nobody present: as it was
        assert org.stand_in(s, LANES, org.LaneOwners([dave]), alice, "Manager", now + timedelta(days=2)) \
            == (org.LaneOwners([dave]), None)


def test_out_of_office_never_hands_the_task_to_the_subject(engine):
    from engine import clock
    now = clock.now()
    with engine.db.write() as s:
        frank, dave = user(s, "frank"), user(s, "dave")
        frank.ooo_from, frank.ooo_until = now - timedelta(hours=1), now + timedelta(hours=1)
        # dave's own claim at the director: frank away, no delegate; frank's manager judy takes it
        found, away = org.stand_in(s, LANES, org.LaneOwners([frank]), dave, "Director", now)
        assert [u.username for u in found.users] == ["judy"] and away.username == "frank"
        # frank's manager would be the subject herself: the task stays with frank
        found, away = org.stand_in(s, LANES, org.LaneOwners([frank]), user(s, "judy"), "Director", now)
        assert [u.username for u in found.users] == ["frank"] and away is None


# ---------------------------------------------------------------- passwords and users
def test_passwords_are_salted_scrypt_and_checked_in_constant_form():
    import base64
    hashed = org.hash_password("s3cret")
    assert hashed.startswith("scrypt$") and hashed != org.hash_password("s3cret")  # salted
    assert len(base64.b64decode(hashed.split("$")[1])) == 16 and len(base64.b64decode(hashed.split("$")[2])) == 32
    person = User(username="x", display_name="x", password_hash=hashed, active=True)
    assert org.verify_password(person, "s3cret") and not org.verify_password(person, "S3cret")
    assert not org.verify_password(None, "s3cret")
    person.active = False
    assert not org.verify_password(person, "s3cret")
    person.active = True
    for broken in ("", "md5$a$b", "scrypt$only-two", "scrypt$!!$??"):
        person.password_hash = broken
        assert not org.verify_password(person, "s3cret"), broken


def test_user_dict(engine):
    with engine.db.read() as s:
        assert org.user_dict(user(s, "alice")) == {
            "id": user(s, "alice").id, "username": "alice", "display_name": "Alice 艾丽斯", "roles": ["sales_rep"],
            "region": "east", "locale": None}
        assert org.user_dict(user(s, "judy"))["region"] is None
        assert org.user_by_name(s, "nobody") is None
        assert [u.username for u in org.users_with_role(s, "sales_manager")] == ["dave", "erin"]
        assert [u.username for u in org.users_with_role(s, "sales_manager", user(s, "carol").region_id)] == ["erin"]


def test_the_org_chart_holds_everyone_as_the_tables_say(engine):
    """org.Chart, read in one go: each person's roles (none for someone without), region, manager;
    role holders (active only, by username) and direct reports; kept under the token it was read with."""
    with engine.db.write() as s:
        add_person(s, "zed", "finance", "east", "dave", active=False)
        nobody = User(username="nora", display_name="Nora", password_hash="-", active=True)
        s.add(nobody)
    with engine.db.read() as s:
        token = s.scalar(org.ORG_TOKEN)
        chart = org.Chart.load(s, token)
        assert chart.token == token
        alice, nora, zed = chart.by_name["alice"], chart.by_name["nora"], chart.by_name["zed"]
        assert alice.role_names == {"sales_rep"} and nora.role_names == frozenset()
        assert (alice.region.code, chart.get(alice.manager_id).username) == ("east", "dave")
        assert nora.region is None and nora.manager_id is None
        assert [p.username for p in chart.holders["finance"]] == ["heidi"]  # zed is not active
        assert [p.username for p in chart.holders["sales_manager"]] == ["dave", "erin"]
        assert sorted(chart.username(i) for i in chart.children[user(s, "dave").id]) == ["alice", "bob", "zed"]
        assert chart.get(None) is None and chart.username(None) is None
        assert org.chart(s) is org.chart(s)  # kept: the same chart while the token stands
