"""What a rep typed, taken apart: cities, branch, people, digits and the words left (services.lookup).

Rules:
- Normalise first, on both sides: NFKC (full-width letters and digits, the full-width space), case,
  Traditional → Simplified (textnorm.fold), then every punctuation mark or symbol — 。“”（）、·- and
  the like — is a space.
- A query is split into runs of one script: hanzi, Latin letters, digits (华星trading → 华星 · trading).
- Cities (textnorm.PLACES) are taken out of a hanzi run at its start, right before 分公司, or when the
  run is nothing else; in Latin, a city's pinyin at the start of a run (shanghaihuaxing → 上海 + huaxing).
- 分公司 (branch office) asks for a branch; legal words (有限公司, 股份 …) say nothing and go.
- A surname followed by an honorific (总, 经理, 工, 老师, 姐, 哥, 先生, 女士 …) is a person; digits right
  after a person are the end of that person's mobile (李总3349, 张经理 尾号8888). 尾号 / 尾数 / 手机 / 电话
  are dropped.
- English trade words (data: services/data/trade_words.tsv, both ways) stand for their hanzi:
  "huaxing trading" = huaxing 贸易.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from services.textnorm import PLACES, char_readings, fold, reading_variants, segment_pinyin

DATA = Path(__file__).resolve().parent / "data"

HONORIFICS = ("总经理", "董事长", "经理", "老板", "老师", "主任", "部长", "先生", "女士", "小姐", "总监", "总", "工",
              "姐", "哥", "董")
NOISE = ("尾号是", "尾号", "尾数", "手机", "电话", "号码", "联系人")
LEGAL = re.compile(r"(?:股份有限公司|有限责任公司|集团有限公司|有限公司|股份公司|总公司|公司|股份|有限)$")
BRANCH = "分公司"
SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆"
    "汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易"
    "乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管"
    "柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟"
    "邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝")
COMPOUND = ("欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "慕容", "令狐", "司徒", "夏侯", "公孙", "宇文")
SURNAMES_ALL = SURNAMES | frozenset(COMPOUND)
_HAN_CHAR = re.compile(r"[\u3400-\u9fff]")
_SYMBOLS = re.compile(r"[\W_]+")
_RUNS = re.compile(r"[\u3400-\u9fff]+|[a-z]+|\d+")


def clean(text: str) -> str:
    """Folded (NFKC first), every punctuation mark and symbol a single space (the rule above)."""
    return clean_folded(fold(text))


def clean_folded(folded: str) -> str:
    """`clean` of text already folded (textnorm.fold)."""
    return _SYMBOLS.sub(" ", folded).strip()


def _load_trade_words() -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    english_to_han: dict[str, str] = {}
    han_to_english: dict[str, tuple[str, ...]] = {}
    lines = (DATA / "trade_words.tsv").read_text(encoding="utf-8").splitlines()[1:]
    for line in lines:
        han, _tab, words = line.partition("\t")
        names = tuple(w.strip().lower() for w in words.split(",") if w.strip())
        han_to_english[han] = names
        for name in names:
            english_to_han.setdefault(name, han)
    return english_to_han, han_to_english


ENGLISH_TRADE, TRADE_ENGLISH = _load_trade_words()
_ENGLISH_PHRASES = sorted(ENGLISH_TRADE, key=lambda w: (-len(w.split()), -len(w), w))


@lru_cache(maxsize=1)
def _city_spellings() -> tuple[tuple[str, str], ...]:
    """(pinyin, city) for every city, every common reading, longest spelling first."""
    out = set()
    for city in PLACES:
        for variant in reading_variants([r[:2] for r in char_readings(city)], limit=4):
            out.add(("".join(variant), city))
    return tuple(sorted(out, key=lambda x: (-len(x[0]), x[0], x[1])))


@dataclass
class Person:
    surname: str  # a surname (李) — with an honorific — or a whole name typed with one
    digits: str = ""  # the end of their mobile, when typed after them


@dataclass
class Parts:
    """A query taken apart (the module's rules)."""

    cleaned: str  # the normalised query (punctuation gone, single spaces)
    places: list[str] = field(default_factory=list)
    branch: bool = False
    people: list[Person] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)  # runs of digits in order (not a person's)
    han: list[str] = field(default_factory=list)  # hanzi words left (brand, trade, a contact's name …)
    latin: list[str] = field(default_factory=list)  # Latin words left (pinyin, initials, English)
    trades: list[str] = field(default_factory=list)  # hanzi trade words that English words stood for

    @property
    def words(self) -> int:
        """How many parts there are to satisfy."""
        return (len(self.places) + self.branch + len(self.people) + len(self.digits) + len(self.han)
                + len(self.latin) + len(self.trades))


