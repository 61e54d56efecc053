"""The fields of each record kind as users and files name them, and how each value is read.

One table per kind drives validation, import headers (English field names or the Chinese labels, in
Simplified or Traditional script) and export columns, so the three can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from models.activity import FEEDBACK_PRODUCT_LIMIT, FEEDBACK_TEXT_LIMIT
from services.messages import N_, DomainError
from services.parsing import fold_width, parse_amount_cents, parse_date, parse_phone
from services.safecells import Verbatim


@dataclass(frozen=True)
class FieldSpec:
    name: str  # attribute name and English header
    zh: str  # Simplified Chinese label (the header users know)
    zh_hant: str
    type: str  # text, int, float, bool, date, datetime, amount, rating, list, dict, strategy, enum, owner, customer, user
    max_len: int | None = None
    ref: str | None = None  # dictionary kind, strategy kind or enum name
    required: bool = False
    aliases: tuple[str, ...] = ()  # further header spellings
    export_only: bool = False


# Words files use for enum values, in every locale (the UI shows its own translations via gettext).
ENUM_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "stage": {
        "interested": ("有兴趣购买", "有興趣購買", "有兴趣", "interested"),
        "hesitating": ("考虑、犹豫", "考慮、猶豫", "犹豫", "猶豫", "考虑", "hesitating"),
        "not_now": ("暂时不买", "暫時不買", "not now"),
        "definitely_not": ("肯定不买", "肯定不買", "definitely not"),
        "quoted_no_response": ("已报价无回馈", "已報價無回饋", "quoted, no response", "quoted"),
        "customer": ("成交客户", "成交客戶", "已成交", "customer"),
    },
    "decision_role": {
        "initiator": ("发起者", "發起者", "initiator"),
        "influencer": ("影响者", "影響者", "influencer"),
        "buyer": ("购买者", "購買者", "buyer"),
        "user": ("使用者", "使用者", "user"),
        "decider": ("决策者", "決策者", "decider"),
    },
    "interaction_kind": {
        "visit": ("拜访", "拜訪", "上门拜访", "visit"),
        "call": ("电话", "電話", "打电话", "call", "phone"),
        "email": ("电子邮件", "電子郵件", "邮件", "郵件", "email", "e-mail"),
        "chat": ("在线聊天", "線上聊天", "在线交谈", "chat"),
        "message": ("微信", "短信", "微信/短信", "message", "wechat", "sms"),
        "letter": ("信函", "明信片", "letter", "postcard"),
        "gift": ("礼品", "禮品", "送礼", "gift"),
        "event": ("客户联谊", "客戶聯誼", "活动", "活動", "event"),
    },
    "feedback_kind": {
        "complaint": ("投诉", "投訴", "complaint"),
        "suggestion": ("建议", "建議", "suggestion"),
        "inquiry": ("咨询", "諮詢", "询问", "詢問", "inquiry"),
        "praise": ("表扬", "表揚", "称赞", "稱讚", "praise"),
    },
    "feedback_status": {
        "open": ("待处理", "待處理", "未解决", "未解決", "open"),
        "resolved": ("已解决", "已解決", "resolved"),
    },
    "payment_status": {
        "unpaid": ("未付款", "未付", "unpaid"),
        "partial": ("部分付款", "部分付款", "partial", "partially paid"),
        "paid": ("已付款", "已付", "paid"),
    },
}

CUSTOMER_REF = (
    FieldSpec("customer_external_id", "客户编号", "客戶編號", "text", 64, aliases=("ERP编码", "customer code")),
    FieldSpec("customer_name", "客户名称", "客戶名稱", "text", 200, aliases=("customer",)),
)

CUSTOMER_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("external_id", "客户编号", "客戶編號", "text", 64, aliases=("ERP编码", "ERP編碼", "code")),
    FieldSpec("name", "客户名称", "客戶名稱", "text", 200, required=True, aliases=("customer name",)),
    FieldSpec("short_name", "简称", "簡稱", "text", 100, aliases=("客户简称", "short name")),
    FieldSpec("aliases", "别名", "別名", "list", 500),
    FieldSpec("region", "所属区域", "所屬區域", "dict", ref="region", aliases=("区域", "地区")),
    FieldSpec("nature", "客户性质", "客戶性質", "dict", ref="nature"),
    FieldSpec("source", "客户来源", "客戶來源", "dict", ref="source"),
    FieldSpec("category", "客户类别", "客戶類別", "dict", ref="category"),
    FieldSpec("industry", "所属行业", "所屬行業", "dict", ref="industry", aliases=("行业",)),
    FieldSpec("credit_rating", "信用状况", "信用狀況", "rating", aliases=("信用等级", "credit")),
    FieldSpec("contact_strategy", "联系策略", "聯繫策略", "strategy", ref="contact_strategy"),
    FieldSpec("purchase_strategy", "购买策略", "購買策略", "strategy", ref="purchase_strategy"),
    FieldSpec("employees", "员工数量", "員工數量", "int", aliases=("员工人数",)),
    FieldSpec("scale", "规模", "規模", "dict", ref="scale", aliases=("销售规模", "銷售規模")),
    FieldSpec("years_in_business", "从业时间", "從業時間", "dict", ref="years_in_business"),
    FieldSpec("industry_standing", "行业地位", "行業地位", "dict", ref="industry_standing"),
    FieldSpec("settlement_method", "结算方式", "結算方式", "dict", ref="settlement_method"),
    FieldSpec("wants_agency", "希望代理", "希望代理", "bool"),
    FieldSpec("phone", "电话", "電話", "phone", 64),
    FieldSpec("fax", "传真", "傳真", "phone", 64),
    FieldSpec("email", "电子邮件", "電子郵件", "text", 200, aliases=("邮箱", "e-mail")),
    FieldSpec("website", "单位网址", "單位網址", "text", 200, aliases=("网址",)),
    FieldSpec("address", "通讯地址", "通訊地址", "text", 300, aliases=("地址",)),
    FieldSpec("postcode", "邮政编码", "郵政編碼", "text", 16, aliases=("邮编",)),
    FieldSpec("latitude", "纬度", "緯度", "float"),
    FieldSpec("longitude", "经度", "經度", "float"),
    FieldSpec("owner", "负责人", "負責人", "owner", aliases=("业务员", "owner telegram id")),
    FieldSpec("stage", "关系阶段", "關係階段", "enum", ref="stage", aliases=("客户关系类型",)),
    FieldSpec("notes", "备注", "備註", "text", 4000),
    FieldSpec("txn_count", "交易次数", "交易次數", "int", export_only=True),
    FieldSpec("txn_amount", "交易金额", "交易金額", "amount", export_only=True),
    FieldSpec("first_txn_on", "首次交易", "首次交易", "date", export_only=True),
    FieldSpec("last_txn_on", "最近交易", "最近交易", "date", export_only=True),
    FieldSpec("last_contact_at", "最近联系", "最近聯繫", "datetime", export_only=True),
)

CONTACT_FIELDS: tuple[FieldSpec, ...] = (
    *CUSTOMER_REF,
    FieldSpec("name", "姓名", "姓名", "text", 100, required=True, aliases=("联系人", "聯繫人", "contact")),
    FieldSpec("title", "职务", "職務", "text", 100),
    FieldSpec("mobile", "手机", "手機", "phone", 64, aliases=("移动电话", "手机号")),
    FieldSpec("office_phone", "办公电话", "辦公電話", "phone", 64),
    FieldSpec("home_phone", "家庭电话", "家庭電話", "text", 64),
    FieldSpec("wechat", "微信", "微信", "text", 64),
    FieldSpec("email", "电子邮件", "電子郵件", "text", 200, aliases=("邮箱",)),
    FieldSpec("address", "地址", "地址", "text", 300),
    FieldSpec("birthday", "生日", "生日", "date"),
    FieldSpec("family_birthdays", "家人生日", "家人生日", "text", 500),
    FieldSpec("hobbies", "兴趣爱好", "興趣愛好", "text", 500),
    FieldSpec("native_place", "籍贯", "籍貫", "text", 100),
    FieldSpec("education", "教育背景", "教育背景", "text", 200, aliases=("学历",)),
    FieldSpec("background", "背景", "背景", "text", 2000),
    FieldSpec("decision_role", "购买决策角色", "購買決策角色", "enum", ref="decision_role", aliases=("决策角色",)),
    FieldSpec("friendliness", "友好程度", "友好程度", "rating"),
    FieldSpec("best_call_time", "通话的适宜时间", "通話的適宜時間", "text", 100, aliases=("适宜通话时间",)),
    FieldSpec("preferences", "偏好", "偏好", "text", 2000),
    FieldSpec("is_key", "关键联系人", "關鍵聯繫人", "bool"),
)

PURCHASE_FIELDS: tuple[FieldSpec, ...] = (
    *CUSTOMER_REF,
    FieldSpec("order_no", "订单号", "訂單號", "text", 64, aliases=("单号", "order number")),
    FieldSpec("purchased_on", "交易日期", "交易日期", "date", required=True, aliases=("日期", "date", "购买日期")),
    FieldSpec("products", "产品", "產品", "text", 2000, aliases=("商品", "product")),
    FieldSpec("quantity", "数量", "數量", "float"),
    FieldSpec("amount", "金额", "金額", "amount", required=True, aliases=("交易金额", "amount")),
    FieldSpec("payment_method", "付款方式", "付款方式", "text", 64),
    FieldSpec("payment_status", "付款状态", "付款狀態", "enum", ref="payment_status"),
)

INTERACTION_FIELDS: tuple[FieldSpec, ...] = (
    *CUSTOMER_REF,
    FieldSpec("kind", "方式", "方式", "enum", ref="interaction_kind", required=True,
              aliases=("类型", "联系方式", "type", "channel")),
    FieldSpec("occurred_at", "时间", "時間", "datetime", required=True, aliases=("日期", "联系时间", "date", "when")),
    FieldSpec("user", "记录人", "記錄人", "user", aliases=("业务员", "rep")),
    FieldSpec("summary", "摘要", "摘要", "text", 4000, aliases=("内容", "內容", "note")),
    FieldSpec("outcome", "结果", "結果", "text", 2000),
    FieldSpec("next_step", "下一步", "下一步", "text", 2000),
    FieldSpec("next_step_on", "下一步日期", "下一步日期", "date"),
    FieldSpec("latitude", "纬度", "緯度", "float"),
    FieldSpec("longitude", "经度", "經度", "float"),
)

FEEDBACK_FIELDS: tuple[FieldSpec, ...] = (
    *CUSTOMER_REF,
    FieldSpec("kind", "类型", "類型", "enum", ref="feedback_kind", required=True, aliases=("反馈类型", "type")),
    FieldSpec("product", "产品", "產品", "text", FEEDBACK_PRODUCT_LIMIT, aliases=("product",)),
    FieldSpec("rating", "评分", "評分", "rating", aliases=("满意度", "rating")),
    FieldSpec("text", "内容", "內容", "text", FEEDBACK_TEXT_LIMIT, required=True, aliases=("反馈内容", "text")),
    FieldSpec("status", "状态", "狀態", "enum", ref="feedback_status", aliases=("处理状态", "status")),
    FieldSpec("created_at", "提出时间", "提出時間", "datetime", aliases=("日期", "时间", "date", "created")),
    FieldSpec("resolved_at", "解决时间", "解決時間", "datetime", aliases=("resolved",)),
    FieldSpec("resolution", "处理结果", "處理結果", "text", FEEDBACK_TEXT_LIMIT, aliases=("resolution",)),
)

FIELDS_BY_KIND = {
    "customers": CUSTOMER_FIELDS,
    "contacts": CONTACT_FIELDS,
    "purchases": PURCHASE_FIELDS,
    "interactions": INTERACTION_FIELDS,
    "feedback": FEEDBACK_FIELDS,
}


def header_key(text: str) -> str:
    return re.sub(r"[\s_\-:：*]+", "", fold_width(str(text))).casefold()


def header_map(fields: tuple[FieldSpec, ...]) -> dict[str, FieldSpec]:
    """Every accepted header spelling → its field."""
    mapping: dict[str, FieldSpec] = {}
    for spec in fields:
        if spec.export_only:
            continue
        for text in (spec.name, spec.name.replace("_", " "), spec.zh, spec.zh_hant, *spec.aliases):
            mapping.setdefault(header_key(text), spec)
    return mapping


_TRUE = {"1", "y", "yes", "true", "是", "有", "对", "對", "√", "✓", "x"}
_FALSE = {"0", "n", "no", "false", "否", "无", "無", "不", "×"}
_LIST_SPLIT = re.compile(r"[,，;；、|/]")
_ENUM_INDEX = {
    name: {header_key(word): code for code, words in table.items() for word in (code, *words)}
    for name, table in ENUM_WORDS.items()
}


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_value(spec: FieldSpec, value: Any, *, tz: ZoneInfo, today: date | None = None,
                date_order: str | None = None) -> Any:
    """Read one non-blank value for this field, or raise DomainError saying why not.

    dict / strategy / owner / user / customer references are returned as the cleaned text; the caller
    resolves them against the database (see services.importer)."""
    kind = spec.type
    if kind in ("text", "dict", "strategy", "owner", "user", "customer"):
        if isinstance(value, Verbatim):  # a defused export cell, restored: exactly as it was
            text = str(value)
        else:
            text = (value.strftime("%Y-%m-%d") if isinstance(value, (date, datetime)) else str(value)).strip()
        if isinstance(value, float) and value.is_integer():
            text = str(int(value))  # spreadsheets turn codes and phones into floats
        if spec.max_len and len(text) > spec.max_len:
            raise DomainError(N_("too long: at most {limit} characters"), limit=spec.max_len)
        return text
    if kind == "phone":
        return parse_phone(value, limit=spec.max_len)
    if kind == "list":
        return [part.strip() for part in _LIST_SPLIT.split(str(value)) if part.strip()]
    if kind in ("int", "rating"):
        text = fold_width(str(value)).strip().replace(",", "")
        if kind == "rating":
            text = text.replace("★", "*")
            if text and set(text) == {"*"}:
                text = str(len(text))
            text = text.removesuffix("星")
        try:
            number = float(text)
        except ValueError:
            raise DomainError(N_("“{value}” is not a whole number"), value=value) from None
        if not number.is_integer():
            raise DomainError(N_("“{value}” is not a whole number"), value=value)
        number = int(number)
        if kind == "rating" and not 1 <= number <= 5:
            raise DomainError(N_("a rating goes from 1 to 5"))
        if number < 0:
            raise DomainError(N_("cannot be negative"))
        return number
    if kind == "float":
        try:
            return float(fold_width(str(value)).strip())
        except ValueError:
            raise DomainError(N_("“{value}” is not a number"), value=value) from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = fold_width(str(value)).strip().casefold()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise DomainError(N_("“{value}” is not yes or no"), value=value)
    if kind == "date":
        return parse_date(value, today=today, order=date_order)
    if kind == "datetime":
        return parse_datetime(value, tz=tz, today=today, order=date_order)
    if kind == "amount":
        return parse_amount_cents(value)
    if kind == "enum":
        code = _ENUM_INDEX[spec.ref or ""].get(header_key(str(value)))
        if code is None:
            choices = "、".join(ENUM_WORDS[spec.ref or ""][c][0] for c in ENUM_WORDS[spec.ref or ""])
            raise DomainError(N_("“{value}” is not one of: {choices}"), value=value, choices=choices)
        return code
    raise AssertionError(f"unknown field type {kind}")


_TIME = re.compile(r"(\d{1,2})[:：](\d{2})(?::(\d{2}))?")


def parse_datetime(value: Any, *, tz: ZoneInfo, today: date | None = None, order: str | None = None) -> datetime:
    """A moment from a file: local time in `tz` unless it carries an offset; a bare date means noon."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and "T" in value and value[:4].isdigit():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise DomainError(N_("“{value}” is not a date I can read; try 2026-03-15"), value=value) from None
    else:
        text = fold_width(str(value)).strip()
        clock = _TIME.search(text)
        day = parse_date(text[:clock.start()].strip() if clock else value, today=today, order=order)
        at = time(int(clock[1]), int(clock[2]), int(clock[3] or 0)) if clock else time(12, 0)
        if clock and (at.hour > 23 or at.minute > 59):
            raise DomainError(N_("“{value}” is not a real time of day"), value=value)
        moment = datetime.combine(day, at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)
