"""Business cards (名片) → a contact: what the rep's photo of a card says, field by field, and saving it.

Reading (the text comes from services.ocr; these rules turn its lines into fields):
- Labels say what a value is: 手机/M/Mobile → mobile, 电话/T/Tel/Office → office phone, 传真/F/Fax → fax,
  邮箱/E/Email → e-mail, 网址/W/Web → website, 地址/Add/Address → address; one line may carry several
  (T: … F: …). Without a label the value's own form decides.
- Phones are found by `phonenumbers` as dialled from China (+86 and other country codes work); an
  extension (转 / 分机 / ext. 806) stays with its number. Unlabelled: a mobile number is the mobile, the
  first landline the office phone. A fax is never taken for a phone.
- E-mail: the one word with an @; website: www.… / http… or a labelled address; a domain is lower-cased.
- Company: the line with a company word (有限公司 公司 集团 … / Co., Ltd. Inc. Limited …); on a bilingual
  card the one in the script of the person's name.
- Title: the line with a title word (经理 总监 主管 … / Manager Director CEO …).
- Address: labelled, or the line with address words (省 市 区 路 号 楼 室 … / Room Road Street …).
- Name: of the lines left, a short Chinese one (2–4 characters) or a Latin "First Last" — the one in the
  largest type.
- Latin text whose spaces the recogniser dropped gets them back (SalesManager → Sales Manager,
  Suite1123,No.138 → Suite 1123, No. 138).
- A photo with no field at all is not a card: refused with what to do.

Saving (rules of services.customers and services.contacts apply):
- The card's company is matched against the customers first: the same phone number (the card's office
  phone or mobile is a customer's or a contact's number), or a near-identical name → the rep picks one
  of them, or creates a new customer (its stage asked, as for /new).
- A new customer takes the company's name, office phone, fax, website and address; the person becomes its
  contact with their title, mobile, office phone and e-mail. Both are written in one transaction, and the
  same input (`origin_key`) saves once.
- A field the rep types to fix a reading is checked like that field anywhere else: a phone must be a
  number one can dial, an e-mail must look like one; a refused value changes nothing.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

import phonenumbers
from sqlalchemy.ext.asyncio import AsyncSession

from models import ContactPerson, Customer
from services.access import Viewer
from services.contacts import add_contact
from services.customers import Duplicate, create_customer, possible_duplicates
from services.messages import N_, DomainError
from services.ocr import TextLine, read_lines
from services.parsing import fold_width, phone_digits

FIELDS = ("company", "name", "title", "mobile", "office", "fax", "email", "website", "address")
LIMITS = {"company": 200, "name": 100, "title": 100, "mobile": 64, "office": 64, "fax": 64, "email": 200,
          "website": 200, "address": 300}


@dataclass
class CardFields:
    """What a card says (None: not on it, or not read)."""

    company: str | None = None
    name: str | None = None
    title: str | None = None
    mobile: str | None = None
    office: str | None = None
    fax: str | None = None
    email: str | None = None
    website: str | None = None
    address: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CardFields:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def empty(self) -> bool:
        return not any(getattr(self, f) for f in FIELDS)


# ------------------------------------------------------------------------------------------------ reading

_LABELS = {
    "mobile": r"手机|手機|移动电话|移動電話|mobile|mob|cell|m",
    "office": r"电话|電話|座机|座機|办公电话|辦公電話|总机|總機|tel|phone|office|direct|t",
    "fax": r"传真|傳真|fax|f",
    "email": r"电子邮件|電子郵件|电子邮箱|邮箱|郵箱|邮件|郵件|e-mail|email|mail|e",
    "website": r"网址|網址|网站|網站|主页|主頁|website|web|url|w",
    "address": r"地址|address|addr|add|a",
    "other": r"微信|wechat|qq|邮编|郵編|zip|p\.?c",
}
_LABEL = re.compile(r"(?:(?<=^)|(?<=[\s\d|,;]))(" + "|".join(f"(?P<{k}>{v})" for k, v in _LABELS.items())
                    + r")\s*[:：]\s*", re.IGNORECASE)
_EXTENSION_WORD = re.compile(r"\s*(?:转|轉|分机|分機|内线|內線|ext\.?|extn\.?|x)\s*(?=\d)", re.IGNORECASE)
_EMAIL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_WEB = re.compile(r"(?:https?://)?(?:www\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?:/[\w./%#?=&-]*)?",
                  re.IGNORECASE)
_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")
_COMPANY_ZH = ("股份有限公司", "有限责任公司", "有限公司", "集团", "集團", "公司", "研究院", "研究所", "事务所",
               "事務所", "银行", "銀行", "工厂", "工廠", "厂", "商行", "工作室", "医院", "醫院", "大学", "大學")
_COMPANY_EN = re.compile(r"\b(?:co\.?,?\s*ltd\.?|ltd\.?|limited|inc\.?|incorporated|llc|l\.l\.c\.|corp\.?|"
                         r"corporation|company|group|gmbh|llp|plc|pte\.?|s\.a\.|ag|bv)(?:\b|$)", re.IGNORECASE)
_TITLE_ZH = ("总经理", "經理", "经理", "总监", "總監", "主管", "总裁", "總裁", "董事", "主任", "工程师", "工程師",
             "顾问", "顧問", "代表", "专员", "專員", "助理", "秘书", "秘書", "会计", "會計", "主席", "合伙人", "合夥人",
             "创始人", "創始人", "部长", "部長", "厂长", "廠長", "店长", "店長", "总", "總")
_TITLE_EN = re.compile(r"\b(?:manager|director|president|ceo|cto|cfo|coo|cmo|vp|engineer|consultant|officer|head|"
                       r"lead|representative|specialist|chairman|chairwoman|founder|partner|assistant|executive|"
                       r"supervisor|coordinator|analyst|secretary|accountant|owner|sales)\b", re.IGNORECASE)
_ADDRESS_ZH = re.compile(r"[省市区區县縣镇鎮乡鄉村路街道巷弄号號楼樓层層室座栋棟]|大厦|大廈|广场|廣場|园区|園區|中心")
_ADDRESS_EN = re.compile(r"\b(?:room|rm|suite|unit|floor|fl|road|rd|street|st|avenue|ave|boulevard|blvd|lane|ln|"
                         r"district|building|bldg|tower|plaza|park|no|china|p\.?r\.?c)\b\.?", re.IGNORECASE)


def _script(text: str) -> str:
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    return "cjk" if cjk >= latin and cjk else "latin" if latin else ""


def respace(text: str) -> str:
    """Latin words the recogniser ran together, apart again (the rule in the module docstring)."""
    if _script(text) != "latin":
        return text
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)  # SalesManager
    text = re.sub(r"(?<=[A-Za-z]{2})(?=\d)|(?<=\d)(?=[A-Za-z]{2})", " ", text)  # Suite1123, 138Tiyu
    text = re.sub(r"([,;])(?=\S)", r"\1 ", text)  # a comma before the next word
    text = re.sub(r"(?<=\b[A-Z][a-z])\.(?=[A-Z0-9])|(?<=\bNo)\.(?=\S)|(?<=\bCo)\.(?=\S)", ". ", text)  # No.138
    text = re.sub(r"(?<=\bCo\.)\s*,\s*(?=Ltd)", ", ", text)
    return re.sub(r"\s{2,}", " ", text).strip()


@dataclass
class _Segment:
    kind: str | None  # a label's field, or None
    text: str
    line: TextLine


def _segments(line: TextLine) -> list[_Segment]:
    """A line cut at its labels: "T: 020-1234 F: 020-5678" → (office, "020-1234"), (fax, "020-5678")."""
    text = fold_width(line.text).strip()
    cuts = list(_LABEL.finditer(text))
    if not cuts:
        return [_Segment(None, text, line)]
    out = []
    if text[:cuts[0].start()].strip():
        out.append(_Segment(None, text[:cuts[0].start()].strip(), line))
    for i, cut in enumerate(cuts):
        end = cuts[i + 1].start() if i + 1 < len(cuts) else len(text)
        kind = next(k for k in _LABELS if cut.group(k))
        out.append(_Segment(kind, text[cut.end():end].strip(), line))
    return out


def _lower_host(url: str) -> str:
    """www.Example.COM/Path → www.example.com/Path (a host is the same in any case; a path may not be)."""
    scheme, _, rest = url.rpartition("://")
    host, slash, path = rest.partition("/")
    return (scheme + "://" if scheme else "") + host.lower() + slash + path


def _phones(text: str, *, labelled: bool = False) -> list[phonenumbers.PhoneNumber]:
    """The phone numbers in `text`, as dialled from China; an extension stays with its number. A labelled
    number (手机：…) need only have a phone number's form (a new mobile range may not be in the library's
    tables yet); an unlabelled one must be a number in use."""
    text = _EXTENSION_WORD.sub(" ext. ", text)
    leniency = phonenumbers.Leniency.POSSIBLE if labelled else phonenumbers.Leniency.VALID
    found = [m.number for m in phonenumbers.PhoneNumberMatcher(text, "CN", leniency=leniency)]
    if not found:  # the recogniser may glue the extension on without a word: try the text's digits as one number
        digits = re.sub(r"[^\d+]", "", text)
        if 7 <= len(digits.lstrip("+")) <= 15:
            try:
                number = phonenumbers.parse(digits, "CN")
                if phonenumbers.is_valid_number(number) or (labelled and phonenumbers.is_possible_number(number)):
                    found.append(number)
            except phonenumbers.NumberParseException:
                pass
    return found


def format_phone(number: phonenumbers.PhoneNumber) -> str:
    """A number as people read it: Chinese ones as dialled inside China (138 0013 8000, 020 8888 1234),
    others with their country code (+1 415-555-0100); an extension as " ext. 806"."""
    style = phonenumbers.PhoneNumberFormat.NATIONAL if number.country_code == 86 \
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    extension, number.extension = number.extension, None
    text = phonenumbers.format_number(number, style)
    number.extension = extension
    return f"{text} ext. {extension}" if extension else text


def _is_mobile(number: phonenumbers.PhoneNumber) -> bool:
    return phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE


def _fix_digits(text: str) -> str:
    """In a labelled phone: letters the recogniser mistakes for digits (O → 0, l / I → 1), in a run of what is
    otherwise digits."""
    def fix(run: re.Match) -> str:
        return run[0].translate(_DIGIT_LOOKALIKES) if re.search(r"\d", run[0]) else run[0]
    return re.sub(r"[\dOoIl|][\dOoIl|\s\-]*[\dOoIl|]", fix, text)


_DIGIT_LOOKALIKES = str.maketrans({"O": "0", "o": "0", "I": "1", "l": "1", "|": "1"})


def _mostly_number(text: str) -> bool:
    """An unlabelled line that is a phone number: digits and their punctuation, at most a few other letters
    (an icon read as a character, "ext")."""
    return bool(re.search(r"\d{3}", text)) and len(re.sub(r"[\d\s()+\-.]|ext", "", text)) <= 3


def _is_company(text: str) -> int:
    """How surely a line is a company's name: 0 (not), 1 (a weak word), 2 (a company form)."""
    if any(word in text for word in _COMPANY_ZH[:4]) or re.search(r"co\.?,?\s*ltd|limited|inc\b|llc|gmbh", text, re.I):
        return 2
    if any(word in text for word in _COMPANY_ZH[4:]) or _COMPANY_EN.search(text):
        return 1
    return 0


