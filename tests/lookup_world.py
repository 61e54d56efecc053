"""A seeded, synthetic customer base with near-duplicate families, plus labelled lookup queries.

`make_world(seed)` returns customers, contacts and queries "as reps really type them" (pinyin, typos,
surname + last four digits of a mobile, a switchboard fragment, English, odd punctuation, ...).  Every
query except the "absent" ones has exactly ONE right customer: the generator checks, with simple
explicit rules over the structured fields (never with the lookup code under test), which customers
satisfy the query's parts, and keeps the query only if exactly one does.

Rules used to decide who "satisfies" a query (see `_Base.who_parts` and friends):
  * A customer's location is its branch city for a branch, else its city.
  * A query naming 分公司 can only mean a branch; its city must be the branch's city.
  * A query naming a city (no 分公司) means any customer located there (head office or branch).
  * A query naming no city and no 分公司 means a head office.
  * Hanzi parts compare by hanzi; pinyin / English parts compare by pinyin, so 华星 and 华兴 both
    satisfy "huaxing"; initials ("hx") compare by the brand's pinyin initials.
  * person_digits: contact surname + the contact's mobile ends with the digits.
  * switchboard: area code of the customer's phone + its local part contains the digits; a bare local
    number must equal the local part.
  * absent: no customer with the same brand pinyin, trade and location city.

Deterministic for a given seed: only random.Random(seed) is used, and sets are never iterated unsorted.
Run `python tests/lookup_world.py` for a summary with examples.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache

from pypinyin import lazy_pinyin

FORMS = ("exact", "city_brand_trade", "punctuation", "word_order", "mixed_script", "english",
         "person_digits", "switchboard", "person_city", "branch", "pinyin_typo", "absent")

# City -> telephone area code.  The first twelve are weighted as bigger markets.
CITIES: dict[str, str] = {
    "上海": "021", "北京": "010", "广州": "020", "深圳": "0755", "天津": "022", "重庆": "023",
    "杭州": "0571", "南京": "025", "武汉": "027", "成都": "028", "西安": "029", "苏州": "0512",
    "佛山": "0757", "福州": "0591", "宁波": "0574", "青岛": "0532", "厦门": "0592", "台州": "0576",
    "无锡": "0510", "东莞": "0769", "长沙": "0731", "郑州": "0371", "济南": "0531", "沈阳": "024",
    "大连": "0411", "合肥": "0551", "昆明": "0871", "南昌": "0791", "石家庄": "0311", "哈尔滨": "0451",
    "长春": "0431", "太原": "0351", "南宁": "0771", "贵阳": "0851", "温州": "0577", "泉州": "0595",
    "常州": "0519", "绍兴": "0575", "嘉兴": "0573", "金华": "0579", "中山": "0760", "珠海": "0756",
    "烟台": "0535", "惠州": "0752",
}
SEVEN_DIGIT_CITIES = ("珠海", "烟台", "惠州")  # local numbers of 7 digits; the rest have 8
CITY_LIST = list(CITIES)
CITY_WEIGHTS = [3 if i < 12 else 1 for i in range(len(CITY_LIST))]

TRADE_EN: dict[str, str] = {
    "贸易": "trading", "科技": "technology", "物流": "logistics", "医疗器械": "medical devices",
    "建材": "building materials", "包装": "packaging", "化工": "chemical", "电子": "electronics",
    "食品": "food", "汽车配件": "auto parts", "新材料": "new materials", "塑胶": "plastics",
    "机械": "machinery", "服装": "garments",
}
TRADES = list(TRADE_EN)

# Brand characters: common in firm names, no polyphones that would make pinyin ambiguous.
BRAND_CHARS = ("华星兴天亿鼎鸿宏圆元源辉晖栋佳嘉福新鑫信欣金锦盛胜达通恒衡泰博瑞锐隆龙昌丰峰荣安康"
               "宇明鸣光德正永诚顺祥凯宝利力创豪海联润骏俊柏汇腾飞捷鹏")
# Same pinyin (toneless) within a group: 华星 / 华兴, 圆辉 / 元辉, 鸿达 / 宏达 ...
HOMOPHONES = ("星兴", "圆元源", "鸿宏", "佳嘉", "辉晖", "鑫新信欣", "金锦", "盛胜", "丰峰", "龙隆",
              "恒衡", "明鸣", "利力", "骏俊", "瑞锐")
HOMOPHONE_OF = {ch: group for group in HOMOPHONES for ch in group}

# (template, weight, extra word in the name)
SHAPES = (
    ("{city}市{brand}{trade}有限公司", 25, ""),
    ("{city}{brand}{trade}有限公司", 15, ""),
    ("{city}{brand}{trade}股份有限公司", 14, "股份"),
    ("{brand}({city}){trade}有限公司", 14, ""),
    ("{city}{brand}国际{trade}有限公司", 12, "国际"),
    ("{city}市{brand}{trade}集团有限公司", 10, "集团"),
    ("{city}{brand}控股{trade}有限公司", 10, "控股"),
)
WORD_EN = {"国际": "International", "控股": "Holding", "集团": "Group"}

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董程曹袁邓许傅沈彭吕"
SURNAME_WEIGHTS = [10 if i < 10 else 2 for i in range(len(SURNAMES))]
GIVEN = ("伟 芳 娜 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 霞 平 刚 丹 玲 萍 红 斌 鹏 辉 俊 波 莉 "
         "秀英 桂英 建国 建华 志强 海燕 晓东 文杰 雪梅 玉兰 国华 春燕 婷婷 立新 红梅 志刚").split()
COMMON_NAMES = ("张伟 王伟 王芳 李伟 李娜 张敏 李静 王静 刘伟 王秀英 张丽 李秀英 王丽 张静 李强 王磊 "
                "刘洋 陈静 杨勇 李军 张勇 王军 刘芳 李建国 陈杰 黄磊 周涛 吴敏 赵丽 杨帆").split()
TITLES = ("总经理", "副总经理", "董事长", "老板", "采购经理", "采购", "销售经理", "财务", "工程师",
          "技术总监", "仓库主管", None)
HONORIFIC = {"总经理": "总", "副总经理": "总", "董事长": "总", "老板": "总", "技术总监": "总",
             "采购经理": "经理", "销售经理": "经理", "工程师": "工"}
MOBILE_PREFIXES = ("130 131 132 133 135 136 137 138 139 150 151 152 155 158 159 166 176 177 "
                   "180 181 186 187 188 189 199").split()
NICE_TAILS = ("8888 6666 1234 0000 5678 9999 8000 6688 1688 2888 3888 5555 7777 8899 1111 2345 "
              "6789 3333 9888 8866").split()
KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


@dataclass(frozen=True)
class WorldCustomer:
    code: str                 # ERP code, unique, e.g. "K000123"
    name: str                 # full legal name
    short_name: str | None    # e.g. "华星贸易"
    english: str | None       # stored English name (~15%, head offices only)
    phone: str | None         # switchboard "0591-67701234"
    city: str                 # the city in the name (a branch's head office city)
    brand: str                # 2 hanzi
    trade: str
    branch_city: str | None   # the branch's city; None for a head office


@dataclass(frozen=True)
class WorldContact:
    customer_code: str
    name: str
    title: str | None
    mobile: str | None


@dataclass(frozen=True)
class WorldQuery:
    form: str
    query: str
    expected: str | None      # the right customer's code; None for "absent"


@cache
def py(hanzi: str) -> str:
    """Run-on toneless lowercase pinyin of some hanzi: 华星 -> "huaxing"."""
    return "".join(lazy_pinyin(hanzi)).lower()


@cache
def initials(hanzi: str) -> str:
    """First letter of each syllable: 华星 -> "hx"."""
    return "".join(s[0] for s in lazy_pinyin(hanzi)).lower()


def fullwidth(text: str) -> str:
    """ASCII -> full-width forms (ＨＵＡＸＩＮＧ), space -> ideographic space."""
    return "".join("\u3000" if ch == " " else chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def loc(c: WorldCustomer) -> str:
    """Where the customer is: the branch city for a branch, else the city."""
    return c.branch_city or c.city


class _Base:
    """Builds the customer base and answers "who satisfies these parts?" from indexes."""

    def __init__(self, rng: random.Random, customers: int):
        self.rng = rng
        self.customers: list[WorldCustomer] = []
        self.contacts: list[WorldContact] = []
        self.word: dict[str, str] = {}          # code -> 国际/集团/控股/股份/""
        self._firms: list[dict] = []             # drafts before codes/phones are assigned
        self._names: set[str] = set()
        self._make_firms(customers)
        self._finish()
        self._index()

    # ---------------------------------------------------------------- generation
    def _city(self) -> str:
        return self.rng.choices(CITY_LIST, CITY_WEIGHTS)[0]

    def _add(self, city: str, brand: str, trade: str, shape: tuple, head: dict | None = None,
             branch_city: str | None = None) -> dict | None:
        if head is None:
            name = shape[0].format(city=city, brand=brand, trade=trade)
        else:
            name = f"{head['name']}{branch_city}分公司"
        if name in self._names:
            return None
        self._names.add(name)
        firm = dict(name=name, city=city, brand=brand, trade=trade, word=shape[2], branch_city=branch_city)
        self._firms.append(firm)
        return firm

    def _new_brand(self, brands: list[str], seen: set[str]) -> tuple[str, str | None]:
        """A fresh brand; about a quarter are homophones of an existing one (returned as the origin)."""
        rng = self.rng
        while True:
            if brands and rng.random() < 0.25:
                origin = rng.choice(brands)
                i = rng.randrange(2)
                group = HOMOPHONE_OF.get(origin[i])
                if not group:
                    continue
                brand = origin[:i] + rng.choice([ch for ch in group if ch != origin[i]]) + origin[i + 1:]
            else:
                origin = None
                brand = "".join(rng.sample(BRAND_CHARS, 2))
            same_sound = HOMOPHONE_OF.get(brand[0], brand[0]) == HOMOPHONE_OF.get(brand[1], brand[1])
            if brand not in seen and not same_sound and brand not in CITIES:
                return brand, origin   # no 鸿鸿, 辉晖 or 嘉兴

    def _make_firms(self, total: int) -> None:
        rng = self.rng
        n_branches = round(total * 0.08)
        n_heads = total - n_branches
        brands: list[str] = []
        seen: set[str] = set()
        family: dict[str, list[dict]] = {}
        shapes, shape_w = list(SHAPES), [s[1] for s in SHAPES]
        while len(self._firms) < n_heads:
            brand, origin = self._new_brand(brands, seen)
            brands.append(brand)
            seen.add(brand)
            family[brand] = []
            size = rng.choices((1, 2, 3, 4, 5, 6, 8), (14, 20, 20, 16, 12, 10, 8))[0]
            home_trade, home_city = rng.choice(TRADES), self._city()
            for _ in range(size):
                if len(self._firms) >= n_heads:
                    break
                if origin and family[origin] and rng.random() < 0.5:   # 华兴贸易 beside 华星贸易
                    twin = rng.choice(family[origin])
                    city, trade = twin["city"], twin["trade"]
                else:
                    trade = home_trade if rng.random() < 0.5 else rng.choice(TRADES)
                    city = home_city if rng.random() < 0.3 else self._city()
                firm = self._add(city, brand, trade, rng.choices(shapes, shape_w)[0])
                if firm is None:
                    continue
                family[brand].append(firm)
                if rng.random() < 0.06 and len(self._firms) < n_heads:   # 西安柏骏控股化工 beside 西安市柏骏化工股份
                    twin = self._add(city, brand, trade, rng.choices(shapes, shape_w)[0])
                    if twin:
                        family[brand].append(twin)
        heads = list(self._firms)
        with_branches: list[dict] = []
        branch_count: Counter = Counter()
        while len(self._firms) < total:
            head = rng.choice(with_branches) if with_branches and rng.random() < 0.25 else rng.choice(heads)
            bcity = self._city()
            if bcity == head["city"] or branch_count[head["name"]] >= 4:
                continue
            shape = ("", 0, head["word"])
            if self._add(head["city"], head["brand"], head["trade"], shape, head, bcity):
                branch_count[head["name"]] += 1
                with_branches.append(head)

    def _phone(self, city: str, used: set[str], prefixes: dict[str, list[str]]) -> str:
        """Switchboard: area code + 7/8 digits; exchange prefixes and 'nice' tails repeat within a city."""
        rng = self.rng
        length = 7 if city in SEVEN_DIGIT_CITIES else 8
        if city not in prefixes:
            prefixes[city] = [str(rng.randint(2, 8)) + "".join(rng.choice("0123456789") for _ in range(length - 5))
                              for _ in range(90)]
        while True:
            tail = rng.choice(NICE_TAILS) if rng.random() < 0.25 else f"{rng.randrange(10000):04d}"
            phone = f"{CITIES[city]}-{rng.choice(prefixes[city])}{tail}"
            if phone not in used:
                used.add(phone)
                return phone

    def _mobile(self, tails: list[str], used: set[str]) -> str:
        """A unique 11-digit mobile; most last-fours come from a small shared pool."""
        rng = self.rng
        while True:
            tail = rng.choice(tails) if rng.random() < 0.7 else f"{rng.randrange(10000):04d}"
            mobile = f"{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10000):04d}{tail}"
            if mobile not in used:
                used.add(mobile)
                return mobile

    def _contact_name(self) -> str:
        rng = self.rng
        if rng.random() < 0.35:
            return rng.choice(COMMON_NAMES)
        return rng.choices(SURNAMES, SURNAME_WEIGHTS)[0] + rng.choice(GIVEN)

    def _finish(self) -> None:
        """Codes, short/English names, phones and contacts; then shuffle into a realistic order."""
        rng = self.rng
        codes = [f"K{n:06d}" for n in rng.sample(range(1, 1_000_000), len(self._firms))]
        heads = sum(1 for f in self._firms if f["branch_city"] is None)
        english_p = 0.15 * len(self._firms) / max(heads, 1)
        used_phones: set[str] = set()
        used_mobiles: set[str] = set()
        prefixes: dict[str, list[str]] = {}
        tails = [f"{n:04d}" for n in rng.sample(range(10000), 300)]
        for code, f in zip(codes, self._firms, strict=True):
            brand, trade, city, bcity, word = f["brand"], f["trade"], f["city"], f["branch_city"], f["word"]
            short = None
            if rng.random() < 0.5:
                if bcity:
                    short = brand + bcity
                else:
                    short = rng.choice([brand + trade, brand + trade, city + brand,
                                        brand + (word if word == "国际" else trade)])
            english = None
            if bcity is None and rng.random() < english_p:
                parts = [py(city).title(), py(brand).title()]
                if word in ("国际", "控股"):
                    parts.append(WORD_EN[word])
                parts.append(TRADE_EN[trade].title())
                if word == "集团":
                    parts.append("Group")
                english = " ".join(parts) + " Co., Ltd."
            phone = self._phone(bcity or city, used_phones, prefixes) if rng.random() < 0.88 else None
            self.customers.append(WorldCustomer(code, f["name"], short, english, phone, city, brand, trade, bcity))
            self.word[code] = word
            for _ in range(rng.choices((0, 1, 2, 3, 4), (10, 30, 30, 20, 10))[0]):
                mobile = self._mobile(tails, used_mobiles) if rng.random() < 0.85 else None
                self.contacts.append(WorldContact(code, self._contact_name(), rng.choice(TITLES), mobile))
        rng.shuffle(self.customers)
        rng.shuffle(self.contacts)

    # ---------------------------------------------------------------- indexes and "who satisfies"
    def _index(self) -> None:
        self.by_code = {c.code: c for c in self.customers}
        self.by_name = {c.name: c for c in self.customers}
        self.by_brand_py: dict[str, list[WorldCustomer]] = defaultdict(list)
        self.by_initials: dict[str, list[WorldCustomer]] = defaultdict(list)
        self.by_area: dict[str, list[WorldCustomer]] = defaultdict(list)
        self.by_local: dict[str, list[WorldCustomer]] = defaultdict(list)
        for c in self.customers:
            self.by_brand_py[py(c.brand)].append(c)
            self.by_initials[initials(c.brand)].append(c)
            if c.phone:
                area, local = c.phone.split("-")
                self.by_area[area].append(c)
                self.by_local[local].append(c)
        self.by_tail: dict[str, list[WorldContact]] = defaultdict(list)
        self.by_person: dict[str, list[WorldContact]] = defaultdict(list)
        for p in self.contacts:
            self.by_person[p.name].append(p)
            if p.mobile:
                self.by_tail[p.mobile[-4:]].append(p)
        self.heads = [c for c in self.customers if c.branch_city is None]
        self.branches = [c for c in self.customers if c.branch_city]
        head_names = {c.name for c in self.heads}
        self.heads_with_branches = sorted({c.name[:-len(c.branch_city) - 3] for c in self.branches} & head_names)
        where = Counter((py(loc(c)), py(c.brand)) for c in self.customers)
        self.near_dups = [c for c in self.heads if where[(py(c.city), py(c.brand))] > 1]
        families = Counter((c.brand, c.trade) for c in self.heads)
        self.spread = [c for c in self.heads if families[(c.brand, c.trade)] > 1]
        self.english = [c for c in self.heads if c.english]
        self.intl = [c for c in self.heads if self.word[c.code] == "国际"]
        self.mobiles = [p for p in self.contacts if p.mobile]
        self.phones = [c for c in self.customers if c.phone]
        # clean pinyin strings a typo must not collide with
        self.clean_pinyin: set[str] = set()
        for c in self.customers:
            b, t = py(c.brand), py(c.trade)
            self.clean_pinyin.update({b, b + t, py(loc(c)) + b, py(loc(c)) + b + t, py(c.city) + b + t})

    def who_parts(self, *, city: str | None = None, city_py: str | None = None, brand: str | None = None,
                  brand_py: str | None = None, brand_ini: str | None = None, trade: str | None = None,
                  word: str | None = None, branch: bool = False) -> list[str]:
        """Codes of customers satisfying the given parts (rules in the module docstring)."""
        if brand:
            pool = self.by_brand_py.get(py(brand), [])
        elif brand_py:
            pool = self.by_brand_py.get(brand_py, [])
        else:
            pool = self.by_initials.get(brand_ini or "", [])
        has_city = bool(city or city_py)
        out = []
        for c in pool:
            is_branch = c.branch_city is not None
            if (branch and not is_branch) or (not branch and is_branch and not has_city):
                continue
            if (city and loc(c) != city) or (city_py and py(loc(c)) != city_py):
                continue
            if (brand and c.brand != brand) or (brand_py and py(c.brand) != brand_py):
                continue
            if (brand_ini and initials(c.brand) != brand_ini) or (trade and c.trade != trade):
                continue
            if word and self.word[c.code] != word:
                continue
            out.append(c.code)
        return sorted(out)

    def who_person_digits(self, surname: str, digits: str) -> list[str]:
        return sorted({p.customer_code for p in self.by_tail.get(digits[-4:], [])
                       if p.name.startswith(surname) and p.mobile.endswith(digits)})

    def who_person_city(self, name: str, city: str) -> list[str]:
        return sorted({p.customer_code for p in self.by_person.get(name, [])
                       if loc(self.by_code[p.customer_code]) == city})

    def who_switchboard(self, area: str, digits: str) -> list[str]:
        return sorted(c.code for c in self.by_area.get(area, []) if digits in c.phone.split("-")[1])


class _Queries:
    """One builder per form; each returns (query, intended code or None, codes that satisfy it)."""

    def __init__(self, base: _Base, rng: random.Random):
        self.b, self.rng = base, rng

    def _pick(self, preferred: list, p: float = 1.0, fallback: list | None = None):
        """An item of `preferred` with probability p (if it has any), else of `fallback`."""
        pool = preferred if preferred and self.rng.random() < p else (fallback or preferred)
        if not pool:
            raise LookupError("nothing to pick from")   # a tiny world: this attempt fails
        return self.rng.choice(pool)

    def exact(self):
        c = self._pick(self.b.near_dups, 0.7, self.b.customers)
        return c.name, c.code, [self.b.by_name[c.name].code]

    def city_brand_trade(self):
        c = self._pick(self.b.spread, 0.7, self.b.heads)
        return f"{c.city}{c.brand}{c.trade}", c.code, self.b.who_parts(city=c.city, brand=c.brand, trade=c.trade)

    def punctuation(self):
        rng, b = self.rng, self.b
        c = self._pick(b.english, 0.15, b.heads)
        cbt = dict(city=c.city, brand=c.brand, trade=c.trade)
        kind = rng.choice(("stop", "quote_name", "quote_parts", "brackets", "fullwidth", "separators"))
        if kind == "stop":
            return c.name + "。", c.code, [c.code]
        if kind == "quote_name":
            return f"“{c.name}”", c.code, [c.code]
        if kind == "quote_parts":
            return f"“{c.city}{c.brand}{c.trade}”", c.code, b.who_parts(**cbt)
        if kind == "brackets":
            if "(" in c.name:
                return c.name.replace("(", "（").replace(")", "）"), c.code, [c.code]
            return f"{c.brand}（{c.city}）{c.trade}", c.code, b.who_parts(**cbt)
        if kind == "fullwidth":
            text = (c.english.replace(" Co., Ltd.", "") if c.english
                    else f"{py(c.brand)} {TRADE_EN[c.trade]}").upper()
            has_city = text.startswith(py(c.city).upper() + " ")
            who = b.who_parts(city_py=py(c.city) if has_city else None, brand_py=py(c.brand), trade=c.trade,
                              word=self.b.word[c.code] if " INTERNATIONAL" in text or " HOLDING" in text
                              or " GROUP" in text else None)
            return fullwidth(text), c.code, who
        sep = rng.choice(("、", "·", "\u3000"))
        return sep.join((c.city, c.brand, c.trade)), c.code, b.who_parts(**cbt)

    def word_order(self):
        c = self._pick(self.b.heads)
        city, brand, trade = c.city, c.brand, c.trade
        query, with_trade = self.rng.choice((
            (f"{trade} {city}{brand}", True), (f"{brand} {city}", False), (f"{brand}{trade} {city}", True),
            (f"{trade} {brand} {city}", True), (f"{city} {trade} {brand}", True), (f"{brand} {city}{trade}", True)))
        return query, c.code, self.b.who_parts(city=city, brand=brand, trade=trade if with_trade else None)

    def mixed_script(self):
        b, kind = self.b, self.rng.randrange(6)
        c = self._pick(b.intl if kind == 5 else [], 0.6, b.heads)
        bp, tp, cp = py(c.brand), py(c.trade), py(c.city)
        if kind == 0:
            return f"{bp}{c.trade}", c.code, b.who_parts(brand_py=bp, trade=c.trade)
        if kind == 1:
            return f"{c.brand}{TRADE_EN[c.trade]}", c.code, b.who_parts(brand=c.brand, trade=c.trade)
        if kind == 2:
            who = b.who_parts(brand_ini=initials(c.brand), trade=c.trade)
            if len(who) == 1:
                return f"{initials(c.brand)}{c.trade}", c.code, who
            return (f"{c.city}{initials(c.brand)}{c.trade}", c.code,
                    b.who_parts(city=c.city, brand_ini=initials(c.brand), trade=c.trade))
        if kind == 3:
            return f"{c.city}{bp}", c.code, b.who_parts(city=c.city, brand_py=bp)
        if kind == 4:
            return f"{cp}{bp}{tp}", c.code, b.who_parts(city_py=cp, brand_py=bp, trade=c.trade)
        middle = "guoji" if b.word[c.code] == "国际" else ""
        return f"{bp}{middle}{tp}", c.code, b.who_parts(brand_py=bp, trade=c.trade)

    def english(self):
        rng, b = self.rng, self.b
        c = self._pick(b.english, 0.3, b.heads)
        if c.english:   # a contiguous part of the stored name, always with the brand
            rest = c.english.replace(" Co., Ltd.", "").split(" ", 2)[2]   # what follows city + brand
            tokens = [("city", py(c.city).title()), ("brand", py(c.brand).title())]
            word_en = WORD_EN[b.word[c.code]] if b.word[c.code] in ("国际", "控股") else ""
            for key, en in (("word", word_en), ("trade", TRADE_EN[c.trade].title()), ("group", "Group")):
                if en and en in rest:
                    tokens.append((key, en))
            start = rng.randint(0, 1)
            end = rng.randint(max(start + 2, 2), len(tokens))
            chosen = tokens[start:end]
            keys = {k for k, _ in chosen}
            query = " ".join(t for _, t in chosen)
            who = b.who_parts(city_py=py(c.city) if "city" in keys else None, brand_py=py(c.brand),
                              trade=c.trade if "trade" in keys else None,
                              word=b.word[c.code] if keys & {"word", "group"} else None)
        else:
            with_city = rng.random() < 0.35
            query = (f"{py(c.city)} " if with_city else "") + f"{py(c.brand)} {TRADE_EN[c.trade]}"
            who = b.who_parts(city_py=py(c.city) if with_city else None, brand_py=py(c.brand), trade=c.trade)
        query = rng.choice((query.lower(), query.title(), query.upper(), query))
        return query, c.code, who

    def person_digits(self):
        p = self._pick(self.b.mobiles)
        surname, digits = p.name[0], p.mobile[-4:]
        hon = HONORIFIC.get(p.title or "") or self.rng.choice(("老师", "姐", "总"))
        query = self.rng.choice((f"{surname}{hon}{digits}", f"{surname} {digits}", f"{surname}{hon} 尾号{digits}",
                                 f"{surname}{hon} {digits}"))
        return query, p.customer_code, self.b.who_person_digits(surname, digits)

    def switchboard(self):
        c = self._pick(self.b.phones)
        area, local = c.phone.split("-")
        kind = self.rng.randrange(4)
        if kind < 3:      # area code + the first or last four digits
            digits = local[:4] if kind == 0 else local[-4:]
            query = (f"{area} {digits}", f"({area}){digits}", f"{area}-{digits}")[kind]
            return query, c.code, self.b.who_switchboard(area, digits)
        query = f"{local[:-4]}-{local[-4:]}" if self.rng.random() < 0.7 else local
        return query, c.code, sorted(x.code for x in self.b.by_local[local])

    def person_city(self):
        p = self._pick(self.b.contacts)
        city = loc(self.b.by_code[p.customer_code])
        query = self.rng.choice((f"{p.name} {city}", f"{city} {p.name}", f"{city}{p.name}"))
        return query, p.customer_code, self.b.who_person_city(p.name, city)

    def branch(self):
        rng, b = self.rng, self.b
        if rng.random() < 0.4:
            c = self._pick(b.branches)
            brand, bc = c.brand, c.branch_city
            query, with_trade = rng.choice(((f"{brand}{bc}分公司", False), (f"{bc}{brand}分公司", False),
                                            (f"{brand}({bc})分公司", False), (f"{brand}{c.trade}{bc}分公司", True)))
            return query, c.code, b.who_parts(city=bc, brand=brand, trade=c.trade if with_trade else None,
                                              branch=True)
        c = b.by_name[self._pick(b.heads_with_branches)]   # the head office: no 分公司, the least that is unique
        who = b.who_parts(brand=c.brand, trade=c.trade)
        if who == [c.code]:
            return f"{c.brand}{c.trade}", c.code, who
        who = b.who_parts(city=c.city, brand=c.brand)
        if who == [c.code]:
            return f"{c.city}{c.brand}", c.code, who
        return f"{c.city}{c.brand}{c.trade}", c.code, b.who_parts(city=c.city, brand=c.brand, trade=c.trade)

    def _typo(self, syllables: list[str]) -> str:
        """One typo: dropped/doubled letter, keyboard neighbour, zh<->z, sh<->s, ch<->c, ng<->n."""
        rng = self.rng
        s = "".join(syllables)
        kind = rng.randrange(4)
        i = rng.randrange(len(s))
        if kind < 2:      # drop or double a letter
            return s[:i] + s[i] * kind + s[i + 1:]
        if kind == 2:
            row = next(r for r in KEYBOARD if s[i] in r)
            j = row.index(s[i])
            near = [row[k] for k in (j - 1, j + 1) if 0 <= k < len(row)]
            return s[:i] + rng.choice(near) + s[i + 1:]
        out = list(syllables)
        k = rng.randrange(len(out))
        syl = out[k]
        if syl[:2] in ("zh", "ch", "sh"):
            out[k] = syl[0] + syl[2:]
        elif syl[0] in "zcs":
            out[k] = syl[0] + "h" + syl[1:]
        elif syl.endswith("ng"):
            out[k] = syl[:-1]
        elif syl.endswith("n"):
            out[k] = syl + "g"
        else:
            return s[:i] + s[i + 1:]
        return "".join(out)

    def pinyin_typo(self):
        c = self._pick(self.b.heads)
        with_city = self.rng.random() < 0.4
        syllables = (lazy_pinyin(c.city) if with_city else []) + lazy_pinyin(c.brand) + lazy_pinyin(c.trade)
        query = self._typo([s.lower() for s in syllables])
        if query in self.b.clean_pinyin or query == "".join(syllables):
            return query, c.code, []          # collides with a real firm's spelling: drop
        who = self.b.who_parts(city_py=py(c.city) if with_city else None, brand_py=py(c.brand), trade=c.trade)
        return query, c.code, who

    def absent(self):
        rng, b = self.rng, self.b
        known = b.customers and rng.random() < 0.7
        brand = rng.choice(b.customers).brand if known else "".join(rng.sample(BRAND_CHARS, 2))
        city, trade = rng.choice(CITY_LIST), rng.choice(TRADES)
        if b.who_parts(city=city, brand_py=py(brand), trade=trade):
            return "", None, ["taken"]
        shape = rng.choice((SHAPES[0], SHAPES[1], SHAPES[4]))
        query = rng.choice((f"{city}{brand}{trade}", shape[0].format(city=city, brand=brand, trade=trade),
                            f"{brand}{trade} {city}"))
        return query, None, []


def make_world(seed: int = 20, customers: int = 5000, queries: int = 3000
               ) -> tuple[list[WorldCustomer], list[WorldContact], list[WorldQuery]]:
    """The customer base, its contacts and labelled queries (about `queries`, split evenly over FORMS)."""
    rng = random.Random(seed)
    base = _Base(rng, customers)
    builders = _Queries(base, rng)
    out: list[WorldQuery] = []
    per, extra = divmod(queries, len(FORMS))
    for n, form in enumerate(FORMS):
        want = per + (n < extra)
        seen: set[str] = set()
        made = 0
        for _ in range(want * 60):
            if made >= want:
                break
            try:
                query, expected, who = getattr(builders, form)()
            except LookupError:     # nothing of that kind in a tiny world
                continue
            ok = who == [] if expected is None else who == [expected]
            if ok and query and query not in seen:
                seen.add(query)
                out.append(WorldQuery(form, query, expected))
                made += 1
    return base.customers, base.contacts, out


def summary(world: tuple[list[WorldCustomer], list[WorldContact], list[WorldQuery]], examples: int = 3) -> str:
    """Counts of the base and per form, with a few example queries and their expected customers."""
    customers, contacts, queries = world
    names = {c.code: c.name for c in customers}
    count = lambda items, field: sum(1 for x in items if getattr(x, field))  # noqa: E731
    lines = [f"customers {len(customers)} (branches {count(customers, 'branch_city')}, english "
             f"{count(customers, 'english')}, phones {count(customers, 'phone')}, short names "
             f"{count(customers, 'short_name')}); contacts {len(contacts)} (mobiles {count(contacts, 'mobile')}); "
             f"queries {len(queries)}"]
    for form in FORMS:
        got = [q for q in queries if q.form == form]
        lines.append(f"{form:17} {len(got):5}")
        lines += [f"    {q.query!r:44} -> {names.get(q.expected or '', '(none)')}" for q in got[:examples]]
    return "\n".join(lines)


if __name__ == "__main__":
    import time
    started = time.perf_counter()
    world = make_world()
    took = time.perf_counter() - started
    print(summary(world))
    print(f"generated in {took:.2f}s")


def documents(customers: list[WorldCustomer], contacts: list[WorldContact]):
    """The world as the lookup indexes it (services.lookup.CustomerText, ids 1…n in the customers' order),
    and {customer code: id}."""
    from services.lookup import CustomerText
    from services.parsing import phone_digits

    people: dict[str, list[WorldContact]] = defaultdict(list)
    for person in contacts:
        people[person.customer_code].append(person)
    docs, ids = [], {}
    for n, c in enumerate(customers, 1):
        ids[c.code] = n
        names = [c.name] + [extra for extra in (c.short_name, c.english) if extra]
        own = [phone_digits(c.phone)] if c.phone else []
        theirs = people[c.code]
        docs.append(CustomerText(n, None, names, [p.name for p in theirs],
                                 own + [phone_digits(p.mobile) for p in theirs if p.mobile],
                                 [[phone_digits(p.mobile)] if p.mobile else [] for p in theirs]))
    return docs, ids


def score_forms(search, queries: list[WorldQuery], ids: dict[str, int]) -> dict[str, tuple[int, int, int]]:
    """Per form: (right first, right in the top three, queries). `search(query)` returns customer ids, best
    first. For "absent" queries, "right" means nothing confident (the caller's search returns [] then)."""
    out: dict[str, list[int]] = {form: [0, 0, 0] for form in FORMS}
    for q in queries:
        found = search(q.query)
        row = out[q.form]
        row[2] += 1
        if q.expected is None:
            row[0] += not found
            row[1] += not found
        else:
            want = ids[q.expected]
            row[0] += found[:1] == [want]
            row[1] += want in found[:3]
    return {form: tuple(row) for form, row in out.items() if row[2]}
