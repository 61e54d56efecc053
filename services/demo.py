"""A realistic demo data set: companies with short names, contacts with birthdays, three years of purchases
with per-customer rhythms, interactions, feedback, a manager and reps.

Deterministic: the same seed and the same `today` give the same data. Roll-ups are computed while
generating (a test checks them against the rows), and rows are inserted in batches, so a million
customers is a matter of minutes, not hours.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    ContactPerson,
    ContactStrategy,
    Customer,
    DictionaryEntry,
    Feedback,
    Interaction,
    Purchase,
    PurchaseStrategy,
    Role,
    Stage,
    User,
    utcnow,
)
from services import audit
from services.rollups import median_gap

# city, region code, area code
CITIES = [
    ("广州", "south", "020"), ("深圳", "south", "0755"), ("东莞", "south", "0769"), ("佛山", "south", "0757"),
    ("厦门", "south", "0592"), ("上海", "east", "021"), ("杭州", "east", "0571"), ("南京", "east", "025"),
    ("苏州", "east", "0512"), ("宁波", "east", "0574"), ("青岛", "east", "0532"), ("武汉", "central", "027"),
    ("长沙", "central", "0731"), ("郑州", "central", "0371"), ("北京", "north", "010"), ("天津", "north", "022"),
    ("石家庄", "north", "0311"), ("成都", "southwest", "028"), ("重庆", "southwest", "023"),
    ("昆明", "southwest", "0871"), ("西安", "northwest", "029"), ("兰州", "northwest", "0931"),
    ("沈阳", "northeast", "024"), ("哈尔滨", "northeast", "0451"), ("大连", "northeast", "0411"),
]
BRAND_CHARS = (
    "人易华信恒达金盛宏图博远天成嘉禾瑞丰永兴鸿运中正新泰广源德隆安顺明辉长青汇通宝利东方万和同创"
    "康尔美联众合科杰凯峰腾飞雅诺海帆晨曦云朗致远卓越星辰鼎立富升"
)
TRADES = [
    ("软件技术", "软件", "it"), ("电子科技", "电子", "it"), ("化工", "化工", "chemicals"),
    ("医疗器械", "医疗", "healthcare"), ("食品", "食品", "food"), ("物流", "物流", "logistics"),
    ("建材", "建材", "construction"), ("教育科技", "教育", "education"), ("贸易", "贸易", "retail"),
    ("机械制造", "机械", "manufacturing"), ("新能源", "能源", "energy"), ("包装材料", "包装", "manufacturing"),
    ("信息咨询", "咨询", "it"), ("印刷", "印刷", "manufacturing"), ("医药", "医药", "healthcare"),
]
SUFFIXES = ["有限公司", "有限公司", "有限公司", "股份有限公司", "有限责任公司"]
EN_WORDS = [
    "Acme", "Pacific", "Golden", "Bright", "Summit", "Harbor", "Evergreen", "Orient", "Silver", "Apex",
    "Pioneer", "Crown", "Lotus", "Jade", "Phoenix", "Dragon", "Northstar", "Bluewave", "Unity", "Vertex",
]
EN_TRADES = ["Trading", "Electronics", "Logistics", "Foods", "Medical", "Industrial", "Software", "Packaging"]
EN_SUFFIXES = ["Co., Ltd.", "Ltd.", "Inc.", "Limited", "Corp."]
# Includes surnames whose reading differs from the character's common one (曾 zeng, 单 shan, 仇 qiu, …).
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈单仇朴覃区解"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红玉兰海燕婷雪晨浩宇欣怡子涵博文"
TITLES = [("总经理", "decider"), ("采购经理", "buyer"), ("采购专员", "buyer"), ("技术总监", "influencer"),
          ("财务经理", "influencer"), ("车间主任", "user"), ("行政主管", "initiator"), ("董事长", "decider")]
PRODUCTS = ["办公软件授权", "服务器", "网络设备", "技术服务", "耗材", "培训服务", "维保合同", "定制开发", "打印机",
            "工业传感器", "包装材料", "化工原料"]
SUMMARIES = {
    "visit": ["上门拜访，了解新项目需求", "拜访采购部，介绍新产品", "现场检查设备使用情况", "送样品并演示"],
    "call": ["电话跟进报价", "确认下单数量", "回访使用情况", "提醒付款"],
    "message": ["微信发送产品资料", "短信通知到货"],
    "email": ["邮件发送合同草稿", "邮件确认发票信息"],
    "gift": ["中秋节送礼"], "event": ["参加客户联谊会"],
}
FEEDBACK_TEXTS = {
    "complaint": ["到货延迟一周", "包装破损", "发票开错", "售后响应太慢", "产品质量不稳定"],
    "suggestion": ["希望提供月结", "建议增加中文说明书"],
    "inquiry": ["询问批量折扣", "咨询新型号参数"],
    "praise": ["安装服务很专业", "交货及时"],
}
# (mean gap in days, weight)
RHYTHMS = [(14, 5), (30, 20), (45, 15), (60, 20), (90, 25), (180, 15)]


@dataclass
class DemoSummary:
    users: int = 0
    customers: int = 0
    contacts: int = 0
    purchases: int = 0
    interactions: int = 0
    feedback: int = 0


def _brand(rng: random.Random) -> str:
    return rng.choice(BRAND_CHARS) + rng.choice(BRAND_CHARS)


def _person_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))


def _mobile(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


async def _ids(session: AsyncSession, model, key: str = "code") -> dict[str, int]:
    rows = await session.execute(select(getattr(model, key), model.id).order_by(model.id))  # same order everywhere
    return {k: v for k, v in rows.all()}


async def generate(session: AsyncSession, *, customers: int, seed: int = 42, today: date | None = None,
                   progress: Callable[[int, int], None] | None = None, batch: int = 2000,
                   history: bool = True) -> DemoSummary:
    """Add a demo data set to the database in the session's transaction (the caller commits).
    `history=False` leaves out purchases, interactions and feedback (customers and contacts only)."""
    rng = random.Random(seed)
    # With a given day every timestamp is of that day (the start of it, Shanghai time): same seed and day,
    # same data, whenever it is made. Without one, now.
    given = today is not None
    today = today or utcnow().date()
    summary = DemoSummary()
    tz = ZoneInfo("Asia/Shanghai")
    now = datetime.combine(today, time(0), tz).astimezone(UTC) if given else utcnow()

    dictionaries: dict[str, list[int]] = {}
    region_by_code: dict[str, int] = {}
    industry_by_code: dict[str, int] = {}
    for entry in (await session.execute(select(DictionaryEntry).order_by(DictionaryEntry.id))).scalars():
        dictionaries.setdefault(entry.kind, []).append(entry.id)
        if entry.kind == "region":
            region_by_code[entry.code] = entry.id
        if entry.kind == "industry":
            industry_by_code[entry.code] = entry.id
    contact_strategies = list((await _ids(session, ContactStrategy)).values())
    purchase_strategies = list((await _ids(session, PurchaseStrategy)).values())

    # People: a manager per ~5 reps, reps spread over regions, plus a demo admin.
    reps_wanted = max(3, min(60, customers // 400))
    existing_names = set((await session.execute(select(User.name))).scalars())
    def new_user(name: str, role: Role, **kw) -> User:
        user = User(name=name, role=role, **{"language": "zh_Hans", "timezone": "Asia/Shanghai", "created_at": now,
                                             **kw})
        session.add(user)
        summary.users += 1
        return user
    admin = None if "演示管理员" in existing_names else new_user("演示管理员", Role.admin)
    managers: list[User] = []
    reps: list[User] = []
    regions = list(region_by_code.items())
    for m in range(max(1, math.ceil(reps_wanted / 5))):
        name = f"{_person_name(rng)}经理" if m else "王经理"
        managers.append(new_user(name, Role.manager, territory_id=regions[m % len(regions)][1]))
    await session.flush()
    for r in range(reps_wanted):
        manager = managers[r % len(managers)]
        reps.append(new_user(_person_name(rng), Role.rep, manager_id=manager.id, territory_id=manager.territory_id))
    reps.append(new_user("Alex Chen", Role.rep, manager_id=managers[0].id, language="en",
                         timezone="America/New_York"))
    await session.flush()
    if admin is not None:
        audit.record(session, action="create", entity="user", entity_id=admin.id, actor="cli", changes={"demo": True})

    used_names = set((await session.execute(select(Customer.name))).scalars())
    created = 0
    start = today - timedelta(days=3 * 365)
    while created < customers:
        size = min(batch, customers - created)
        customer_rows, plans = [], []
        for _ in range(size):
            english = rng.random() < 0.12
            city, region_code, area = rng.choice(CITIES)
            if english:
                brand = f"{rng.choice(EN_WORDS)} {rng.choice(EN_WORDS)}"
                trade = rng.choice(EN_TRADES)
                name = f"{brand} {trade} {rng.choice(EN_SUFFIXES)}"
                short, aliases, industry = f"{brand} {trade}", [], rng.choice(list(industry_by_code.values()))
            else:
                brand = _brand(rng)
                trade, trade_short, industry_code = rng.choice(TRADES)
                name = f"{city}市{brand}{trade}{rng.choice(SUFFIXES)}"
                short, aliases = f"{brand}{trade_short}", [brand]
                industry = industry_by_code[industry_code]
            while name in used_names:  # keep names unique: add a branch office
                name = name.replace("有限", f"{rng.choice(['第二', '第三', '华南', '华东', '新区'])}分公司有限", 1) \
                    if rng.random() < 0.5 else name + f"（{rng.choice(['一', '二', '三', '四', '五'])}厂）"
            used_names.add(name)
            owner = rng.choice(reps)
            buyer = rng.random() < 0.72
            row = {
                "external_id": f"C{len(used_names):07d}" if rng.random() < 0.8 else None,
                "name": name, "short_name": short, "aliases": aliases,
                "region_id": region_by_code[region_code], "industry_id": industry,
                "nature_id": rng.choice(dictionaries["nature"]), "source_id": rng.choice(dictionaries["source"]),
                "category_id": rng.choice(dictionaries["category"]), "scale_id": rng.choice(dictionaries["scale"]),
                "years_in_business_id": rng.choice(dictionaries["years_in_business"]),
                "industry_standing_id": rng.choice(dictionaries["industry_standing"]),
                "settlement_method_id": rng.choice(dictionaries["settlement_method"]),
                "contact_strategy_id": rng.choice(contact_strategies),
                "purchase_strategy_id": rng.choice(purchase_strategies) if rng.random() < 0.6 else None,
                "credit_rating": rng.randint(2, 5), "employees": int(rng.lognormvariate(4, 1.2)),
                "wants_agency": rng.random() < 0.1,
                "phone": f"{area}-{rng.randrange(10**7, 10**8)}", "email": None, "website": None,
                "address": f"{city}市{rng.choice(['天河区', '南山区', '浦东新区', '高新区', '开发区'])}{rng.randint(1, 999)}号",
                "owner_id": owner.id,
                "latitude": round(22 + rng.random() * 20, 5) if rng.random() < 0.5 else None,
                "stage": Stage.customer if buyer else rng.choice([s for s in Stage if s != Stage.customer]),
                "expected_purchase_on": None, "lost_reason": None,
                "created_at": now, "updated_at": now,
            }
            row["longitude"] = round(100 + rng.random() * 20, 5) if row["latitude"] is not None else None
            if row["stage"] == Stage.not_now:
                row["expected_purchase_on"] = today + timedelta(days=rng.randint(10, 200))
            if row["stage"] == Stage.definitely_not:
                row["lost_reason"] = rng.choice(["价格太高", "已有固定供应商", "预算取消"])
            # Purchases: a rhythm, a typical ticket, maybe churn part way.
            purchases = []
            if buyer and history:
                gap = rng.choices([g for g, _ in RHYTHMS], weights=[w for _, w in RHYTHMS])[0]
                ticket = rng.lognormvariate(9, 1.0)  # ~8 000 yuan typical
                stop = today - timedelta(days=rng.randint(60, 700)) if rng.random() < 0.25 else today
                day = start + timedelta(days=rng.randint(0, gap))
                while day <= stop:
                    amount = max(100, int(ticket * rng.uniform(0.6, 1.5) * 100) // 100 * 100)
                    purchases.append((day, amount * 100, rng.choice(PRODUCTS)))
                    day += timedelta(days=max(1, int(rng.gauss(gap, gap * 0.25))))
            contacts = []
            for c in range(rng.choice((1, 1, 2, 2, 3))):
                title, role = rng.choice(TITLES)
                birthday = date(rng.randint(1965, 1998), rng.randint(1, 12), rng.randint(1, 28))
                if rng.random() < 0.01:
                    birthday = date(rng.choice([1972, 1980, 1988, 1996]), 2, 29)
                contacts.append({"name": _person_name(rng), "title": title, "decision_role": role,
                                 "mobile": _mobile(rng), "birthday": birthday,
                                 "birthday_mmdd": birthday.month * 100 + birthday.day,
                                 "is_key": c == 0, "friendliness": rng.randint(2, 5),
                                 "best_call_time": rng.choice(["上午10点后", "下午2-4点", "工作日晚上", None]),
                                 "hobbies": rng.choice(["钓鱼", "羽毛球", "茶", "高尔夫", None]), "created_at": now})
            interactions = []
            for _ in range(rng.randint(0, 6) if history else 0):
                kind = rng.choices(list(SUMMARIES), weights=[35, 40, 10, 8, 4, 3])[0]
                when = datetime.combine(today - timedelta(days=rng.randint(1, 240)),
                                        time(rng.randint(9, 17), rng.choice((0, 15, 30, 45))), tz).astimezone(UTC)
                interactions.append({"kind": kind, "occurred_at": when, "user_id": owner.id,
                                     "summary": rng.choice(SUMMARIES[kind]), "created_at": now,
                                     "attachments": []})
            feedback = []
            if history and rng.random() < 0.06:
                kind = rng.choices(list(FEEDBACK_TEXTS), weights=[50, 20, 20, 10])[0]
                raised = datetime.combine(today - timedelta(days=rng.randint(1, 300)), time(10), tz).astimezone(UTC)
                resolved = kind != "complaint" or rng.random() < 0.7
                feedback.append({"kind": kind, "product": rng.choice(PRODUCTS), "rating": rng.randint(1, 5),
                                 "text": rng.choice(FEEDBACK_TEXTS[kind]), "user_id": owner.id,
                                 "status": "resolved" if resolved else "open", "created_at": raised,
                                 "resolved_at": raised + timedelta(days=rng.randint(1, 20)) if resolved else None,
                                 "resolution": "已处理" if resolved else None})
            row["txn_count"] = len(purchases)
            row["txn_amount_cents"] = sum(a for _, a, _ in purchases)
            row["first_txn_on"] = purchases[0][0] if purchases else None
            row["last_txn_on"] = purchases[-1][0] if purchases else None
            row["purchase_gap_days"] = median_gap((d for d, _, _ in purchases), len(purchases))
            row["last_contact_at"] = max((i["occurred_at"] for i in interactions), default=None)
            if not purchases and row["stage"] == Stage.customer:
                row["stage"] = Stage.interested
            customer_rows.append(row)
            plans.append((purchases, contacts, interactions, feedback))

        ids = (await session.execute(insert(Customer).returning(Customer.id, sort_by_parameter_order=True),
                                     customer_rows)).scalars().all()
        purchase_rows, contact_rows, interaction_rows, feedback_rows = [], [], [], []
        for customer_id, (purchases, contacts, interactions, feedback) in zip(ids, plans):
            purchase_rows += [{"customer_id": customer_id, "purchased_on": d, "amount_cents": a, "products": p,
                               "quantity": None, "order_no": None, "payment_method": None, "payment_status": "paid",
                               "source": "import", "created_at": now} for d, a, p in purchases]
            contact_rows += [{"customer_id": customer_id, **c} for c in contacts]
            interaction_rows += [{"customer_id": customer_id, **i} for i in interactions]
            feedback_rows += [{"customer_id": customer_id, **f} for f in feedback]
        for model, rows in ((Purchase, purchase_rows), (ContactPerson, contact_rows),
                            (Interaction, interaction_rows), (Feedback, feedback_rows)):
            for offset in range(0, len(rows), 10000):
                chunk = rows[offset:offset + 10000]
                for keys in dict.fromkeys(frozenset(r) for r in chunk):  # first-seen order, not hash order
                    await session.execute(insert(model), [r for r in chunk if frozenset(r) == keys])
        summary.customers += len(ids)
        summary.purchases += len(purchase_rows)
        summary.contacts += len(contact_rows)
        summary.interactions += len(interaction_rows)
        summary.feedback += len(feedback_rows)
        created += size
        if progress:
            progress(created, customers)
    audit.record(session, action="demo_data", entity="customer", entity_id=None, actor="cli",
                 changes={"customers": summary.customers, "seed": seed})
    return summary


async def is_empty(session: AsyncSession) -> bool:
    return not await session.scalar(select(func.count(Customer.id)))


SANDBOX_IDS = {"admin": 1001, "manager": 1002, "rep": 1003, "rep_en": 1004}
SANDBOX_GUEST = 1099


async def holds_demo_data(session: AsyncSession) -> bool:
    """Whether the demo data set was loaded into this database (its audit entry says so)."""
    from models import AuditLog

    return bool(await session.scalar(select(func.count(AuditLog.id)).where(AuditLog.action == "demo_data")))


async def sandbox_people(session: AsyncSession) -> list[User]:
    """The demo people the sandbox page lets you speak as: the demo admin, the first manager, one of that
    manager's reps (Chinese) and the English-speaking rep. They get fixed sandbox Telegram ids (1001–1004)
    the first time; a later run finds them again."""
    people: dict[str, User | None] = {}
    for key, telegram_id in SANDBOX_IDS.items():
        people[key] = await session.scalar(select(User).where(User.telegram_id == telegram_id))
    users = list((await session.execute(select(User).where(User.active.is_(True)).order_by(User.id))).scalars())
    taken = {u.id for u in people.values() if u is not None}

    def first(predicate) -> User | None:
        return next((u for u in users if u.id not in taken and u.telegram_id is None and predicate(u)), None)
    wanted = {
        "admin": lambda u: u.role == Role.admin,
        "manager": lambda u: u.role == Role.manager,
        "rep": lambda u: u.role == Role.rep and u.language != "en" and (
            people.get("manager") is None or u.manager_id == people["manager"].id),
        "rep_en": lambda u: u.role == Role.rep and u.language == "en",
    }
    for key, predicate in wanted.items():
        if people[key] is None and (user := first(predicate)) is not None:
            user.telegram_id = SANDBOX_IDS[key]
            taken.add(user.id)
            people[key] = user
    await session.flush()
    return [u for u in people.values() if u is not None]
