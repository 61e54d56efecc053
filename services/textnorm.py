"""Normalising names for lookup: folding, boilerplate, pinyin.

Rules:
- Folding: full-width → ASCII, case-insensitive, accents dropped (Müller = muller), Traditional →
  Simplified (廣州 = 广州), so every form of a name compares equal.
- Boilerplate: city / province prefixes (广州市, 广东省…) and legal suffixes (有限公司, 股份, 集团, Co., Ltd.,
  Inc. …) are stripped to find the distinctive core of a company name (广州市人易软件技术有限公司 → 人易软件技术).
- Pinyin without tones, from a character table (fast enough for a million names); polyphonic characters
  keep their common readings (长 = zhang / chang), so a query in either reading matches.
- Surnames have their own readings (曾 zeng, 单 shan, 仇 qiu, 朴 piao, 覃 qin …), which the general
  table gets wrong: person names use SURNAME_READINGS for their first character(s).
"""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
from functools import lru_cache
from itertools import product
from pathlib import Path

# --------------------------------------------------------------------------- folding


def _t2s_table() -> dict[int, str]:
    import opencc

    table: dict[int, str] = {}
    path = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 1:
            table[ord(parts[0])] = parts[1].split()[0] if " " in parts[1] else parts[1][0]
    return table


_T2S = _t2s_table()
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_NOT_HAN = re.compile(r"[^\u3400-\u9fff\uf900-\ufaff]+")


def han_only(text: str) -> str:
    """The hanzi of `text`, in order."""
    return _NOT_HAN.sub("", text)


def is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def has_han(text: str) -> bool:
    return _HAN.search(text) is not None


