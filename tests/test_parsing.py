"""What reps and spreadsheets write for dates, amounts and phones is read the way a person means it."""

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.messages import DomainError
from services.parsing import format_cents, parse_amount_cents, parse_date, phone_digits

TODAY = date(2026, 3, 20)


@pytest.mark.parametrize("text, expected", [
    ("2026-03-15", date(2026, 3, 15)),
    ("2026/3/5", date(2026, 3, 5)),
    ("2026.03.15", date(2026, 3, 15)),
    ("2026年3月15日", date(2026, 3, 15)),
    ("２０２６－０３－１５", date(2026, 3, 15)),  # full-width input method
    ("20260315", date(2026, 3, 15)),
    ("2026-03-15 10:30", date(2026, 3, 15)),
    ("15/03/2026", date(2026, 3, 15)),  # day > 12: unambiguous day-first
    ("03/15/2026", date(2026, 3, 15)),  # second part > 12: month-first
    ("今天", TODAY), ("昨天", date(2026, 3, 19)), ("前天", date(2026, 3, 18)), ("Yesterday", date(2026, 3, 19)),
    ("3.15", date(2026, 3, 15)),  # no year: this year's, not in the future
    ("3月18日", date(2026, 3, 18)),
    ("12.25", date(2025, 12, 25)),  # would be in the future: last year's
    ("2.29", date(2024, 2, 29)),  # the last leap year's
    (45000, date(2023, 3, 15)),  # Excel serial
    ("45000", date(2023, 3, 15)),
])
def test_dates_people_write_are_understood(text, expected):
    assert parse_date(text, today=TODAY) == expected


@pytest.mark.parametrize("text", ["2026-02-30", "next week", "", "05/06/2026", "13.45", "2026-13-01"])
def test_unreadable_or_ambiguous_dates_are_refused_with_a_reason(text):
    with pytest.raises(DomainError) as caught:
        parse_date(text, today=TODAY)
    assert caught.value.problem.message  # a message id the front end can translate


@pytest.mark.parametrize("text, cents", [
    ("12800", 1_280_000), ("12,800.50", 1_280_050), ("¥12,800.5", 1_280_050), ("１２８００元", 1_280_000),
    ("12 800", 1_280_000), ("3.5万", 3_500_000), ("RMB 99.99", 9_999), ("12，800", 1_280_000),
    (1234.5, 123_450), (88, 8_800),
])
def test_amounts_in_common_formats_become_exact_cents(text, cents):
    assert parse_amount_cents(text) == cents


@pytest.mark.parametrize("text", ["-5", "12.345", "abc", "", "1万2000", "1.2.3"])
def test_bad_amounts_are_refused(text):
    with pytest.raises(DomainError):
        parse_amount_cents(text)


@given(st.integers(min_value=0, max_value=10**13))
def test_amount_text_round_trips_exactly(cents):
    assert parse_amount_cents(format_cents(cents)) == cents


@pytest.mark.parametrize("raw, digits", [
    ("+86 138-0013-8000", "13800138000"), ("0086 13800138000", "13800138000"),
    ("+86 20 8888 1234", "02088881234"), ("0086-755-2878-0808", "075528780808"),
    ("+86 400 820 8820", "4008208820"), ("+852 2345 6789", "85223456789"),
    ("(020) 8888 1234", "02088881234"), ("138 0013 8000", "13800138000"), (None, ""),
])
def test_phone_numbers_compare_by_digits(raw, digits):
    assert phone_digits(raw) == digits


@pytest.mark.parametrize("text, expected", [
    ("明天", date(2026, 3, 21)), ("tomorrow", date(2026, 3, 21)), ("后天", date(2026, 3, 22)),
    ("下周", date(2026, 3, 27)), ("3.25", date(2026, 3, 25)), ("3.15", date(2027, 3, 15)),
    ("2026-04-01", date(2026, 4, 1)), ("今天", TODAY),
])
def test_next_step_dates_look_ahead(text, expected):
    from services.parsing import parse_future_date

    assert parse_future_date(text, today=TODAY) == expected


@pytest.mark.parametrize("text", ["昨天", "2026-03-01", "2.30", "someday"])
def test_next_step_dates_in_the_past_or_unreadable_are_refused(text):
    from services.parsing import parse_future_date

    with pytest.raises(DomainError):
        parse_future_date(text, today=TODAY)


async def test_a_landline_typed_with_the_country_code_finds_the_customer():
    from services.access import Viewer
    from services.lookup import CustomerText, LookupIndex

    index = await LookupIndex.from_documents(
        [CustomerText(1, None, ["广州市人易软件技术有限公司"], [], [phone_digits("020-8888 1234")])])
    [match] = index.search("+86 20 8888 1234", Viewer.everyone())
    assert (match.customer_id, match.why) == (1, "phone")
