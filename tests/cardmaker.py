"""Business cards drawn for tests and bench/card_bench.py: Pillow with the bundled CJK font (mplfonts' Noto
Sans CJK SC), several layouts, Chinese and English, a photo's tilt, blur and noise. What is drawn is known,
so what the bot reads can be checked field by field.

`draw(spec)` → JPEG bytes; `random_card(rng)` → a varied CardSpec (seeded)."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from services.charts import font_path

LAYOUTS = ("left", "centred", "two_column", "logo")


@dataclass
class CardSpec:
    """What is printed on the card (None: not on it) and how the photo of it looks."""

    name: str
    company: str
    title: str | None = None
    mobile: str | None = None
    office: str | None = None
    fax: str | None = None
    email: str | None = None
    website: str | None = None
    address: str | None = None
    language: str = "zh"  # zh: Chinese labels (手机 电话 …), en: English (M: T: …)
    layout: str = "left"
    rotation: float = 0.0  # degrees, counter-clockwise
    noisy: bool = False  # a phone photo: blur, sensor noise, uneven light, JPEG
    labels: bool = True  # "手机：" before the number; False: a small icon instead
    second_company: str | None = None  # a bilingual card's company in the other language, smaller
    extra: list[str] = field(default_factory=list)  # slogans, "扫码加微信" … noise lines


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path()), size)


def _labelled(spec: CardSpec) -> list[tuple[str, str]]:
    """(kind, text) of the contact lines, labelled as such cards are."""
    zh = spec.language == "zh"
    words = {"mobile": ("手机：", "M: "), "office": ("电话：", "T: "), "fax": ("传真：", "F: "),
             "email": ("邮箱：", "E: "), "website": ("网址：", "W: "), "address": ("地址：", "Add: ")}
    lines = []
    for kind in ("mobile", "office", "fax", "email", "website", "address"):
        value = getattr(spec, kind)
        if value:
            label = words[kind][0 if zh else 1] if spec.labels else ""
            lines.append((kind, label + value))
    return lines


def _icon(draw: ImageDraw.ImageDraw, x: int, y: int, size: int, colour: tuple[int, int, int]) -> None:
    draw.ellipse((x, y + size * 0.15, x + size * 0.7, y + size * 0.85), fill=colour)


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, colour, anchor: str = "la",
          width: int = 950) -> int:
    """Draws one line, smaller when it would not fit in `width` pixels; returns the line's height."""
    while _font(size).getlength(text) > width and size > 16:
        size -= 1
    draw.text(xy, text, font=_font(size), fill=colour, anchor=anchor)
    return int(size * 1.45)