def _is_title(text: str) -> bool:
    return (any(word in text for word in _TITLE_ZH) and len(text) <= 12) or \
        (bool(_TITLE_EN.search(text)) and len(text) <= 50)


def _is_address(text: str) -> bool:
    if _script(text) == "cjk":
        return len(_ADDRESS_ZH.findall(text)) >= 2 and len(text) >= 6
    return len(_ADDRESS_EN.findall(text)) >= 2 or (bool(_ADDRESS_EN.search(text)) and bool(re.search(r"\d", text)))


_NAME_ZH = re.compile(r"^[\u3400-\u9fff]{2,4}$|^[\u3400-\u9fff]{1,4}·[\u3400-\u9fff]{1,6}$")
_NAME_EN = re.compile(r"^[A-Z][a-zA-Z'’-]+(?: [A-Z]\.?)?(?: [A-Z][a-zA-Z'’-]+){1,2}$")


def _name_like(text: str) -> bool:
    text = text.strip()
    return bool(_NAME_ZH.match(text) or _NAME_EN.match(respace(text)))


def extract(lines: list[TextLine]) -> CardFields:
    """The card's fields from its lines of text (the reading rules in the module docstring)."""
    card = CardFields()
    used: set[int] = set()  # lines that gave a field
    phones: list[tuple[str | None, phonenumbers.PhoneNumber]] = []
    address_line: int | None = None
    for i, line in enumerate(lines):
        for segment in _segments(line):
            kind, text = segment.kind, segment.text
            if not text:
                continue
            if kind in ("mobile", "office", "fax"):
                found = _phones(_fix_digits(text), labelled=True)
                phones += [(kind, n) for n in found]
                used.add(i)
            elif kind == "email" or (kind is None and "@" in text):
                squeezed = re.sub(r"\s*([@.])\s*", r"\1", text)
                if (m := _EMAIL.search(squeezed)) and card.email is None:
                    card.email = m[0].lower()
                    used.add(i)
            elif kind == "website" or (kind is None and re.search(r"www\.|https?://", text, re.I)):
                if (m := _WEB.search(text.replace(" ", ""))) and card.website is None:
                    card.website = _lower_host(m[0])[:200]
                    used.add(i)
            elif kind == "address":
                if card.address is None:
                    card.address = respace(text)
                    address_line = i
                used.add(i)
            elif kind == "other":
                used.add(i)
            else:
                found = _phones(text) if _mostly_number(text) and not _is_address(text) else []
                if found:
                    phones += [(None, n) for n in found]
                    used.add(i)
    # An address may go on over the next line (without a label): the line just below it, in the same type.
    if address_line is not None:
        above = lines[address_line]
        for j, after in enumerate(lines):
            if j not in used and 0 < after.top - above.top < 2 * above.height \
                    and abs(after.left - above.left) < 4 * above.height and abs(after.height - above.height) < 6 \
                    and _is_address(fold_width(after.text)):
                card.address = (card.address + (" " if _script(card.address) == "latin" else "") +
                                respace(fold_width(after.text).strip()))
                used.add(j)
                break
    _assign_phones(card, phones)
    rest = [(i, respace(fold_width(line.text).strip())) for i, line in enumerate(lines) if i not in used]
    # Company: the surest company line (on a bilingual card, in the script of the name, decided below).
    companies = [(i, text) for i, text in rest if _is_company(text)]
    titles = [(i, text) for i, text in rest if not _is_company(text) and _is_title(text)]
    if card.address is None:
        for i, text in rest:
            if not _is_company(text) and _is_address(text) and not _name_like(text):
                card.address = respace(text)
                used.add(i)
                break
    names = []
    for i, text in rest:
        if i in used or _is_company(text) or re.search(r"\d|@", text):
            continue
        candidate = text
        if not _name_like(candidate) and _is_title(candidate):  # "王芳 采购经理" read as one line
            head = re.match(r"^([\u3400-\u9fff]{2,4})\s*(\S.*)$", candidate)
            if head and _is_title(head[2]):
                candidate = head[1]
                titles.append((i, head[2]))
        if _name_like(candidate) and not _is_title(candidate):
            names.append((lines[i].height, i, respace(candidate)))
    name_line = None
    if names:
        _height, name_line, card.name = max(names)
    script = _script(card.name or "")
    if companies:
        def rank(item: tuple[int, str]) -> tuple:
            i, text = item
            return (_script(text) == script, _is_company(text), lines[i].height, len(text))
        card.company = respace(max(companies, key=rank)[1])[:200]
    # The name's line is no title, unless it was "王芳 采购经理" read as one line (its tail was added above).
    titles = [(i, text) for i, text in titles if i != name_line or card.name not in text]
    if titles:
        matching = [t for t in titles if _script(t[1]) == script] or titles
        card.title = respace(matching[0][1])[:100]
    return card