def _split_places(run: str, parts: Parts) -> str:
    """Take the cities out of one hanzi run (at its start, before 分公司, or the whole run)."""
    changed = True
    while changed and run:
        changed = False
        for place in PLACES:
            if run.startswith(place) and (len(run) == len(place) or len(run) - len(place) >= 2
                                          or run[len(place):] in ("市", "省")):
                parts.places.append(place)
                run = run[len(place):].lstrip("市省")
                changed = True
                break
    if run.endswith(BRANCH) or run == "分公司":
        parts.branch = True
        run = run[:-len(BRANCH)]
        for place in PLACES:
            if run.endswith(place) and len(run) > len(place):
                parts.places.append(place)
                run = run[:-len(place)]
                break
    return run


def _person(run: str) -> Person | None:
    """A surname and an honorific (李总, 欧阳经理); a whole name only before a title of two characters or
    more (王建国经理) — 和图地工 is a firm's name with a typo, not Mr 和图地."""
    for title in HONORIFICS:
        if run.endswith(title) and len(run) > len(title):
            name = run[:-len(title)]
            if name in SURNAMES_ALL or (len(title) >= 2 and len(name) <= 3 and name[0] in SURNAMES):
                return Person(name)
    return None


def _city_of(word: str) -> str | None:
    """The city a Latin word spells exactly (tianjin → 天津), if any."""
    return _city_names().get(word)


@lru_cache(maxsize=1)
def _city_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for spelled, city in _city_spellings():
        names.setdefault(spelled, city)
    return names


def _latin(word: str, parts: Parts, *, first: bool) -> None:
    """One Latin run: a city's pinyin alone, or at the start of the first run, is a city; the rest
    stays a word."""
    city = _city_of(word)
    if city is not None:
        parts.places.append(city)
        return
    syllables = segment_pinyin(word) if first else None
    if syllables:
        # Only on a syllable boundary: xiangfeng is xiang·feng, not 西安 + gfeng.
        bounds = {len("".join(syllables[:k])) for k in range(1, len(syllables))}
        for spelled, city in _city_spellings():
            if word.startswith(spelled) and len(spelled) in bounds and len(word) - len(spelled) >= 4:
                parts.places.append(city)
                word = word[len(spelled):]
                break
    if word:
        parts.latin.append(word)


def is_pinyin(word: str) -> bool:
    """The word is whole pinyin syllables (hengdawuliu)."""
    syllables = segment_pinyin(word)
    return syllables is not None and len("".join(syllables)) == len(word)


def _merge_pinyin(runs: list[str]) -> list[str]:
    """Pinyin typed with spaces (heng da wu liu, shanghai huaxing) is one word: neighbouring Latin runs
    that are each pinyin are joined."""
    out: list[str] = []
    for run in runs:
        if out and run.isalpha() and run.isascii() and out[-1].isalpha() and out[-1].isascii() \
                and is_pinyin(run) and is_pinyin(out[-1]) and not _city_of(run) and not _city_of(out[-1]):
            out[-1] += run
        else:
            out.append(run)
    return out