def _card(spec: CardSpec, rng: random.Random) -> Image.Image:
    width, height = 1050, 600
    paper = (255, 255, 255) if rng.random() < 0.6 else (rng.randint(238, 252), rng.randint(236, 248),
                                                        rng.randint(225, 245))
    ink = (rng.randint(10, 60),) * 3
    accent = rng.choice([(200, 30, 40), (20, 80, 160), (0, 120, 90), (140, 90, 20)])
    card = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(card)
    name_size, company_size, small = rng.randint(54, 64), rng.randint(30, 36), rng.randint(24, 27)
    contact = _labelled(spec)
    layout = spec.layout

    def contact_block(x: int, y: int, anchor: str = "la", max_x: int = width - 40) -> None:
        for _kind, text in contact:
            size = small
            while _font(size).getlength(text) > max_x - x and size > 18:
                size -= 1
            if not spec.labels and anchor == "la":
                _icon(draw, x, y, size, accent)
                _text(draw, (x + size, y), text, size, ink)
            else:
                _text(draw, (x, y), text, size, ink, anchor)
            y += int(size * 1.5)

    if layout == "centred":
        y = 40
        y += _text(draw, (width / 2, y), spec.company, company_size, accent, "ma")
        if spec.second_company:
            y += _text(draw, (width / 2, y), spec.second_company, small - 4, accent, "ma")
        y += 14
        y += _text(draw, (width / 2, y), spec.name, name_size, ink, "ma")
        if spec.title:
            y += _text(draw, (width / 2, y), spec.title, small, ink, "ma")
        draw.line((120, y + 4, width - 120, y + 4), fill=accent, width=2)
        contact_block(width // 2, y + 18, "ma")
    elif layout == "two_column":
        y = 60
        y += _text(draw, (50, y), spec.name, name_size, ink)
        if spec.title:
            y += _text(draw, (50, y), spec.title, small, ink)
        y += 30
        y += _text(draw, (50, y), spec.company, company_size - 4, accent, width=390)
        if spec.second_company:
            _text(draw, (50, y), spec.second_company, small - 6, accent, width=390)
        draw.line((470, 50, 470, height - 50), fill=accent, width=3)
        contact_block(500, 70)
    else:  # left, logo
        x, y = 50, 40
        if layout == "logo":
            draw.rectangle((50, 40, 140, 130), fill=accent)
            draw.ellipse((68, 58, 122, 112), fill=paper)
            x = 165
            y += _text(draw, (x, 50), spec.company, company_size, accent) - 10
            if spec.second_company:
                _text(draw, (x, 50 + company_size * 1.3), spec.second_company, small - 6, accent)
            y = 160
            x = 50
        else:
            y += _text(draw, (x, y), spec.company, company_size, accent)
            if spec.second_company:
                y += _text(draw, (x, y), spec.second_company, small - 6, accent)
            y += 10
        _text(draw, (x, y), spec.name, name_size, ink)
        if spec.title:
            _text(draw, (x + _font(name_size).getlength(spec.name) + 30, y + name_size - small - 2), spec.title,
                  small, ink)
        y += int(name_size * 1.35)
        draw.line((x, y, width - 50, y), fill=accent, width=2)
        contact_block(x, y + 16)
    for i, line in enumerate(spec.extra):
        _text(draw, (width - 40, height - 40 - i * 30), line, 18, (120, 120, 120), "rs")
    return card


def _photo(card: Image.Image, spec: CardSpec, rng: random.Random) -> Image.Image:
    """The card as a phone photo of it: on a table, tilted, maybe blurred and noisy."""
    margin = rng.randint(40, 110)
    table = tuple(rng.randint(60, 150) for _ in range(3))
    photo = Image.new("RGB", (card.width + 2 * margin, card.height + 2 * margin), table)
    photo.paste(card, (margin, margin))
    if spec.rotation:
        photo = photo.rotate(spec.rotation, resample=Image.BICUBIC, expand=True, fillcolor=table)
    if spec.noisy:
        import numpy as np

        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.1)))
        pixels = np.asarray(photo, dtype=np.float32)
        h, w = pixels.shape[:2]
        light = np.linspace(rng.uniform(0.75, 0.9), 1.05, w, dtype=np.float32)[None, :, None]  # a lamp on one side
        noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 7, pixels.shape).astype(np.float32)
        photo = Image.fromarray(np.clip(pixels * light + noise, 0, 255).astype("uint8"))
    return photo


def draw(spec: CardSpec, *, seed: int = 0, quality: int = 88) -> bytes:
    """The photo of the card as JPEG bytes (what a phone sends)."""
    rng = random.Random(seed)
    image = _photo(_card(spec, rng), spec, rng)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=60 if spec.noisy else quality)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- random cards

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国文志鹏宇浩晨欣怡子涵俊博思雨嘉琪晓东海燕"
TWO_SURNAMES = ["欧阳", "司马", "上官", "诸葛"]
FIRST = ["James", "Mary", "Robert", "Linda", "Michael", "Sarah", "David", "Emily", "Daniel", "Grace", "Kevin",
         "Helen", "Jason", "Amy", "Eric", "Cindy", "Peter", "Anna", "Tony", "Vivian", "William", "Sophie", "Leo"]