def _assign_phones(card: CardFields, phones: list[tuple[str | None, phonenumbers.PhoneNumber]]) -> None:
    """Labels first; then an unlabelled mobile number is the mobile, the first unlabelled landline the office."""
    for kind, number in phones:
        if kind and getattr(card, kind) is None:
            setattr(card, kind, format_phone(number))
    for kind, number in phones:
        if kind is not None:
            continue
        text = format_phone(number)
        if text in (card.mobile, card.office, card.fax):
            continue
        if _is_mobile(number) and card.mobile is None:
            card.mobile = text
        elif not _is_mobile(number) and card.office is None:
            card.office = text


def read_card(data: bytes, *, threads: int = 0) -> CardFields:
    """A photo of a business card → its fields. Refused (DomainError) when the image is too big or not one
    (services.ocr), or when nothing on it reads as a card."""
    lines = read_lines(data, threads=threads)
    card = extract(lines)
    if not lines or not (card.name or card.company or card.mobile or card.office or card.email):
        if not lines:
            raise DomainError(N_("I found no text in that photo. Take the photo straight above the card, in good "
                                 "light, with the card filling most of the picture — or type the customer's name to "
                                 "find them."))
        raise DomainError(N_("I found no business card in that photo: no name, company, phone or e-mail. Take the "
                             "photo straight above the card, in good light, with the card filling most of the "
                             "picture — or type the customer's name to find them."))
    return card


