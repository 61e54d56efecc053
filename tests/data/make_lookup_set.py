"""Make the labelled lookup set: tests/data/lookup_customers.csv, lookup_contacts.csv, lookup_queries.tsv.

    .venv/bin/python tests/data/make_lookup_set.py

Deterministic. The customers are 2,000 demo customers (distractors included) plus hand-written ones.
Each query is what a rep would type for one customer — by kind: exact and partial hanzi, a wrong or a
missing character, a homophone, full pinyin with and without spaces, initials, Traditional characters,
Latin names in other case / with typos / in another word order, phone numbers in any format or their
last digits, contact persons (including surnames with special readings). A query is only kept when it
is unambiguous *in the data* (no other customer has the same short name, brand, digits …), judged by
plain string checks here, never by the search under test. Mutated queries (a wrong, missing or
homophone character) that another customer's name contains, sounds like, or fits equally well are kept
but marked with "~" after their kind: for those only the top 3 can be asked of any search.
"""

from __future__ import annotations

import asyncio
import csv
import random
import sys
import tempfile
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.db import make_engine, make_sessionmaker, upgrade  # noqa: E402
from services import demo  # noqa: E402
from services.exporter import export  # noqa: E402
from services.textnorm import _READINGS, core_name, fold, initials, pinyin  # noqa: E402

HERE = Path(__file__).resolve().parent
HANDWRITTEN = [
    # external_id, name, short name, phone, contact, contact mobile
    ("H001", "广州市人易软件技术有限公司", "人易软件", "020-38881234", "曾志伟", "13826001234"),
    ("H002", "深圳市单氏精密机械有限公司", "单氏精密", "0755-26661111", "单晓东", "13902223333"),
    ("H003", "上海仇记食品有限公司", "仇记食品", "021-55557777", "仇丽华", "13611112222"),
    ("H004", "延边朴家泡菜有限公司", "朴家泡菜", "0433-2223333", "朴正浩", "13504331234"),
    ("H005", "南宁覃氏茶业有限公司", "覃氏茶业", "0771-5556666", "覃海燕", "13807712345"),
    ("H006", "Müller Präzisionstechnik GmbH", "Müller", "+49 711 1234567", "Jürgen Müller", "+49 170 1234567"),
    ("H007", "Acme Trading Co., Ltd.", "Acme", "+1 (415) 555-0100", "John Smith", "+1 415 555 0199"),
    ("H008", "重庆长江物流集团有限公司", "长江物流", "023-61234567", "欧阳娜", "13983001122"),
    ("H009", "厦门市行健体育用品有限公司", "行健体育", "0592-5123456", "解晓明", "13959201234"),
    ("H010", "北京东方嘉禾医药股份有限公司", "东方嘉禾", "010-84561234", "尉迟恭", "13901011234"),
]


def homophone(ch: str, rng: random.Random) -> str | None:
    """Another common character with the same reading, as an input method would offer."""
    readings = _READINGS.get(ch)
    if not readings:
        return None
    options = [c for c, r in _READINGS.items() if r[0] == readings[0] and c != ch and "\u4e00" <= c <= "\u9fa5"
               and c in COMMON]
    return rng.choice(sorted(options)) if options else None


COMMON = set(
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心"
    "多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但"
    "身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第"
    "门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华"
    "报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记"
    "边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带"
    "花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满"
    "式李息写呢识极令黄德收脸钱党倒未持音易艺义意益亿仪依宜衣医移遗疑议异忆毅谊亦译奕逸"
)


def typo(word: str, rng: random.Random) -> str:
    letters = list(word)
    vowels = [i for i, c in enumerate(letters) if c in "aeiou" and 0 < i < len(letters) - 1]
    if vowels and rng.random() < 0.6:
        del letters[rng.choice(vowels)]
    else:
        i = rng.randrange(len(letters) - 1)
        letters[i], letters[i + 1] = letters[i + 1], letters[i]
    return "".join(letters)