LAST = ["Smith", "Johnson", "Brown", "Taylor", "Wilson", "Chen", "Wang", "Li", "Zhang", "Liu", "Wong", "Lee",
        "Miller", "Davis", "Clarke", "Walker", "Young", "Hall", "Tan", "Lim", "Ng", "Ho", "Martin"]
CITIES = [("广州", "020", "Guangzhou", "天河区体育西路"), ("深圳", "0755", "Shenzhen", "南山区科技园科苑路"),
          ("上海", "021", "Shanghai", "浦东新区张江路"), ("北京", "010", "Beijing", "朝阳区建国路"),
          ("杭州", "0571", "Hangzhou", "西湖区文三路"), ("成都", "028", "Chengdu", "高新区天府大道"),
          ("苏州", "0512", "Suzhou", "工业园区星湖街"), ("东莞", "0769", "Dongguan", "南城区鸿福路"),
          ("佛山", "0757", "Foshan", "禅城区季华路"), ("武汉", "027", "Wuhan", "洪山区珞喻路")]
CORES = ["人易", "恒达", "远东", "华南", "金桥", "创维", "宏图", "瑞丰", "启明", "天成", "博源", "诚信", "盛世", "中科",
         "绿源", "新锐", "东方", "汇通", "鼎盛", "安捷"]
CORES_PINYIN = {"人易": "renyi", "恒达": "hengda", "远东": "yuandong", "华南": "huanan", "金桥": "jinqiao",
                "创维": "chuangwei", "宏图": "hongtu", "瑞丰": "ruifeng", "启明": "qiming", "天成": "tiancheng",
                "博源": "boyuan", "诚信": "chengxin", "盛世": "shengshi", "中科": "zhongke", "绿源": "lvyuan",
                "新锐": "xinrui", "东方": "dongfang", "汇通": "huitong", "鼎盛": "dingsheng", "安捷": "anjie"}
TRADES = [("软件技术", "Software Technology"), ("机电设备", "Electromechanical Equipment"),
          ("贸易", "Trading"), ("五金制品", "Hardware Products"), ("化工", "Chemical"), ("电子科技", "Electronics"),
          ("医疗器械", "Medical Devices"), ("物流", "Logistics"), ("食品", "Foods"), ("建材", "Building Materials")]
ZH_SUFFIXES = ["有限公司", "股份有限公司", "有限责任公司", "集团有限公司"]
EN_SUFFIXES = ["Co., Ltd.", "Co., Ltd.", "Inc.", "Limited", "Group Co., Ltd.", "Corporation"]
ZH_TITLES = ["销售经理", "采购经理", "总经理", "技术总监", "市场部主管", "副总裁", "区域经理", "项目经理", "财务总监", "董事长"]
EN_TITLES = ["Sales Manager", "Purchasing Manager", "General Manager", "Technical Director", "Marketing Director",
             "Vice President", "Regional Manager", "Project Manager", "CEO", "Business Development Manager"]
EXTRAS_ZH = ["诚信 · 专业 · 共赢", "扫码加微信"]
EXTRAS_EN = ["Quality first", "Scan to add me"]


MOBILE_PREFIXES = [*(f"13{d}" for d in range(10)), "150", "151", "152", "153", "155", "156", "157", "158", "159",
                   "166", "173", "176", "177", "178", *(f"18{d}" for d in range(10)), "191", "198", "199"]


def _mobile(rng: random.Random) -> str:
    number = rng.choice(MOBILE_PREFIXES) + f"{rng.randint(0, 99999999):08d}"
    style = rng.randrange(4)
    if style == 0:
        return number
    if style == 1:
        return f"{number[:3]} {number[3:7]} {number[7:]}"
    if style == 2:
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    return f"+86 {number[:3]} {number[3:7]} {number[7:]}"