def fold(text: str) -> str:
    """Width, case, accents and Traditional characters folded away."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_T2S)
    if not text.isascii():
        decomposed = unicodedata.normalize("NFD", text)
        if len(decomposed) != len(text):  # only Latin letters with accents decompose here
            text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return text


# --------------------------------------------------------------------------- boilerplate

_PLACES = (
    "北京 天津 上海 重庆 河北 山西 辽宁 吉林 黑龙江 江苏 浙江 安徽 福建 江西 山东 河南 湖北 湖南 广东 海南 四川 贵州 云南 "
    "陕西 甘肃 青海 台湾 内蒙古 广西 西藏 宁夏 新疆 香港 澳门 广州 深圳 东莞 佛山 珠海 中山 惠州 汕头 江门 湛江 厦门 "
    "福州 泉州 杭州 宁波 温州 绍兴 嘉兴 金华 台州 南京 苏州 无锡 常州 南通 徐州 扬州 合肥 芜湖 南昌 济南 青岛 烟台 "
    "潍坊 郑州 洛阳 武汉 宜昌 长沙 株洲 成都 绵阳 贵阳 昆明 西安 兰州 西宁 银川 乌鲁木齐 拉萨 南宁 桂林 柳州 海口 三亚 "
    "石家庄 唐山 保定 太原 大同 沈阳 大连 鞍山 长春 吉林 哈尔滨 大庆 呼和浩特 包头 廊坊 沧州 邯郸 秦皇岛 临沂 淄博 "
    "济宁 威海 日照 盐城 泰州 镇江 连云港 淮安 宿迁 湖州 舟山 丽水 衢州 漳州 莆田 龙岩 宁德 赣州 九江 上饶 "
    "襄阳 荆州 岳阳 衡阳 常德 南阳 新乡 许昌 开封 商丘 宝鸡 咸阳 榆林 遵义 曲靖 北海 梧州 肇庆 清远 揭阳 "
    "茂名 韶关 汕尾 潮州 河源 梅州 云浮 阳江 义乌 昆山 江阴 张家港 常熟 晋江 石狮 慈溪 余姚 德阳 宜宾 泸州 南充 "
    "锦州 营口 丹东 吉林 通化 齐齐哈尔 牡丹江 鄂尔多斯 赤峰 银川 克拉玛依 喀什"
).split()
PLACES: tuple[str, ...] = tuple(sorted(set(_PLACES), key=lambda p: (-len(p), p)))  # longest first
_PLACE_ALT = "|".join(sorted(set(_PLACES), key=len, reverse=True))
# Either places with their 省/市 suffix (广东省广州市…) or one bare place (广州人易): a second bare place
# name is more likely part of the brand (兰州广东电子).
_PLACE_RE = re.compile(rf"^(?:(?:(?:{_PLACE_ALT})(?:省|市|自治区|特别行政区))+|(?:{_PLACE_ALT}))")
_LEGAL_ZH = re.compile(
    r"(?:股份有限公司|有限责任公司|集团有限公司|集团股份有限公司|有限公司|股份公司|集团公司|总公司|分公司|集团|公司|股份)+$"
)
_LEGAL_EN = re.compile(
    r"(?:[\s,.]+(?:co|company|corp|corporation|inc|incorporated|ltd|limited|llc|plc|gmbh|group|holdings?)\b\.?)+[\s,.]*$"
)
_BRANCH = re.compile(r"[（(][^）)]*[）)]")


def core_name(folded: str) -> str:
    """The distinctive part of a folded company name: without place prefix, legal suffix, brackets."""
    text = _BRANCH.sub("", folded).strip()
    stripped = _PLACE_RE.sub("", text)
    stripped = _LEGAL_ZH.sub("", stripped)
    stripped = _LEGAL_EN.sub("", " " + stripped).strip(" ,.")
    return stripped or text


# --------------------------------------------------------------------------- pinyin

_TONES = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ", "aaaaeeeeiiiioooouuuuvvvvvnnnm")


def pinyin_table() -> dict[int, str]:
    """pypinyin's readings of each character (code point → "zhōng,zhòng"). Read from the package's data
    file when it is there: importing pypinyin itself also loads its phrase table, which nothing here
    uses — 0.55-0.65 s of every start of the bot (issue 18: ready within 5 s)."""
    spec = importlib.util.find_spec("pypinyin")
    data = Path(spec.origin).parent / "pinyin_dict.json" if spec is not None and spec.origin else None
    if data is not None and data.is_file():
        return {int(code): readings for code, readings in json.loads(data.read_text("utf-8")).items()}
    from pypinyin.pinyin_dict import pinyin_dict  # a pypinyin that keeps its table another way

    return pinyin_dict


def _reading_table() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for code, readings in pinyin_table().items():
        seen: list[str] = []
        for reading in readings.split(","):
            plain = reading.translate(_TONES)
            if plain and plain not in seen and plain.isalpha():
                seen.append(plain)
        if seen:
            table[chr(code)] = tuple(seen[:3])
    return table


_READINGS = _reading_table()
_NONE: tuple[str, ...] = ("",)
# Each character's readings as one string, " zhong chong ": a query's " zhong " is in it (services.lookup).
SPELLED: dict[str, str] = {ch: f" {' '.join(sorted(r))} " for ch, r in _READINGS.items()}
PRIMARY: dict[str, str] = {ch: r[0] for ch, r in _READINGS.items()}  # each character's most common reading
SYLLABLES = frozenset(s for readings in _READINGS.values() for s in readings)

# Surnames whose reading differs from the character's most common one, and compound surnames.
SURNAME_READINGS: dict[str, tuple[str, ...]] = {
    "曾": ("zeng",), "单": ("shan",), "仇": ("qiu",), "朴": ("piao",), "覃": ("qin",), "区": ("ou",),
    "解": ("xie",), "查": ("zha",), "盖": ("ge",), "华": ("hua",), "任": ("ren",), "尉": ("yu",),
    "乐": ("yue",), "缪": ("miao",), "翟": ("zhai",), "繁": ("po",), "员": ("yun",), "祭": ("zhai",),
    "秘": ("bi",), "种": ("chong",), "召": ("shao",), "莘": ("shen",), "冼": ("xian",), "句": ("gou",),
    "阚": ("kan",), "隗": ("wei",), "眭": ("sui",), "郇": ("huan",), "恽": ("yun",), "鲜": ("xian",),
    "折": ("she",), "沈": ("shen",), "长": ("chang",), "重": ("chong",), "万": ("wan",), "藏": ("zang",),
    "纪": ("ji",), "宓": ("mi",), "都": ("du",), "相": ("xiang",), "澹": ("tan",), "过": ("guo",),
    "黑": ("he",), "燕": ("yan",), "应": ("ying",), "厉": ("li",), "能": ("nai",), "车": ("che",),
    "柏": ("bai",), "宁": ("ning",), "蕃": ("pi",), "逄": ("pang",), "粘": ("nian",),
}
COMPOUND_SURNAMES: dict[str, tuple[str, ...]] = {
    "欧阳": ("ou", "yang"), "司马": ("si", "ma"), "上官": ("shang", "guan"), "诸葛": ("zhu", "ge"),
    "尉迟": ("yu", "chi"), "万俟": ("mo", "qi"), "单于": ("chan", "yu"), "长孙": ("zhang", "sun"),
    "令狐": ("ling", "hu"), "皇甫": ("huang", "fu"), "东方": ("dong", "fang"), "慕容": ("mu", "rong"),
    "宇文": ("yu", "wen"), "司徒": ("si", "tu"), "公孙": ("gong", "sun"), "夏侯": ("xia", "hou"),
    "澹台": ("tan", "tai"), "呼延": ("hu", "yan"), "端木": ("duan", "mu"), "申屠": ("shen", "tu"),
}


def readings(ch: str) -> tuple[str, ...]:
    """Toneless readings of one character, most common first (empty for non-hanzi)."""
    return _READINGS.get(ch, ())


def char_readings(text: str, *, person: bool = False) -> list[tuple[str, ...]]:
    """Readings of each hanzi in `text` (other characters are skipped). A person's name starts with a
    surname, read by the surname table."""
    han = han_only(text)
    out: list[tuple[str, ...]] = []
    start = 0
    if person and han:
        pair = han[:2]
        if pair in COMPOUND_SURNAMES:
            out.extend((s,) for s in COMPOUND_SURNAMES[pair])
            start = 2
        elif han[0] in SURNAME_READINGS:
            out.append(SURNAME_READINGS[han[0]])
            start = 1
    get = _READINGS.get
    out.extend(get(ch, _NONE) for ch in han[start:])
    return out


def pinyin(text: str, *, person: bool = False, sep: str = "") -> str:
    """The main pinyin reading of the hanzi in `text`, without tones."""
    return sep.join(r[0] for r in char_readings(text, person=person) if r and r[0])


def initials(text: str, *, person: bool = False) -> str:
    return "".join(r[0][0] for r in char_readings(text, person=person) if r and r[0])


def reading_variants(per_char: list[tuple[str, ...]], limit: int = 4) -> list[list[str]]:
    """A few whole-name readings (the cartesian product of readings, capped)."""
    out = []
    for combo in product(*[r or ("",) for r in per_char]):
        out.append(list(combo))
        if len(out) >= limit:
            break
    return out


@lru_cache(maxsize=4096)
def segment_pinyin(letters: str) -> tuple[str, ...] | None:
    """Split typed letters into pinyin syllables (renyi → ren yi), preferring fewer, longer syllables;
    the last syllable may be unfinished (renyiru → ren yi ru…). None when the letters are not pinyin."""
    n = len(letters)
    if n == 0 or n > 40:
        return None
    best: list[tuple[str, ...] | None] = [None] * (n + 1)
    best[0] = ()
    for i in range(n):
        if best[i] is None:
            continue
        for j in range(min(n, i + 6), i, -1):
            piece = letters[i:j]
            if piece in SYLLABLES or (j == n and _is_syllable_prefix(piece)):
                candidate = best[i] + (piece,)
                if best[j] is None or len(candidate) < len(best[j]):
                    best[j] = candidate
    return best[n]


@lru_cache(maxsize=1)
def _syllable_prefixes() -> frozenset[str]:
    return frozenset(s[:k] for s in SYLLABLES for k in range(1, len(s) + 1))


def _is_syllable_prefix(piece: str) -> bool:
    return piece in _syllable_prefixes()