def to_traditional(text: str) -> str:
    import opencc

    return opencc.OpenCC("s2t").convert(text)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'set.sqlite3'}"
        engine = make_engine(url)
        await upgrade(engine)
        async with make_sessionmaker(engine)() as session:
            await demo.generate(session, customers=2000, seed=2026, today=date(2026, 11, 1))
            await session.commit()
            await export(session, "customers", HERE / "lookup_customers.csv", language="en")
            await export(session, "contacts", HERE / "lookup_contacts.csv", language="en")
        await engine.dispose()
    customers = list(csv.DictReader((HERE / "lookup_customers.csv").open(encoding="utf-8-sig")))
    contacts = list(csv.DictReader((HERE / "lookup_contacts.csv").open(encoding="utf-8-sig")))
    # Hand-written customers with tricky names, appended to the files.
    for code, name, short, phone, person, mobile in HANDWRITTEN:
        customers.append({"external_id": code, "name": name, "short_name": short, "phone": phone})
        contacts.append({"customer_external_id": code, "customer_name": name, "name": person, "mobile": mobile})
    # Only what search reads (owners are assigned by the tests themselves).
    customers = [{k: c.get(k, "") for k in ("external_id", "name", "short_name", "aliases", "phone")}
                 for c in customers]
    contacts = [{k: p.get(k, "") for k in ("customer_external_id", "customer_name", "name", "mobile")}
                for p in contacts]
    with (HERE / "lookup_customers.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(customers[0]))
        writer.writeheader()
        writer.writerows(customers)
    with (HERE / "lookup_contacts.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(contacts[0]))
        writer.writeheader()
        writer.writerows(contacts)

    rng = random.Random(7)
    # Customers without an ERP code are referred to by name in the query file.
    key = {c["name"]: (c["external_id"] or c["name"]) for c in customers}
    shorts = Counter(fold(c["short_name"] or "") for c in customers)
    cores = Counter(core_name(fold(c["name"])) for c in customers)
    han_customers = [c for c in customers if any("\u4e00" <= ch <= "\u9fff" for ch in c["name"])]
    latin_customers = [c for c in customers if c not in han_customers]
    brands = Counter(fold(c["short_name"])[:2] for c in han_customers if c["short_name"])
    # Pinyin / initials of every short name and core, to keep only queries no other customer shares.
    spelled = Counter()
    capitals = Counter()
    for c in han_customers:
        for text in {c["short_name"], core_name(fold(c["name"]))}:
            spelled[pinyin(text)] += 1
            capitals[initials(text)] += 1
    for p in contacts:
        spelled[pinyin(p["name"], person=True)] += 1
        capitals[initials(p["name"], person=True)] += 1
    queries: list[tuple[str, str, str]] = []

    texts = [(c["name"], {core_name(fold(c["name"])), fold(c["short_name"] or "")} - {""}) for c in customers]
    texts_of = dict(texts)

    def sounds_like(query: str, text: str) -> bool:
        """`query` is in `text`, character for character or by a homophone at every position."""
        for start in range(0, len(text) - len(query) + 1):
            if all(a == b or set(_READINGS.get(a, ())) & set(_READINGS.get(b, ())) for a, b in
                   zip(query, text[start:start + len(query)])):
                return True
        return False

    def same_positions(query: str, text: str) -> int:
        return max((sum(a == b for a, b in zip(query, text[i:i + len(query)]))
                    for i in range(0, max(len(text) - len(query), 0) + 1)), default=0)

    def ambiguous(query: str, customer: dict) -> bool:
        folded = fold(query)
        own = max(same_positions(folded, t) for t in texts_of[customer["name"]])
        for name, ts in texts:
            if name == customer["name"]:
                continue
            if any(sounds_like(folded, t) or same_positions(folded, t) >= own for t in ts):
                return True  # another name contains it, sounds like it, or fits it as well
        return False

    def add(kind: str, query: str, customer: dict) -> None:
        if not query or not query.strip():
            return
        if kind in ("wrong_char", "missing_char", "homophone", "hanzi_partial") and ambiguous(query, customer):
            kind += "~"  # another name contains it, sounds like it or fits as well: only top-3 can be asked
        queries.append((kind, query, key[customer["name"]]))

    unique_short = [c for c in han_customers if c["short_name"] and shorts[fold(c["short_name"])] == 1
                    and cores[core_name(fold(c["name"]))] == 1]
    rng.shuffle(unique_short)
    pool = iter(unique_short)

    def take(n: int) -> list[dict]:
        return [next(pool) for _ in range(n)]

    for c in take(25):
        add("hanzi_short", c["short_name"], c)
    for c in take(20):
        add("hanzi_full", c["name"], c)
    for c in take(25):
        brand = c["short_name"][:2]
        if brands[brand] == 1:
            add("hanzi_partial", brand, c)
        else:
            add("hanzi_partial", c["short_name"][:3], c)
    for c in take(40):
        s = c["short_name"]
        i = rng.randrange(len(s))
        replacement = rng.choice([ch for ch in "的是在有和这中大上个到说为子你地出也时就要下以会" if ch not in s])
        add("wrong_char", s[:i] + replacement + s[i + 1:], c)
    for c in take(35):
        s = c["short_name"]
        if len(s) >= 4:
            i = rng.randrange(1, len(s))
            add("missing_char", s[:i] + s[i + 1:], c)
    for c in take(35):
        s = c["short_name"]
        i = rng.randrange(len(s))
        other = homophone(s[i], rng)
        if other:
            add("homophone", s[:i] + other + s[i + 1:], c)
    for c in take(25):
        if spelled[pinyin(c["short_name"])] == 1:
            add("pinyin", pinyin(c["short_name"]), c)
    for c in take(20):
        if spelled[pinyin(c["short_name"])] == 1:
            add("pinyin_spaced", pinyin(c["short_name"], sep=" "), c)
    for c in take(20):
        if capitals[initials(c["short_name"])] == 1:
            add("initials", initials(c["short_name"]), c)
    for c in take(20):
        add("traditional", to_traditional(c["short_name"] if rng.random() < 0.5 else c["name"]), c)
    for c in take(15):
        city = c["name"].split("市")[0] if "市" in c["name"] else ""
        add("city_prefix", city + c["short_name"], c)
    latin_cores = Counter(core_name(fold(c["name"])) for c in latin_customers)
    latin_unique = [c for c in latin_customers if latin_cores[core_name(fold(c["name"]))] == 1]
    rng.shuffle(latin_unique)
    for c in latin_unique[:15]:
        add("latin_case", c["name"].upper() if rng.random() < 0.5 else c["name"].lower(), c)
    for c in latin_unique[15:35]:
        words = core_name(fold(c["name"])).split()
        i = rng.randrange(len(words))
        words[i] = typo(words[i], rng) if len(words[i]) > 3 else words[i]
        add("latin_typo", " ".join(words), c)
    for c in latin_unique[35:50]:
        words = core_name(fold(c["name"])).split()
        add("latin_order", " ".join(reversed(words)), c)
    digits_count = Counter()
    phones_of: dict[str, list[str]] = {}
    for c in customers:
        numbers = [c.get("phone") or ""] + [p["mobile"] for p in contacts if p.get("customer_name") == c["name"]]
        phones_of[c["name"]] = [n for n in numbers if n]
    for c in customers:
        for n in phones_of[c["name"]]:
            d = "".join(ch for ch in n if ch.isdigit())
            for k in (4, 6):
                digits_count[d[-k:]] += 1
    phone_people = [c for c in customers if phones_of[c["name"]]]
    rng.shuffle(phone_people)
    for c in phone_people[:20]:
        number = rng.choice(phones_of[c["name"]])
        d = "".join(ch for ch in number if ch.isdigit())
        formatted = {0: number, 1: d, 2: " ".join(d[i:i + 4] for i in range(0, len(d), 4)),
                     3: "+86 " + d if len(d) == 11 else number}[rng.randrange(4)]
        add("phone_full", formatted, c)
    for c in phone_people[20:45]:
        d = "".join(ch for ch in rng.choice(phones_of[c["name"]]) if ch.isdigit())
        tail = d[-4:] if digits_count[d[-4:]] == 1 else d[-6:]
        if digits_count[tail] == 1:
            add("phone_tail", tail, c)
    people = Counter(fold(p["name"]) for p in contacts)
    person_pinyin = Counter(pinyin(p["name"], person=True) for p in contacts)
    for c in han_customers:  # a company spelled the same way makes a contact's pinyin ambiguous
        for text in {c["short_name"], core_name(fold(c["name"]))}:
            person_pinyin[pinyin(text)] += 1
    by_name = {c["name"]: c for c in customers}
    unique_people = [p for p in contacts if people[fold(p["name"])] == 1 and p["customer_name"] in by_name]
    rng.shuffle(unique_people)
    for p in unique_people[:20]:
        add("contact", p["name"], by_name[p["customer_name"]])
    for p in unique_people[20:45]:
        if person_pinyin[pinyin(p["name"], person=True)] == 1 and any("\u4e00" <= ch <= "\u9fff" for ch in p["name"]):
            add("contact_pinyin", pinyin(p["name"], person=True), by_name[p["customer_name"]])
    # Hand-written: surnames with special readings, boilerplate, foreign names.
    for kind, query, code in [
        ("surname", "zengzhiwei", "H001"), ("surname", "shanxiaodong", "H002"), ("surname", "qiulihua", "H003"),
        ("surname", "piaozhenghao", "H004"), ("surname", "qinhaiyan", "H005"), ("surname", "ouyangna", "H008"),
        ("surname", "yuchigong", "H010"), ("surname", "xiexiaoming", "H009"),
        ("hanzi_partial", "人易软", "H001"), ("homophone", "人艺软件", "H001"), ("pinyin", "renyiruan", "H001"),
        ("pinyin_spaced", "ren yi ruan jian", "H001"), ("initials", "ryrj", "H001"),
        ("traditional", "廣州人易軟件", "H001"), ("city_prefix", "广州人易软件", "H001"), ("latin_case", "muller", "H006"), ("latin_case", "MÜLLER", "H006"),
        ("latin_typo", "acme trdng", "H007"), ("latin_order", "trading acme", "H007"),
        ("phone_full", "+1 415 555 0100", "H007"), ("contact", "Jurgen Muller", "H006"),
        ("pinyin", "changjiangwuliu", "H008"), ("pinyin", "xingjiantiyu", "H009"), ("initials", "xjty", "H009"),
        ("hanzi_short", "东方嘉禾", "H010"), ("wrong_char", "人易软建", "H001"),
    ]:
        queries.append((kind, query, code))
    with (HERE / "lookup_queries.tsv").open("w", encoding="utf-8") as fh:
        fh.write("kind\tquery\texpected\n")
        for kind, query, expected in queries:
            fh.write(f"{kind}\t{query}\t{expected}\n")
    print(f"{len(customers)} customers, {len(contacts)} contacts, {len(queries)} queries:",
          dict(Counter(k for k, _, _ in queries)))


if __name__ == "__main__":
    asyncio.run(main())