def split(raw: str) -> Parts:
    """The parts of a query (the module's rules)."""
    cleaned = clean(raw)
    parts = Parts(cleaned)
    text = cleaned
    for noise in NOISE:
        text = text.replace(noise, " ")
    kept = []
    for chunk in text.split():  # digits inside a name (58同城, 3M中国, ABC123) stay in the name
        digits = sum(ch.isdigit() for ch in chunk)
        head = chunk.rstrip("0123456789")
        person_then_digits = head != chunk and (head in SURNAMES_ALL or _person(head) is not None)
        if 0 < digits < len(chunk) and digits < 7 and not person_then_digits:
            (parts.han if _HAN_CHAR.search(chunk) else parts.latin).append(chunk)
        else:
            kept.append(chunk)
    text = " ".join(_RUNS.findall(" ".join(kept)))  # 华星trading → 华星 trading (one script per run)
    # English trade phrases first (medical devices), as whole words.
    padded = f" {text} "
    for phrase in _ENGLISH_PHRASES:
        needle = f" {phrase} "
        while needle in padded:
            parts.trades.append(ENGLISH_TRADE[phrase])
            padded = padded.replace(needle, " ", 1)
    runs = _merge_pinyin(_RUNS.findall(padded))
    person: Person | None = None
    latin_seen = False
    for n, run in enumerate(runs):
        if len(run) <= 2 and run in SURNAMES_ALL and n + 1 < len(runs) and runs[n + 1].isdigit():
            person = Person(run)  # a surname alone before digits: 杨 4657
            parts.people.append(person)
            continue
        if run.isdigit():
            if person is not None and not person.digits:
                person.digits = run
            elif len(run) >= 4 or (run.startswith("0") and len(run) >= 3):
                parts.digits.append(run)
            else:
                parts.latin.append(run)  # a short number is part of a name, not of a phone (58 同城)
            continue
        person = None
        if "a" <= run[0] <= "z":
            _latin(run, parts, first=not latin_seen and not parts.han)
            latin_seen = True
            continue
        found = _person(run)
        if found is not None:
            parts.people.append(found)
            person = found
            continue
        rest = _split_places(run, parts)
        rest = LEGAL.sub("", rest) if len(rest) > 2 or rest in ("公司", "有限") else rest
        if rest:
            parts.han.append(rest)
    return parts


# --------------------------------------------------------------------------- what a document says


_PLACE_ALT = "|".join(PLACES)  # longest first
_BRANCH_CITY = re.compile(rf"({_PLACE_ALT})分公司$")


_PLACE_SET = frozenset(PLACES)
_PLACE_SIZES = tuple(sorted({len(place) for place in PLACES}, reverse=True))


@lru_cache(maxsize=50_000)
def facts(full_names: str) -> tuple[tuple[str, ...], str | None, bool]:
    """(places, branch city, is a branch): facts of a customer's cleaned full names (FIELD-joined by the
    caller, one string to cache). A plain tuple of strings, which the cycle collector leaves out of its
    passes (a cache of 50,000 dataclasses made them slow, issue 18; a named tuple is walked too): the
    cities at the start of a name or of a part of it — a city standing alone too (华星(上海)贸易 → "华星 上海
    贸易") — and a branch's city (…北京分公司). The longest city a part starts with, by set look-ups (a
    regular expression of every city tried each of them at every part: a fifth of the index build)."""
    places: set[str] = set()
    branch_city = None
    is_branch = False
    for name in full_names.split("\x1f"):
        start = 0
        while start >= 0:
            for size in _PLACE_SIZES:
                if name[start:start + size] in _PLACE_SET:
                    places.add(name[start:start + size])
                    break
            start = name.find(" ", start)
            start = start + 1 if start >= 0 else -1
        compact = name.replace(" ", "")
        if compact.endswith(BRANCH):
            is_branch = True
            found = _BRANCH_CITY.search(compact)
            if found:
                branch_city = found.group(1)
                places.add(branch_city)
    return tuple(sorted(places)), branch_city, is_branch


def area_split(digits: str) -> tuple[str, str]:
    """A mainland landline's area code and local number (010 / 02x: three digits, other 0xxx: four);
    ("", digits) for a mobile or a number without its area code."""
    if digits.startswith(("01", "02")) and len(digits) >= 10:
        return digits[:3], digits[3:]
    if digits.startswith("0") and len(digits) >= 10:
        return digits[:4], digits[4:]
    return "", digits
