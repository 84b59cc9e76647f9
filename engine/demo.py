"""The demo organisation of CONTRACT.md."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from .models import Budget, Region, User, UserRole
from .org import hash_password

DEMO_PASSWORD = "salesflow-demo"
REGIONS = {"east": ("华东大区", "East"), "north": ("华北大区", "North")}
REGION_MANAGERS = {"east": "dave", "north": "erin"}
CATEGORIES = ("travel", "entertainment", "marketing", "communication", "other")
MONTHLY_BUDGET = Decimal("10000")
# username, display name, role, region, manager
PEOPLE = [
    ("judy", "Judy 朱总", "general_manager", None, None),
    ("frank", "Frank 方总监", "sales_director", None, "judy"),
    ("dave", "Dave 戴经理", "sales_manager", "east", "frank"),
    ("erin", "Erin 易经理", "sales_manager", "north", "frank"),
    ("alice", "Alice 艾丽斯", "sales_rep", "east", "dave"),
    ("bob", "Bob 包博", "sales_rep", "east", "dave"),
    ("carol", "Carol 曹卡罗", "sales_rep", "north", "erin"),
    ("grace", "Grace 葛法务", "legal", None, "judy"),
    ("heidi", "Heidi 何财务", "finance", None, "judy"),
    ("ivan", "Ivan 尹人事", "hr", None, "judy"),
    ("oscar", "Oscar 欧运营", "operations", None, "judy"),
    ("admin", "Administrator 管理员", "admin", None, None),
]


def is_empty(session) -> bool:
    return (session.scalar(select(func.count()).select_from(User)) or 0) == 0


def seed_demo(session) -> int:
    """Load the demo organisation; users that already exist are left alone. Returns users created."""
    regions = {}
    for code, (name_zh, name_en) in REGIONS.items():
        region = session.scalar(select(Region).where(Region.code == code))
        if region is None:
            region = Region(code=code, name=f"{name_zh} {name_en}", name_zh=name_zh, name_en=name_en)
            session.add(region)
            session.flush()
        regions[code] = region
        for category in CATEGORIES:
            exists = session.scalar(select(Budget).where(
                Budget.region_id == region.id, Budget.category == category, Budget.period == "*"))
            if exists is None:
                session.add(Budget(region_id=region.id, category=category, period="*", amount=MONTHLY_BUDGET))
    password_hash = hash_password(DEMO_PASSWORD)
    created = 0
    for username, display, role, region, manager in PEOPLE:
        user = session.scalar(select(User).where(User.username == username))
        if user is not None:
            continue
        manager_id = session.scalar(select(User.id).where(User.username == manager)) if manager else None
        user = User(username=username, display_name=display, password_hash=password_hash,
                    region_id=regions[region].id if region else None, manager_id=manager_id, active=True,
                    email=f"{username}@salesflow.example")
        user.roles = [UserRole(role=role)]
        session.add(user)
        session.flush()
        created += 1
    for code, manager in REGION_MANAGERS.items():
        if regions[code].manager_id is None:
            regions[code].manager_id = session.scalar(select(User.id).where(User.username == manager))
    return created