async def read_card_work(data: bytes, sessions: Any = None) -> CardFields:
    """bot.background's work: `read_card` off the caller's event loop (in the worker process, or in a thread
    where the work runs in the caller's process)."""
    return await asyncio.to_thread(read_card, data)


# ------------------------------------------------------------------------------------------------ fixing


def check_phone(value: str) -> str:
    """A phone number a person typed: it must be one that can be dialled (from China); returned as people read it."""
    text = fold_width(value).strip()
    found = _phones(text)
    if len(found) != 1 or len(phone_digits(text)) < 5:
        raise DomainError(N_("“{value}” is not a phone number one can dial"), value=text[:30])
    return format_phone(found[0])


def check_email(value: str) -> str:
    text = fold_width(value).strip()
    if not _EMAIL.fullmatch(text) or len(text) > LIMITS["email"]:
        raise DomainError(N_("“{value}” is not an e-mail address (name@example.com)"), value=text[:60])
    return text.lower()


def check_website(value: str) -> str:
    text = fold_width(value).strip()
    if not _WEB.fullmatch(text) or len(text) > LIMITS["website"]:
        raise DomainError(N_("“{value}” is not a website address (www.example.com)"), value=text[:60])
    return text


def check_field(field: str, value: str) -> str | None:
    """A value the rep typed for one of the card's fields, checked as that field (module docstring); "-"
    clears a field."""
    if field not in FIELDS:
        raise ValueError(f"no card field {field!r}")  # a programming error
    text = (value or "").strip()
    if text in ("-", "—", "－"):
        return None
    if not text:
        raise DomainError(N_("Send the new value, or - to leave the field empty."))
    if field in ("mobile", "office", "fax"):
        return check_phone(text)
    if field == "email":
        return check_email(text)
    if field == "website":
        return check_website(text)
    if len(text) > LIMITS[field]:
        raise DomainError(N_("too long: at most {limit} characters"), limit=LIMITS[field])
    return text


