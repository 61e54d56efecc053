"""The managers' workbook, written fast and in little memory.

Rules:
- One cover sheet (what the workbook covers: period, comparison, customers, RFM window and scores,
  generated when and by whom), then one sheet per table (`tables`).
- Amounts are numbers with two decimals, shares percentages, changes signed percentages; text is always
  written as text (a name typed as =HYPERLINK(…) stays a name: services.safecells' rule); columns are as wide
  as what they hold (a CJK character counts two), the header row bold and frozen.
- Streaming: services.xlsxstream writes each sheet's XML straight into the file, 5,000 rows at a time
  (measured against XlsxWriter's constant-memory mode, openpyxl's write-only mode and the cell-by-cell
  writer used until 2026-12 in bench/export_bench.py). No bot framework is imported.
- Excel holds at most 1,048,576 rows a sheet: a longer table continues on "<title> (2)", …, and the last
  row of the full sheet says where it continues.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.rfm import SEGMENTS

if TYPE_CHECKING:
    from services.reports import Report

ROW_LIMIT = 1_048_576  # rows per sheet in Excel, the header included
MONEY, PERCENT, RATIO = "#,##0.00", "0.0%", "+0.0%;-0.0%;0.0%"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Any]]
    formats: dict[int, str]  # 1-based column → number format
    freeze: bool = True


def display_width(value: Any, number_format: str | None) -> int:
    """Roughly how many character cells a value takes in a spreadsheet (a CJK character takes two)."""
    if value is None:
        return 0
    if isinstance(value, float) and number_format:
        text = f"{value:,.2f}" if "0.00" in number_format else f"{value:.1%}"
    elif isinstance(value, str):
        return len(value) + sum(1 for ch in value if ord(ch) > 0x2E80)
    else:
        text = str(value)
    return len(text)


def widths(table: Table) -> list[int]:
    """Each column's width: its widest value (at most 60), at least 8. Per column at C speed: the longest
    texts (a CJK character counts two, so the 20 longest by characters are measured), the largest and
    smallest numbers."""
    out = [display_width(title, None) for title in table.header]
    rows = table.rows
    for n in range(len(out)):
        column = [row[n] for row in rows if len(row) > n and row[n] is not None]
        if not column:
            continue
        texts = [v for v in column if isinstance(v, str)]
        numbers = [v for v in column if not isinstance(v, str)]
        best = out[n]
        if texts:
            longest = heapq.nlargest(20, texts, key=len)
            best = max(best, max(display_width(v, None) for v in longest))
        if numbers:
            number_format = table.formats.get(n + 1)
            best = max(best, display_width(max(numbers), number_format), display_width(min(numbers), number_format))
        out[n] = best
    return [max(8, min(60, width + 2)) for width in out]


def _sheet_title(title: str, part: int) -> str:
    """A name Excel takes: no []:*?/\\, not empty, at most 31 characters with the part number kept."""
    suffix = "" if part == 1 else f" ({part})"
    title = re.sub(r"[\[\]:*?/\\]", "_", title).strip("' ") or "Sheet"
    return title[:31 - len(suffix)] + suffix


def write(report: Report, path: Path, headings: dict[str, Any], *, row_limit: int = ROW_LIMIT,
          continued: str = "continued on {sheet}") -> Path:
    """Write the workbook (the module's rules) to `path`. `headings` as for `tables`; its "continued"
    entry (translated) says where a long table goes on."""
    from services.xlsxstream import Book

    path.parent.mkdir(parents=True, exist_ok=True)
    continued = headings.get("continued", continued)
    book = Book(path)
    used: set[str] = set()
    try:
        for table in tables(report, headings):
            styles = {n - 1: book.style(f) for n, f in table.formats.items()}
            sizes = widths(table)
            room = row_limit - 2  # the header, and a last row saying where the table continues
            parts = [table.rows[i:i + room] for i in range(0, len(table.rows), room)] or [[]]
            for number, rows in enumerate(parts, 1):
                note = continued.format(sheet=_sheet_title(table.title, number + 1)) if number < len(parts) else None
                title = base = _sheet_title(table.title, number)
                extra = 2
                while title.casefold() in used:  # two titles alike once cut or cased: number the later one
                    title, extra = _sheet_title(base, extra), extra + 1
                used.add(title.casefold())
                book.sheet(title, table.header, rows, sizes, styles, table.freeze, note)
    except BaseException:
        book.close()
        path.unlink(missing_ok=True)  # never a half-written workbook
        raise
    book.close()
    return path


def tables(report: Report, headings: dict[str, Any]) -> list[Table]:
    """What the workbook holds, as plain tables: a cover sheet saying what it covers (`headings["about"]`:
    translated (label, value) rows), then one sheet per analysis with its number formats, each customer
    row with its ERP code, changes as numbers. `headings` holds the translated texts (the front end's
    language): {"sheets": {analysis: title}, "columns": {key: header}, "segments": {code: name},
    "kinds": {feedback kind: name}, "about": [(label, value)]}; values without a name stay as they are."""
    sheets, col = headings["sheets"], headings["columns"]
    segment_name = lambda code: headings.get("segments", {}).get(code, code)  # noqa: E731
    kind_name = lambda code: headings.get("kinds", {}).get(code, code)  # noqa: E731
    out: list[Table] = []

    def sheet(key: str, header: list[str], rows: list[list[Any]], formats: dict[int, str], *,
              freeze: bool = True) -> None:
        out.append(Table(sheets[key], header, rows, formats, freeze))

    if headings.get("about"):
        sheet("about", [headings["about"][0][0], headings["about"][0][1]],
              [list(row) for row in headings["about"][1:]], {}, freeze=False)
    yuan = 100
    money, percent, ratio = MONEY, PERCENT, RATIO
    code = col.get("code", "code")
    sheet("rfm", [code, col["customer"], col["owner"], "R", "F", "M", col["segment"], col["segment_before"]],
          [[report.code(cid), report.name(cid),
            report.rep(report.customers[cid].owner_id if cid in report.customers else None),
            s.r, s.f, s.m, segment_name(s.segment),
            segment_name(report.rfm.previous[cid].segment) if cid in report.rfm.previous else ""]
           for cid, s in sorted(report.rfm.scores.items(), key=lambda x: (report.name(x[0]), x[0]))], {})
    rfm = report.rfm
    sheet("segments", [col["segment"], col["customers"], col["customers_before"], col["change_count"]],
          [[segment_name(seg), rfm.segments.get(seg, 0), rfm.segments_before.get(seg, 0),
            rfm.segments.get(seg, 0) - rfm.segments_before.get(seg, 0)]
           for seg in SEGMENTS if rfm.segments.get(seg) or rfm.segments_before.get(seg)], {})
    sheet("movement", [col["segment_before"], col["segment"], col["customers"]],
          [[segment_name(a), segment_name(b), n] for a, b, n in rfm.moved()], {})  # "none": no purchase then / now
    sheet("churn", [code, col["customer"], col["owner"], col["r_before"], col["r_now"], col["f_before"], col["f_now"],
                    col["amount_before"]],
          [[report.code(c.customer_id), report.name(c.customer_id),
            report.rep(report.customers[c.customer_id].owner_id if c.customer_id in report.customers else None),
            c.before.r, c.now.r, c.before.f, c.now.f, c.amount_cents / yuan] for c in report.churn],
          {8: money})
    sheet("key_accounts", [col["rank"], code, col["customer"], col["amount"], col["share"], col["amount_last_year"],
                           col["change"], col["rank_change"]],
          [[a.rank, report.code(a.customer_id), report.name(a.customer_id), a.total_cents / yuan, a.share,
            a.prior_cents / yuan, a.change, a.rank_change] for a in report.key_accounts],
          {4: money, 5: percent, 6: money, 7: ratio})
    rows = []
    for dimension, shares in report.distribution.items():
        for s in shares:
            rows.append([col[dimension], s.label or "—", s.customers, s.customer_share, s.amount_cents / yuan,
                         s.amount_share])
    sheet("distribution", [col["dimension"], col["value"], col["customers"], col["customer_share"], col["amount"],
                           col["amount_share"]], rows, {4: percent, 5: money, 6: percent})
    sheet("performance", [code, col["customer"], col["amount"], col["amount_last_year"], col["change_amount"],
                          col["change"]],
          [[report.code(p.key), report.name(p.key), p.total_cents / yuan, p.prior_cents / yuan, p.change_cents / yuan,
            p.change] for p in report.performance.rows], {3: money, 4: money, 5: money, 6: ratio})
    sheet("rep_performance", [col["owner"], col["amount"], col["amount_last_year"], col["change_amount"],
                              col["change"]],
          [[report.rep(p.key), p.total_cents / yuan, p.prior_cents / yuan, p.change_cents / yuan, p.change]
           for p in report.rep_performance.rows], {2: money, 3: money, 4: money, 5: ratio})
    extremes = [(col["top_total"], report.performance.top_total), (col["top_growth"], report.performance.top_growth),
                (col["top_decline"], report.performance.top_decline)]
    sheet("extremes", [col["group"], code, col["customer"], col["amount"], col["amount_last_year"],
                       col["change_amount"], col["change"]],
          [[group, report.code(p.key), report.name(p.key), p.total_cents / yuan, p.prior_cents / yuan,
            p.change_cents / yuan, p.change] for group, rows in extremes for p in rows],
          {4: money, 5: money, 6: money, 7: ratio})
    c = report.complaints
    ordered = lambda counter: sorted(counter.items(), key=lambda x: (-x[1], str(x[0])))  # noqa: E731 ties: by name
    sheet("complaints", [col["dimension"], col["value"], col["count"], code, col["since"]],
          [[col["kind"], kind_name(k), n] for k, n in ordered(c.by_kind)]
          + [[col["product"], k or "—", n] for k, n in ordered(c.by_product)]
          + [[col["owner"], report.rep(k), n] for k, n in sorted(c.by_rep.items(), key=lambda x: (-x[1], report.rep(x[0])))]
          + [[col["region"], k or "—", n] for k, n in ordered(c.by_region)]
          + [[col["open"], "", c.open], [col["resolved"], "", c.resolved],
             [col["median_hours"], "", round(c.median_hours_to_resolve, 1) if c.median_hours_to_resolve else None],
             [col["open_total"], "", c.open_total]]
          + ([[col["oldest_open"], report.name(c.oldest_open.customer_id), None,
               report.code(c.oldest_open.customer_id), c.oldest_open.created_at.date().isoformat()]]
             if c.oldest_open is not None else []),
          {})
    activity_rows = []
    for rep, weeks in sorted(report.activity.per_rep_week.items(), key=lambda x: (report.rep(x[0]), x[0] or 0)):
        share = report.activity.within_cycle_share(rep) if rep is not None else None
        activity_rows.append([report.rep(rep), sum(weeks.values()), share])
    sheet("activity", [col["owner"], col["interactions"], col["within_cycle"]], activity_rows, {3: percent})
    week = lambda w: f"{w[0]}-W{w[1]:02d}"  # noqa: E731 ISO week
    sheet("weekly", [col["week"], col["owner"], col["interactions"]],
          [row[:3] for row in sorted(([week(w), report.rep(rep), n, rep or 0]
                                      for rep, weeks in report.activity.per_rep_week.items()
                                      for w, n in weeks.items()), key=lambda row: (row[0], row[1], row[3]))], {})
    sheet("crowded", [col["week"], code, col["customer"], col["reps"]],
          [[week(w), report.code(cid), report.name(cid), "、".join(sorted(report.rep(r) for r in reps))]
           for cid, w, reps in sorted(report.activity.crowded, key=lambda x: (x[1], report.name(x[0]), x[0]))], {})
    sat = report.satisfaction
    sheet("satisfaction", [col["group"], code, col["customer"], col["rating"]],
          [[col["most_satisfied"], report.code(cid), report.name(cid), r] for cid, r in sat.most]
          + [[col["least_satisfied"], report.code(cid), report.name(cid), r] for cid, r in sat.least]
          + [[col["product"], "", k or "—", r] for k, r in sorted(sat.by_product.items(), key=lambda x: (-x[1], str(x[0])))]
          + [[col["region"], "", k or "—", r] for k, r in sorted(sat.by_region.items(), key=lambda x: (-x[1], str(x[0])))],
          {})
    sheet("trend", [col["month"], col["from"], col["to"], col["amount"], col["amount_last_year"], col["note"]],
          [[m.month, m.part.start.isoformat(), m.part.end.isoformat(), m.amount_cents / yuan,
            m.year_before_cents / yuan, col["partial"] if m.partial else ""] for m in report.months],
          {4: money, 5: money})
    return out
