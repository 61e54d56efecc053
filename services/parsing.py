"""Reading the values people and spreadsheets actually write: dates, amounts, phone numbers.

Rules:
- dates: ISO (2026-03-15), Chinese (2026年3月15日), slashes and dots (2026/3/15, 15.03.2026 is *not*
  guessed: day-first is only read when the first part is > 12, or when the file's order is known — named
  with --date-order, or proved by other rows of the same column, see services.importer), month.day without a year (3.15 = the
  most recent March 15 not in the future), relative words (今天/今日/today, 昨天/昨日/yesterday,
  前天), and Excel serial day numbers (45000 = 2023-03-15).
- amounts: optional currency sign or unit (¥ ￥ $ 元 RMB CNY), thousands separators (, ， space ') in
  groups of three with a decimal point, full-width digits, 万 (×10 000); returned as integer cents, never
  as a float. Separators that could mean two things (12800,50 / 12.800,00 / 12,8000) and negative amounts
  are refused; a spreadsheet float within its own rounding error of a cent is that cent.
- phones: the digits only, as dialled inside mainland China: a +86 / 0086 country code removed (a
  landline written with it gets its trunk 0 back), an extension (转 806, ext. 806) left out, for
  comparison; from files, spreadsheet floats (13800138000.0) are read as the number.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from models.common import utcnow
from services.messages import N_, DomainError

_EXCEL_EPOCH = date(1899, 12, 30)  # Excel's day 0, accounting for its 1900 leap-year bug
_RELATIVE = {
    "今天": 0, "今日": 0, "today": 0,
    "昨天": 1, "昨日": 1, "yesterday": 1,
    "前天": 2, "前日": 2,
}
_AHEAD = {
    "今天": 0, "今日": 0, "today": 0,
    "明天": 1, "明日": 1, "tomorrow": 1,
    "后天": 2, "後天": 2,
    "下周": 7, "下週": 7, "next week": 7,
}
_YMD = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_DMY = re.compile(r"^(\d{1,2})\s*[-/.]\s*(\d{1,2})\s*[-/.]\s*(\d{4})$")
_MD = re.compile(r"^(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def fold_width(text: str) -> str:
    """Full-width digits, letters and punctuation to their ASCII forms (NFKC)."""
    return unicodedata.normalize("NFKC", text)


def _make_date(year: int, month: int, day: int, raw: str) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise DomainError(N_("“{value}” is not a real calendar date"), value=raw) from None


def parse_future_date(value: object, *, today: date | None = None) -> date:
    """A date for something still to do: 明天 / tomorrow / 后天 / 下周, or a month.day without a year
    meaning the next such day (3.15 in December = next March 15). Past dates are refused."""
    today = today or utcnow().date()
    text = fold_width(str(value)).strip().lower()
    if text in _AHEAD:
        return today + timedelta(days=_AHEAD[text])
    if m := _MD.match(text):
        month, day = int(m[1]), int(m[2])
        for year in range(today.year, today.year + 9):
            try:
                candidate = date(year, month, day)
            except ValueError:
                continue
            if candidate >= today:
                return candidate
        raise DomainError(N_("“{value}” is not a real calendar date"), value=value)
    moment = parse_date(value, today=today)
    if moment < today:
        raise DomainError(N_("{date} is in the past: choose a day from today on"), date=moment.isoformat())
    return moment


class AmbiguousDate(DomainError):
    """A d/m/y date whose day and month are both ≤ 12 (03/04/2026): which is which is not written."""

    def __init__(self, raw: str, first: int, second: int, year: int) -> None:
        super().__init__(N_("“{value}” is ambiguous: write it as year-month-day, or import with --date-order "
                            "dmy or mdy"), value=raw)
        self.raw, self.first, self.second, self.year = raw, first, second, year

    def resolve(self, order: str) -> date:
        day, month = (self.first, self.second) if order == "dmy" else (self.second, self.first)
        return _make_date(self.year, month, day, self.raw)


DATE_ORDERS = ("dmy", "mdy", "ymd")


def date_order_shown(value: object) -> str | None:
    """Which order a d/m/y date proves by itself: "dmy" (15/03/2026), "mdy" (03/15/2026), or None."""
    if not isinstance(value, str) or len(value) < 6:
        return None
    text = re.split(r"[tT ](?=\d{1,2}:)", fold_width(value).strip(), maxsplit=1)[0].strip()
    m = _DMY.match(text)
    if not m:
        return None
    first, second = int(m[1]), int(m[2])
    return "dmy" if first > 12 >= second else "mdy" if second > 12 >= first else None


def parse_date(value: object, *, today: date | None = None, order: str | None = None) -> date:
    """A date from what a person or a spreadsheet wrote (see the module rules). `order` (dmy, mdy, ymd)
    says how a file writes its d/m/y dates; without it only unambiguous ones are read."""
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:  # the common case in files: ISO dates
            return date.fromisoformat(value)
        except ValueError:
            pass
    today = today or utcnow().date()
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _excel_serial(float(value), str(value))
    raw = str(value).strip()
    text = fold_width(raw).strip().lower()
    if not text:
        raise DomainError(N_("a date is required"))
    if text in _RELATIVE:
        return today - timedelta(days=_RELATIVE[text])
    # "2026-03-15 10:30" or "2026-03-15T10:30:00": keep the date part.
    text = re.split(r"[t ](?=\d{1,2}:)", text, maxsplit=1)[0].strip()
    if m := _YMD.match(text):
        return _make_date(int(m[1]), int(m[2]), int(m[3]), raw)
    if m := _COMPACT.match(text):
        return _make_date(int(m[1]), int(m[2]), int(m[3]), raw)
    if m := _DMY.match(text):
        first, second, year = int(m[1]), int(m[2]), int(m[3])
        if order == "dmy":
            return _make_date(year, second, first, raw)
        if order == "mdy":
            return _make_date(year, first, second, raw)
        if order == "ymd":
            raise DomainError(N_("“{value}” is not year-month-day, as --date-order ymd says"), value=raw)
        if first > 12:  # unambiguous day-first
            return _make_date(year, second, first, raw)
        if second > 12:  # unambiguous month-first
            return _make_date(year, first, second, raw)
        raise AmbiguousDate(raw, first, second, year)
    if m := _MD.match(text):
        # No year: the most recent such day that is not in the future (Feb 29: the last leap year's).
        month, day = int(m[1]), int(m[2])
        for year in range(today.year, today.year - 9, -1):
            try:
                candidate = date(year, month, day)
            except ValueError:
                continue
            if candidate <= today:
                return candidate
        raise DomainError(N_("“{value}” is not a real calendar date"), value=raw)
    if re.fullmatch(r"\d{5}(\.\d+)?", text):
        return _excel_serial(float(text), raw)
    raise DomainError(N_("“{value}” is not a date I can read; try 2026-03-15"), value=raw)


def _excel_serial(serial: float, raw: str) -> date:
    if not 1 <= serial < 2958466:
        raise DomainError(N_("“{value}” is not a date I can read; try 2026-03-15"), value=raw)
    return _EXCEL_EPOCH + timedelta(days=int(serial))


_PLAIN_AMOUNT = re.compile(r"\d{1,16}(\.\d{1,2})?")
_AMOUNT_NOISE = re.compile(r"(rmb|cny|usd|hkd|万元|元|圆|块|[¥$€£])", re.IGNORECASE)
# The only ways of writing a number that cannot mean two things: plain digits, or thousands grouped by
# commas (or spaces, or apostrophes) in threes, with a decimal point. 12800,50 / 12.800,00 / 12,8000 do not.
_GROUPED = re.compile(r"\d{1,3}(?:(?P<sep>[, '])\d{3})(?:(?P=sep)\d{3})*(?:\.\d+)?|\d+(?:\.\d+)?")
_COMMA_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?")
_TOO_BIG = 10**15


def _cents_of_float(value: float) -> int:
    """A float from a spreadsheet (often a formula's result, 59.699999999999996) as cents, when it is
    within the float's own error of a cent value; anything finer is a real third decimal and refused."""
    if value != value or value in (float("inf"), float("-inf")):
        raise DomainError(N_("“{value}” is not an amount"), value=value)
    cents = value * 100
    nearest = round(cents)
    if abs(cents - nearest) > max(1e-9, abs(cents) * 4 * 2**-52):  # a few units in the last place
        raise DomainError(N_("“{value}” has more than two decimal places"), value=value)
    return nearest


def parse_amount_cents(value: object) -> int:
    """An amount of money as integer cents (see the module rules). Rule "never guess a number": separators
    that could mean two things (12800,50 — decimal comma or a misplaced thousands comma?) are refused,
    and a negative amount (a refund or return: -1,200, (1,200)) is refused with what to do instead."""
    if isinstance(value, bool):
        raise DomainError(N_("“{value}” is not an amount"), value=value)
    if isinstance(value, int):
        cents = value * 100
    elif isinstance(value, float):
        cents = _cents_of_float(value)
    elif isinstance(value, Decimal):
        cents = _decimal_cents(value, value)
    else:
        raw = str(value)
        if _PLAIN_AMOUNT.fullmatch(raw) or _COMMA_GROUPED.fullmatch(raw):  # the common cases: 12800.50, 12,800.50
            whole, _, fraction = raw.replace(",", "").partition(".")
            cents = int(whole) * 100 + int((fraction + "00")[:2])
        else:
            cents = _text_cents(raw)
    if cents < 0:
        raise DomainError(N_("“{value}” is a refund or return: negative amounts are not imported as purchases; "
                             "void or correct the original order instead"), value=value)
    if cents > _TOO_BIG:
        raise DomainError(N_("“{value}” is too large to be an amount"), value=value)
    return cents


def _text_cents(raw: str) -> int:
    text = fold_width(raw).strip().lower().replace("，", ",").replace("\u2212", "-")
    negative = False
    if text.startswith("(") and text.endswith(")"):  # accountants' negative: (1,200)
        negative, text = True, text[1:-1].strip()
    if text.startswith("-"):
        negative, text = True, text[1:].strip()
    multiplier = Decimal(1)
    if text.endswith("万") or text.endswith("万元"):
        multiplier = Decimal(10000)
        text = text.removesuffix("元").removesuffix("万")
    text = _AMOUNT_NOISE.sub("", text).strip().replace("\u00a0", " ").replace("\u202f", " ")
    if not text:
        raise DomainError(N_("an amount is required"))
    if re.fullmatch(r"\d{1,3}\.\d{3}", text):  # 12.800: twelve thousand eight hundred, or 12.80?
        raise DomainError(N_("“{value}” could be read two ways: write it with a decimal point and commas "
                             "in threes, like 12,800.50"), value=raw)
    if not _GROUPED.fullmatch(text):
        if re.fullmatch(r"[\d,.' ]+", text):
            raise DomainError(N_("“{value}” could be read two ways: write it with a decimal point and commas "
                                 "in threes, like 12,800.50"), value=raw)
        raise DomainError(N_("“{value}” is not an amount; write it like 12,800.50"), value=raw)
    number = Decimal(re.sub(r"[, ']", "", text)) * multiplier
    cents = _decimal_cents(number, raw)
    return -cents if negative else cents


def _decimal_cents(number: Decimal, shown: object) -> int:
    try:
        cents = number * 100
        if cents != cents.to_integral_value():
            raise DomainError(N_("“{value}” has more than two decimal places"), value=shown)
    except InvalidOperation:
        raise DomainError(N_("“{value}” is not an amount; write it like 12,800.50"), value=shown) from None
    if abs(cents) > _TOO_BIG:
        raise DomainError(N_("“{value}” is too large to be an amount"), value=shown)
    return int(cents)


_NOT_DIGIT = re.compile(r"\D")


# An extension after the number: 转 806, 分机 806, ext. 806, x806, #806, -806 after a full landline is not one.
_EXTENSION = re.compile(r"(?:\s*(?:转|轉|分机|分機|ext\.?|extension|#)|(?<=[\d\s])x)\s*(\d{1,6})\s*$", re.IGNORECASE)
_SPREADSHEET_FLOAT = re.compile(r"^(\d{5,})\.0+$")
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?e\+?\d+$", re.IGNORECASE)


def split_extension(text: str) -> tuple[str, str | None]:
    """(number, extension) of a phone as written: 0755-8888-1234 转 806 → ("0755-8888-1234", "806")."""
    match = _EXTENSION.search(text)
    if match and _NOT_DIGIT.sub("", text[:match.start()]):
        return text[:match.start()].rstrip(" ,;-"), match[1]
    return text, None


def parse_phone(value: object, *, limit: int | None = None) -> str:
    """A phone number from a file. Rule "a number that cannot be dialled is not stored": a spreadsheet
    float (13800138000.0) is the number it stands for; one Excel shortened to 1.38E+10 is refused (its
    digits are gone); an extension (转 806, ext. 806) is kept as " ext. 806"; the number part must hold
    at least 3 digits."""
    if isinstance(value, bool):
        raise DomainError(N_("“{value}” is not a phone number"), value=value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise DomainError(N_("“{value}” is not a phone number"), value=value)
        return str(int(value))
    text = fold_width(str(value)).strip()
    if m := _SPREADSHEET_FLOAT.match(text):
        return m[1]
    if _SCIENTIFIC.match(text):
        raise DomainError(N_("“{value}” was shortened by Excel and its digits are lost; format the column as text "
                             "and export again"), value=str(value))
    number, extension = split_extension(text)
    if len(_NOT_DIGIT.sub("", number)) < 3:
        raise DomainError(N_("“{value}” is not a phone number"), value=str(value))
    result = f"{number} ext. {extension}" if extension else number
    if limit and len(result) > limit:
        raise DomainError(N_("too long: at most {limit} characters"), limit=limit)
    return result


def phone_digits(value: str | None) -> str:
    """The digits of a phone number as dialled inside mainland China: a +86 / 0086 country code removed,
    and a landline written with it gets its trunk 0 back (+86 20 8888 1234 = 020 8888 1234); mobiles
    (1…) and 400/800 service numbers have none."""
    if not value:
        return ""
    text = value if value.isascii() else fold_width(value)
    text = split_extension(text)[0]  # the extension is not dialled first
    digits = _NOT_DIGIT.sub("", text)
    international = text.lstrip().startswith("+86") or digits.startswith("0086")
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and (len(digits) == 13 or international):
        digits = digits[2:]
    if international and digits and not digits.startswith(("0", "1", "400", "800")):
        digits = "0" + digits
    return digits


def format_cents(cents: int) -> str:
    """Cents as a plain decimal string with two places (for files; people get locale formatting)."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"