# ------------------------------------------------------------------------------------------------ saving


def card_matches(index, card: CardFields) -> list[Duplicate]:
    """Customers the card's company may be (the matching rule in the module docstring): by its phones
    first, then by a near-identical name. Every customer, whoever owns it — the caller shows what the rep may see."""
    found: dict[int, Duplicate] = {}
    for phone in (card.office, card.mobile):
        if phone:
            for duplicate in possible_duplicates(index, phone=phone):
                found.setdefault(duplicate.customer_id, duplicate)
    if card.company:
        for duplicate in possible_duplicates(index, name=card.company):
            found.setdefault(duplicate.customer_id, duplicate)
    return list(found.values())


def check_ready(card: CardFields) -> None:
    """A card can be saved once it has a person's name and no field over its limit."""
    if not (card.name or "").strip():
        raise DomainError(N_("The card has no person's name yet: fix the name first."))
    for field in FIELDS:
        value = getattr(card, field)
        if value and len(value) > LIMITS[field]:
            raise DomainError(N_("too long: at most {limit} characters"), limit=LIMITS[field])


async def save_to_customer(session: AsyncSession, viewer: Viewer, card: CardFields, customer_id: int, *,
                           user_id: int | None = None, origin_key: str | None = None) -> ContactPerson:
    """The card's person as a new contact at an existing customer (one the rep may see)."""
    check_ready(card)
    return await add_contact(session, viewer, customer_id, name=card.name, title=card.title, mobile=card.mobile,
                             office_phone=card.office, email=card.email, user_id=user_id, origin_key=origin_key)


async def save_as_new_customer(session: AsyncSession, viewer: Viewer, card: CardFields, *, stage: str,
                               user_id: int, origin_key: str | None = None) -> tuple[Customer, ContactPerson]:
    """A new customer from the card's company (owned by the rep), with the card's person as its contact."""
    check_ready(card)
    if not (card.company or "").strip():
        raise DomainError(N_("The card has no company yet: fix the company first."))
    customer = await create_customer(session, user_id=user_id, name=card.company.strip(), phone=card.office,
                                     fax=card.fax, website=card.website, address=card.address, stage=stage,
                                     owner_id=user_id, origin_key=origin_key)
    await session.flush()
    person = await save_to_customer(session, viewer, card, customer.id, user_id=user_id, origin_key=origin_key)
    return customer, person
