"""seed the system dictionaries and default contact / purchase strategies

The data is written out here (not imported from the app) so this migration always seeds the same rows.
Codes are stable identifiers used by imports and code; labels are what users see, per locale, and
admins may rename or retire them later.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# kind -> [(code, zh_Hans, zh_Hant, en)]
DICTIONARIES: dict[str, list[tuple[str, str, str, str]]] = {
    "region": [
        ("south", "华南", "華南", "South China"),
        ("east", "华东", "華東", "East China"),
        ("central", "华中", "華中", "Central China"),
        ("north", "华北", "華北", "North China"),
        ("southwest", "西南", "西南", "Southwest China"),
        ("northwest", "西北", "西北", "Northwest China"),
        ("northeast", "东北", "東北", "Northeast China"),
    ],
    "nature": [
        ("state_owned", "国有企业", "國有企業", "State-owned enterprise"),
        ("joint_venture", "中外合资", "中外合資", "Sino-foreign joint venture"),
        ("private", "私营或个体户", "私營或個體戶", "Private or sole proprietor"),
        ("partnership", "合伙企业", "合夥企業", "Partnership"),
        ("foreign_owned", "外商独资", "外商獨資", "Wholly foreign-owned"),
        ("public_institution", "事业单位", "事業單位", "Public institution"),
    ],
    "source": [
        ("web_ad", "网站广告", "網站廣告", "Website ad"),
        ("trade_fair", "展览会", "展覽會", "Trade fair"),
        ("referral", "客户推荐", "客戶推薦", "Customer referral"),
        ("phone", "电话", "電話", "Phone"),
        ("email", "邮件", "郵件", "E-mail"),
        ("print_ad", "报刊广告", "報刊廣告", "Print ad"),
        ("yellow_pages", "黄页", "黃頁", "Yellow pages"),
        ("friend", "朋友介绍", "朋友介紹", "Introduced by a friend"),
        ("cold_visit", "陌生拜访", "陌生拜訪", "Cold visit"),
    ],
    "category": [
        ("prospect_end", "潜在终端客户", "潛在終端客戶", "Prospective end customer"),
        ("prospect_agent", "潜在代理", "潛在代理", "Prospective agent"),
        ("end", "现有终端客户", "現有終端客戶", "End customer"),
        ("agent", "现有代理", "現有代理", "Agent"),
        ("lost_end", "流失终端客户", "流失終端客戶", "Lost end customer"),
        ("lost_agent", "流失代理", "流失代理", "Lost agent"),
    ],
    "industry": [
        ("education", "教育", "教育", "Education"),
        ("healthcare", "医疗卫生", "醫療衛生", "Healthcare"),
        ("government", "政府", "政府", "Government"),
        ("chemicals", "化工", "化工", "Chemicals"),
        ("manufacturing", "制造业", "製造業", "Manufacturing"),
        ("retail", "零售", "零售", "Retail"),
        ("it", "信息技术", "資訊科技", "Information technology"),
        ("construction", "建筑", "建築", "Construction"),
        ("logistics", "物流", "物流", "Logistics"),
        ("finance", "金融", "金融", "Finance"),
        ("food", "食品饮料", "食品飲料", "Food and beverage"),
        ("energy", "能源", "能源", "Energy"),
    ],
    "scale": [
        ("micro", "500万以下", "500萬以下", "Under 5M"),
        ("small", "500万–2000万", "500萬–2000萬", "5M–20M"),
        ("medium", "2000万–1亿", "2000萬–1億", "20M–100M"),
        ("large", "1亿–10亿", "1億–10億", "100M–1B"),
        ("huge", "10亿以上", "10億以上", "Over 1B"),
    ],
    "years_in_business": [
        ("lt1", "1年以下", "1年以下", "Under 1 year"),
        ("y1_3", "1–3年", "1–3年", "1–3 years"),
        ("y3_5", "3–5年", "3–5年", "3–5 years"),
        ("y5_10", "5–10年", "5–10年", "5–10 years"),
        ("gt10", "10年以上", "10年以上", "Over 10 years"),
    ],
    "industry_standing": [
        ("leader", "领导者", "領導者", "Leader"),
        ("influential", "较有影响", "較有影響", "Influential"),
        ("average", "影响一般", "影響一般", "Average influence"),
        ("none", "没有影响力", "沒有影響力", "No influence"),
    ],
    "settlement_method": [
        ("cash", "现款现货", "現款現貨", "Cash on delivery"),
        ("net30", "一个月回款", "一個月回款", "Net 30 days"),
        ("on_invoice", "票到付款", "票到付款", "Pay on invoice"),
        ("net60", "2个月回款", "2個月回款", "Net 60 days"),
        ("net90", "3个月回款", "3個月回款", "Net 90 days"),
    ],
}

# (code, zh_Hans, zh_Hant, en, cycle_days)
CONTACT_STRATEGIES = [
    ("weekly", "每周联系", "每週聯繫", "Weekly contact", 7),
    ("biweekly", "每两周联系", "每兩週聯繫", "Every two weeks", 14),
    ("monthly", "每月联系", "每月聯繫", "Monthly contact", 30),
    ("quarterly", "每季度联系", "每季度聯繫", "Quarterly contact", 90),
]
PURCHASE_STRATEGIES = [
    ("monthly", "每月采购", "每月採購", "Buys monthly", 30),
    ("bimonthly", "每两月采购", "每兩月採購", "Buys every two months", 60),
    ("quarterly", "每季度采购", "每季度採購", "Buys quarterly", 90),
    ("half_yearly", "每半年采购", "每半年採購", "Buys every six months", 180),
    ("yearly", "每年采购", "每年採購", "Buys yearly", 365),
]


def upgrade() -> None:
    now = datetime.now(UTC)
    entries = sa.table(
        "dictionary_entry",
        sa.column("kind", sa.String), sa.column("code", sa.String), sa.column("sort_order", sa.Integer),
        sa.column("active", sa.Boolean), sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("label_zh_hans", sa.String), sa.column("label_zh_hant", sa.String),
        sa.column("label_en", sa.String),
    )
    op.bulk_insert(entries, [
        {"kind": kind, "code": code, "sort_order": i, "active": True, "created_at": now,
         "label_zh_hans": hans, "label_zh_hant": hant, "label_en": en}
        for kind, rows in DICTIONARIES.items()
        for i, (code, hans, hant, en) in enumerate(rows)
    ])
    contact = sa.table(
        "contact_strategy",
        sa.column("code", sa.String), sa.column("cycle_days", sa.Integer),
        sa.column("overdue_factor", sa.Float), sa.column("active", sa.Boolean),
        sa.column("label_zh_hans", sa.String), sa.column("label_zh_hant", sa.String),
        sa.column("label_en", sa.String),
    )
    op.bulk_insert(contact, [
        {"code": code, "label_zh_hans": hans, "label_zh_hant": hant, "label_en": en,
         "cycle_days": days, "overdue_factor": 1.5, "active": True}
        for code, hans, hant, en, days in CONTACT_STRATEGIES
    ])
    purchase = sa.table(
        "purchase_strategy",
        sa.column("code", sa.String), sa.column("cycle_days", sa.Integer), sa.column("active", sa.Boolean),
        sa.column("label_zh_hans", sa.String), sa.column("label_zh_hant", sa.String),
        sa.column("label_en", sa.String),
    )
    op.bulk_insert(purchase, [
        {"code": code, "label_zh_hans": hans, "label_zh_hant": hant, "label_en": en,
         "cycle_days": days, "active": True}
        for code, hans, hant, en, days in PURCHASE_STRATEGIES
    ])


def downgrade() -> None:
    op.execute("DELETE FROM purchase_strategy")
    op.execute("DELETE FROM contact_strategy")
    op.execute("DELETE FROM dictionary_entry")