def _landline(rng: random.Random, area: str, *, extension: bool) -> str:
    local = f"{rng.randint(2, 8)}{rng.randint(0, 9999999):07d}"
    style = rng.randrange(4)
    if style == 0:
        text = f"{area}-{local}"
    elif style == 1:
        text = f"{area}-{local[:4]} {local[4:]}"
    elif style == 2:
        text = f"({area}) {local}"
    else:
        text = f"+86 {area[1:]} {local[:4]} {local[4:]}"
    if extension:
        text += rng.choice([" 转 ", " ext. ", " 分机 "]) + str(rng.randint(100, 9999))
    return text


def random_card(rng: random.Random) -> CardSpec:
    """A varied card: Chinese or English, a person, their company in a city, its phones (mobiles in several
    writings, landlines with area codes and extensions), e-mail, website, address, one of the layouts, a
    tilt of up to ±6°, sometimes a noisy photo, sometimes icons instead of labels, a bilingual company."""
    zh = rng.random() < 0.6
    city, area, city_en, street = rng.choice(CITIES)
    core = rng.choice(CORES)
    trade_zh, trade_en = rng.choice(TRADES)
    pinyin = CORES_PINYIN[core]
    company_zh = city + core + trade_zh + rng.choice(ZH_SUFFIXES)
    company_en = f"{city_en} {pinyin.capitalize()} {trade_en} {rng.choice(EN_SUFFIXES)}"
    if zh:
        surname = rng.choice(TWO_SURNAMES) if rng.random() < 0.05 else rng.choice(SURNAMES)
        name = surname + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        title = rng.choice(ZH_TITLES)
        address = f"{city}市{street}{rng.randint(1, 399)}号{rng.choice(['', '大厦', '科技大厦'])}{rng.randint(2, 30)}楼"
        if rng.random() < 0.3:
            address += f"{rng.randint(1, 30):02d}{rng.randint(1, 20):02d}室"
        company, second = company_zh, (company_en if rng.random() < 0.3 else None)
        handle = "".join(c for c in rng.choice(["wang", "li", "zhang", "chen", "liu", "huang", "zhou", "lin"]))
    else:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = f"{first} {last}"
        title = rng.choice(EN_TITLES)
        address = f"{rng.choice(['Room', 'Suite', 'Unit'])} {rng.randint(101, 2999)}, No. {rng.randint(1, 399)} " \
                  f"{rng.choice(['Tiyu West Road', 'Keyuan Road', 'Jianguo Road', 'Wensan Road', 'Tianfu Avenue'])}, " \
                  f"{city_en}, China"
        company, second = company_en, (company_zh if rng.random() < 0.3 else None)
        handle = first.lower() + rng.choice([".", "_", ""]) + last.lower()
    domain = pinyin + rng.choice(["", "-tech", "group", "88"]) + rng.choice([".com", ".cn", ".com.cn", ".net"])
    spec = CardSpec(
        name=name, company=company, second_company=second, language="zh" if zh else "en",
        title=title if rng.random() < 0.9 else None,
        mobile=_mobile(rng) if rng.random() < 0.9 else None,
        office=_landline(rng, area, extension=rng.random() < 0.35) if rng.random() < 0.75 else None,
        fax=_landline(rng, area, extension=False) if rng.random() < 0.25 else None,
        email=f"{handle}{rng.choice(['', str(rng.randint(1, 99))])}@{domain}" if rng.random() < 0.9 else None,
        website=rng.choice(["www.", "http://www.", "https://"]) + domain if rng.random() < 0.6 else None,
        address=address if rng.random() < 0.85 else None,
        layout=rng.choice(LAYOUTS),
        rotation=rng.uniform(-6, 6) if rng.random() < 0.7 else 0.0,
        noisy=rng.random() < 0.3,
        labels=rng.random() < 0.8,
        extra=[rng.choice(EXTRAS_ZH if zh else EXTRAS_EN)] if rng.random() < 0.3 else [],
    )
    if spec.mobile is None and spec.office is None:
        spec.mobile = _mobile(rng)
    return spec
