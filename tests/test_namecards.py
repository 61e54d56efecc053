"""Business card → contact in one photo (issue 17). Cards are drawn by the test (tests/cardmaker.py: Pillow
with the bundled CJK font) in several layouts, Chinese and English, tilted, one as a noisy blurred photo;
what the bot reads must be what was drawn. Then the rep's story through the dispatcher: the photo, the
summary, fixing a field (a bad value refused, nothing changed), saving as a new customer with its stage or
to the customer the company already is, and the refusals (a huge picture, a photo with no card on it,
a file that is no picture). The OCR engine is made once per process (services.ocr) and reused."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import time
from functools import partial
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from models import AuditLog, ContactPerson, Customer, Stage, User
from services import ocr
from services.customers import create_customer
from services.messages import DomainError
from services.namecards import CardFields, check_field, extract, read_card
from services.ocr import TextLine
from services.parsing import phone_digits
from services.users import add_user
from tests.botkit import button_update, document_update, make_app, person, photo_update, text_update
from tests.cardmaker import CardSpec, draw
from tests.in_worker import SLOW, as_read, holding, napping, napping_for, slow_read, stuck

ZH_LEFT = CardSpec(name="王芳", company="广州市人易软件技术有限公司", title="采购经理", mobile="138 0013 8000",
                   office="020-8888 1234 转 806", fax="020-8888 1299", email="wangfang@renyi.com.cn",
                   website="www.renyi.com.cn", address="广州市天河区体育西路103号维多利广场18楼", layout="left")
EN_CENTRED = CardSpec(name="Kevin Martin", company="Shenzhen Chuangwei Chemical Co., Ltd.", title="Sales Manager",
                      mobile="+86 156 5560 8283", office="+86 755 8628 6473 ext. 21", email="kevin.martin@chuangwei.cn",
                      website="https://chuangwei.cn", address="Suite 2180, No. 344 Keyuan Road, Shenzhen, China",
                      language="en", layout="centred", rotation=-3.5)
ZH_TWO_COLUMN = CardSpec(name="欧阳明", company="杭州恒达机电设备集团有限公司", title="技术总监", mobile="186-5712-3456",
                         office="(0571) 8765 4321", email="ouyang@hengda-tech.com", layout="two_column", rotation=4.0)
EN_LOGO = CardSpec(name="Grace Lim", company="Suzhou Tiancheng Logistics Limited", title="General Manager",
                   mobile="139 1234 5678", email="grace_lim@tiancheng88.com", website="www.tiancheng88.com",
                   language="en", layout="logo", labels=False, rotation=2.0,
                   second_company="苏州天成物流有限公司")
ZH_NOISY = CardSpec(name="陈静", company="成都远东医疗器械有限公司", title="区域经理", mobile="+86 177 2233 4455",
                    office="028-6655 4433", email="chenjing@yuandong.cn", address="成都市高新区天府大道88号12楼",
                    layout="left", rotation=-5.0, noisy=True, extra=["诚信 · 专业 · 共赢"])


def same_phone(drawn: str, read: str | None) -> bool:
    """The same number and extension (however it is written)."""
    def key(text: str) -> tuple[str, str]:
        number, _, extension = text.replace("转", "ext.").partition("ext.")
        return phone_digits(number), extension.strip()
    return read is not None and key(drawn) == key(read)


@pytest.fixture
def offline(monkeypatch):
    """No network: any connection attempt fails the test (the models are files of the installed package)."""
    attempts: list[object] = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("no network in this test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert attempts == [], f"reading a card tried to connect to {attempts}"


def test_the_models_are_files_of_the_installed_package():
    import rapidocr_onnxruntime

    models = Path(rapidocr_onnxruntime.__file__).parent / "models"
    names = sorted(p.name for p in models.glob("*.onnx"))
    assert "ch_PP-OCRv4_det_infer.onnx" in names and "ch_PP-OCRv4_rec_infer.onnx" in names


@pytest.mark.parametrize("spec", [ZH_LEFT, EN_CENTRED, ZH_TWO_COLUMN, EN_LOGO, ZH_NOISY],
                         ids=["zh-left", "en-centred-tilted", "zh-two-columns-tilted", "en-logo-icons", "zh-noisy"])
def test_a_drawn_card_is_read_field_for_field(spec, offline):
    card = read_card(draw(spec, seed=7))
    assert (card.name, card.company, card.title) == (spec.name, spec.company, spec.title)
    assert card.email == spec.email
    for field in ("mobile", "office"):
        drawn = getattr(spec, field)
        assert same_phone(drawn, getattr(card, field)) if drawn else getattr(card, field) is None, field
    if spec.website:
        assert card.website == spec.website
    if spec.address:
        assert card.address == spec.address
    if spec.fax and spec.labels:
        assert same_phone(spec.fax, card.fax)
        assert card.fax != card.office


def _line(text: str, top: float, height: float = 30, left: float = 50) -> TextLine:
    width = max(40, len(text) * height * 0.6)
    return TextLine(text, ((left, top), (left + width, top), (left + width, top + height), (left, top + height)), 0.99)


def test_labels_decide_what_a_number_is_and_one_line_may_carry_several():
    card = extract([_line("远东机电有限公司", 20), _line("李明 销售总监", 80, 60),
                    _line("T:020-8888 1234转806 F:020-8888 1299", 160), _line("M:l38 OO13 8000", 200),
                    _line("E: li.ming @ yuandong.com", 240)])
    assert (card.company, card.name, card.title) == ("远东机电有限公司", "李明", "销售总监")
    assert card.office == "020 8888 1234 ext. 806" and card.fax == "020 8888 1299"
    assert card.mobile == "138 0013 8000"  # O and l in a labelled number are digits
    assert card.email == "li.ming@yuandong.com"


def test_without_labels_a_mobile_is_the_mobile_and_the_first_landline_the_office():
    card = extract([_line("Helen Davis", 20, 60), _line("RegionalManager", 90), _line("0571-7507 6465", 130),
                    _line("13912345678", 170), _line("0571-7507 6400", 210),
                    _line("Hangzhou Ruifeng Group Co., Ltd.", 250),
                    _line("Suite423,No.158WensanRoad,Hangzhou,China", 290)])
    assert (card.name, card.title, card.company) == ("Helen Davis", "Regional Manager", "Hangzhou Ruifeng Group Co., Ltd.")
    assert (card.mobile, card.office, card.fax) == ("139 1234 5678", "0571 7507 6465", None)
    assert card.address == "Suite 423, No. 158 Wensan Road, Hangzhou, China"


def test_the_name_is_the_largest_short_line_and_slogans_are_not_names():
    card = extract([_line("扫码加微信", 10, 70), _line("诚信共赢", 100, 30), _line("张伟", 150, 64),
                    _line("华南五金制品有限公司", 230)])
    assert card.name == "张伟" and card.company == "华南五金制品有限公司"


def test_a_photo_without_a_card_is_refused_with_what_to_do():
    blank = io.BytesIO()
    Image.new("RGB", (800, 500), (250, 250, 250)).save(blank, "JPEG")
    with pytest.raises(DomainError) as refused:
        read_card(blank.getvalue())
    assert "no text" in str(refused.value) and "straight above the card" in str(refused.value)


def test_a_photo_of_words_that_are_no_card_is_refused_too():
    from PIL import ImageDraw, ImageFont

    from services.charts import font_path

    page = Image.new("RGB", (1000, 300), "white")
    ImageDraw.Draw(page).text((40, 100), "今天下午开会讨论季度计划", font=ImageFont.truetype(str(font_path()), 48),
                              fill="black")
    out = io.BytesIO()
    page.save(out, "JPEG")
    with pytest.raises(DomainError, match="no business card in that photo: no name, company, phone or e-mail"):
        read_card(out.getvalue())


def test_a_picture_sent_as_a_file_is_read_the_way_up_the_phone_meant(offline):
    """A phone stores a portrait shot sideways with an EXIF orientation; sent as a file, it arrives so."""
    sideways = Image.open(io.BytesIO(draw(ZH_TWO_COLUMN, seed=9))).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation: turn 90° clockwise to view
    out = io.BytesIO()
    sideways.save(out, "JPEG", exif=exif)
    card = read_card(out.getvalue())
    assert (card.name, card.company, card.email) == (ZH_TWO_COLUMN.name, ZH_TWO_COLUMN.company, ZH_TWO_COLUMN.email)


def test_huge_and_broken_pictures_are_refused_before_they_are_decoded():
    bomb = io.BytesIO()  # 100 megapixels of one colour: a tiny PNG that unpacks to 300 MB
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")
    assert len(bomb.getvalue()) < 200_000
    with pytest.raises(DomainError, match="too large"):
        ocr.open_image(bomb.getvalue())
    with pytest.raises(DomainError, match="too large"):
        ocr.open_image(b"\xff\xd8" + b"0" * (ocr.MAX_BYTES + 1))
    with pytest.raises(DomainError, match="not a picture"):
        ocr.open_image(b"%PDF-1.7 this is a document")
    with pytest.raises(DomainError, match="too small"):
        tiny = io.BytesIO()
        Image.new("RGB", (20, 20)).save(tiny, "PNG")
        ocr.open_image(tiny.getvalue())


def test_typed_fixes_are_checked_like_the_field_anywhere_else():
    assert check_field("mobile", "138-0013-8000") == "138 0013 8000"
    assert check_field("office", "020 8888 1234 转 806") == "020 8888 1234 ext. 806"
    assert check_field("email", "Wang@Renyi.COM") == "wang@renyi.com"
    assert check_field("title", "  采购经理 ") == "采购经理"
    assert check_field("website", "-") is None
    for field, bad in (("mobile", "call me"), ("mobile", "12345"), ("email", "wang at renyi"), ("website", "人易"),
                       ("name", "x" * 101)):
        with pytest.raises(DomainError):
            check_field(field, bad)


def test_the_engine_is_made_once_per_process():
    assert ocr.engine() is ocr.engine()


# ------------------------------------------------------------------------------------------- through the bot

REP, OTHER = 6100, 6200
rep = person(REP, language="en")


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        lee = await add_user(session, name="Lee", telegram_id=REP, language="en")
        await add_user(session, name="Wang", telegram_id=OTHER, language="en")
        known = await create_customer(session, name="深圳市创维化工有限公司", owner_id=lee.id, phone="0755-8628 6473")
        await session.commit()
    await app.sync()
    app.known, app.rep_id = known.id, lee.id
    return app


def buttons(message) -> dict[str, str]:
    return {b.text: b.callback_data for row in message.reply_markup.inline_keyboard for b in row}


async def count(app, model) -> int:
    async with app.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_a_rep_photographs_a_new_customers_card_fixes_two_fields_and_saves_it(app):
    app.recorder.files["card-1"] = draw(ZH_LEFT, seed=3)
    reading, summary = (await app.send(photo_update(rep, file_id="card-1"))).sent()
    assert "Reading the card" in reading.text
    assert "王芳" in summary.text and "广州市人易软件技术有限公司" in summary.text and "138 0013 8000" in summary.text
    assert "020 8888 1234 ext. 806" in summary.text and "wangfang@renyi.com.cn" in summary.text
    [fields] = (await app.send(button_update(rep, buttons(summary)["✏️ Fix a field"], on=summary))).sent()
    [ask] = (await app.send(button_update(rep, buttons(fields)["📱 Mobile"], on=fields))).sent()
    assert "138 0013 8000" in ask.text
    [refused] = (await app.send(text_update(rep, "call me later"))).sent()
    assert "not a phone number" in refused.text and "Try again" in refused.text  # … and the card is unchanged
    [shown] = (await app.send(text_update(rep, "+86 139-0000-1111"))).sent()
    assert "139 0000 1111" in shown.text and "138 0013 8000" not in shown.text
    [fields] = (await app.send(button_update(rep, buttons(shown)["✏️ Fix a field"], on=shown))).sent()
    await app.send(button_update(rep, buttons(fields)["💼 Title"], on=fields))
    [fixed] = (await app.send(text_update(rep, "华南区采购经理"))).sent()
    assert "华南区采购经理" in fixed.text and "139 0000 1111" in fixed.text
    assert await count(app, ContactPerson) == 0  # nothing is saved before ✅
    [stages] = (await app.send(button_update(rep, buttons(fixed)["✅ Save"], on=fixed))).sent()
    assert "New customer “广州市人易软件技术有限公司”" in stages.text
    tap = button_update(rep, buttons(stages)["interested"], on=stages)
    saved, card = (await app.send(tap)).sent()
    assert "new customer 广州市人易软件技术有限公司 with 王芳" in saved.text
    assert card.text.startswith("<b>广州市人易软件技术有限公司</b>")
    again = (await app.send(tap.model_copy(update={"update_id": tap.update_id + 10**6}))).answers()
    assert again and "no longer open" in again[0].text  # a second tap saves nothing more
    async with app.sessions() as session:
        [customer] = (await session.execute(select(Customer).where(Customer.name == "广州市人易软件技术有限公司"))).scalars()
        [contact] = (await session.execute(select(ContactPerson))).scalars()
        logged = await session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "create"))
    assert (customer.owner_id, customer.stage, customer.phone, customer.fax) == (
        app.rep_id, Stage.interested, "020 8888 1234 ext. 806", "020 8888 1299")
    assert (customer.website, customer.address) == ("www.renyi.com.cn", "广州市天河区体育西路103号维多利广场18楼")
    assert (contact.customer_id, contact.name, contact.title, contact.mobile, contact.email) == (
        customer.id, "王芳", "华南区采购经理", "139 0000 1111", "wangfang@renyi.com.cn")
    assert logged >= 2  # the customer and the contact, audited
    [found] = (await app.send(text_update(rep, "王芳"))).sent()  # the lookup knows the new contact at once
    assert "广州市人易软件技术有限公司" in found.text


async def test_a_card_sent_as_a_file_of_a_known_company_adds_the_person_to_that_customer(app):
    spec = CardSpec(name="Kevin Martin", company="Shenzhen Chuangwei Chemical Co., Ltd.", title="Sales Manager",
                    mobile="156 5560 8283", office="0755-8628 6473", email="kevin@chuangwei.cn", language="en",
                    layout="two_column")
    app.recorder.files["card-2"] = draw(spec, seed=4)
    _reading, summary = (await app.send(document_update(rep, "card-2", mime_type="image/jpeg"))).sent()
    assert "Kevin Martin" in summary.text
    [offer] = (await app.send(button_update(rep, buttons(summary)["✅ Save"], on=summary))).sent()
    assert "Add Kevin Martin to one of these customers?" in offer.text  # the same office phone
    assert "➕ New customer “Shenzhen Chuangwei Chemical Co”" in buttons(offer)
    saved, card = (await app.send(button_update(rep, buttons(offer)["📇 深圳市创维化工有限公司"], on=offer))).sent()
    assert "Kevin Martin is a contact now" in saved.text and "深圳市创维化工有限公司" in card.text
    assert await count(app, Customer) == 1
    async with app.sessions() as session:
        [contact] = (await session.execute(select(ContactPerson))).scalars()
    assert (contact.customer_id, contact.mobile, contact.office_phone, contact.title) == (
        app.known, "156 5560 8283", "0755 8628 6473", "Sales Manager")


async def test_refusals_change_nothing_and_say_what_to_do(app):
    # Too big to download: refused from what Telegram says of its size, before any download.
    [big] = (await app.send(photo_update(rep, file_id="huge", file_size=30 * 1024 * 1024))).sent()
    assert "too large" in big.text
    # A photo of no card.
    blank = io.BytesIO()
    Image.new("RGB", (900, 600), (200, 200, 210)).save(blank, "JPEG")
    app.recorder.files["blank"] = blank.getvalue()
    _reading, none = (await app.send(photo_update(rep, file_id="blank"))).sent()
    assert "no text in that photo" in none.text
    # A "JPEG" that is not one; a photo Telegram no longer has.
    app.recorder.files["broken"] = b"not really a jpeg"
    _reading, broken = (await app.send(document_update(rep, "broken"))).sent()
    assert "not a picture" in broken.text
    _reading, gone = (await app.send(photo_update(rep, file_id="expired"))).sent()
    assert "could not download" in gone.text
    # Not an image at all: a PDF is not taken for a card.
    [pdf] = (await app.send(document_update(rep, "pdf", mime_type="application/pdf", file_name="a.pdf"))).sent()
    assert "Reading the card" not in pdf.text
    assert await count(app, ContactPerson) == 0 and await count(app, Customer) == 1


async def test_a_reading_that_takes_too_long_is_given_up_with_what_to_do(app, monkeypatch):
    import handlers.namecard as namecard

    monkeypatch.setattr(namecard, "read_card_work", napping)
    monkeypatch.setattr(namecard, "READ_SECONDS", 0.2)
    app.recorder.files["slow"] = b"whatever"
    _reading, late = (await app.send(photo_update(rep, file_id="slow"))).sent()
    assert "took too long" in late.text
    [nothing] = (await app.send(text_update(rep, "/cancel"))).sent()
    assert "nothing to cancel" in nothing.text.lower()  # no half-open card is left behind
    await asyncio.sleep(1)  # the worker finishes the nap before the next test uses it


async def test_a_lookup_is_answered_while_a_card_is_being_read(app, monkeypatch, tmp_path):
    import handlers.namecard as namecard

    pid_file = tmp_path / "read-by"
    monkeypatch.setattr(namecard, "read_card_work", partial(slow_read, str(pid_file)))
    app.recorder.files["card-3"] = draw(EN_LOGO, seed=5)
    reading = asyncio.create_task(app.dispatcher.feed_update(app.bot, photo_update(rep, file_id="card-3")))
    while not pid_file.exists():  # under way (the worker process starts at its first use)
        await asyncio.sleep(0.05)
    other = person(OTHER, language="en")
    began = time.perf_counter()
    await app.dispatcher.feed_update(app.bot, text_update(other, "创维"))
    waited = time.perf_counter() - began
    assert not reading.done(), "the card should still be being read"
    assert waited < SLOW / 3, f"the lookup waited {waited:.2f} s for the card"
    await reading
    assert int(pid_file.read_text()) != os.getpid()  # read in the worker process
    texts = [m.text for m in app.recorder.sent()]
    assert any("Grace Lim" in t for t in texts)


def test_card_fields_survive_the_conversation_state():
    card = CardFields(name="王芳", mobile="138 0013 8000")
    assert CardFields.from_dict(card.as_dict()) == card


async def test_one_input_saves_one_customer_and_one_contact_however_often_it_arrives(engine):
    from bot.db import make_sessionmaker
    from services.access import viewer_for
    from services.namecards import save_as_new_customer

    sessions = make_sessionmaker(engine)
    card = CardFields(company="恒达贸易有限公司", name="李明", title="经理", mobile="138 0013 8000",
                      office="020 8888 1234", email="li@hengda.cn")
    async with sessions() as session, session.begin():
        lee = await add_user(session, name="Lee", telegram_id=REP, language="en")
        viewer = await viewer_for(session, lee)
        first = await save_as_new_customer(session, viewer, card, stage="interested", user_id=lee.id,
                                           origin_key="tg:1:2:abc")
        again = await save_as_new_customer(session, viewer, card, stage="interested", user_id=lee.id,
                                           origin_key="tg:1:2:abc")
        assert (again[0].id, again[1].id) == (first[0].id, first[1].id)
        with pytest.raises(DomainError, match="no person's name"):
            await save_as_new_customer(session, viewer, CardFields(company="远东有限公司"), stage="interested",
                                       user_id=lee.id)
    assert await count_rows(sessions, Customer) == 1 and await count_rows(sessions, ContactPerson) == 1


async def count_rows(sessions, model) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_a_card_is_read_at_once_while_a_managers_report_keeps_the_other_worker_busy(app, tmp_path, monkeypatch):
    """Cards have a worker process of their own (bot.background's "cards" lane): a card waiting behind a
    twenty-second workbook would hold its update open, and long polling with it."""
    import handlers.namecard as namecard
    from bot.background import for_sessions

    pid_file = tmp_path / "read-by"
    monkeypatch.setattr(namecard, "read_card_work", partial(slow_read, str(pid_file)))
    background = for_sessions(app.sessions)
    # Both workers up first: what is timed is the card waiting, not a process starting on a loaded machine
    # (13-18 s under four test workers, against the 9 s the test allows).
    await asyncio.gather(background.run(partial(napping_for, 0)), background.run(partial(napping_for, 0), lane="cards"))
    release = tmp_path / "release"
    report = asyncio.create_task(background.run(partial(holding, 16 * SLOW, str(release))))  # a workbook under way
    try:
        await asyncio.sleep(1.0)
        app.recorder.files["card-4"] = draw(EN_LOGO, seed=5)
        began = time.perf_counter()
        await app.send(photo_update(rep, file_id="card-4"))
        took = time.perf_counter() - began
        assert not report.done(), "the long work should still be running"
        assert any("Grace Lim" in m.text for m in app.recorder.sent())
        # Behind the other work it would have taken 15 * SLOW and more; the reading itself took 4-10 s on a
        # machine running the suite on three workers over two cores.
        assert took < 12 * SLOW, f"the card waited {took:.1f} s behind the other work"
    finally:
        release.touch()  # (the long work may end now)
    assert int(pid_file.read_text()) != await report  # read in another process than the long work


# ------------------------------------------------------------------- what a card matches, cancel, stuck readings


def card_file(app, file_id: str, **card: str) -> str:
    app.recorder.files[file_id] = json.dumps(card).encode()
    return file_id


@pytest.fixture
def read_as_said(monkeypatch):
    import handlers.namecard as namecard

    monkeypatch.setattr(namecard, "read_card_work", as_read)


async def test_a_card_without_a_company_can_be_cancelled_and_then_nothing_is_saved(app, read_as_said):
    _reading, summary = (await app.send(photo_update(rep, file_id=card_file(app, "c1", name="赵磊")))).sent()
    [ask] = (await app.send(button_update(rep, buttons(summary)["✅ Save"], on=summary))).sent()
    assert "no company yet" in ask.text
    assert set(buttons(ask)) == {"✏️ Fix a field", "✖️ Cancel"}  # the rep can give up here too
    [cancelled] = (await app.send(button_update(rep, buttons(ask)["✖️ Cancel"], on=ask))).sent()
    assert "Nothing was saved" in cancelled.text
    late = (await app.send(button_update(rep, buttons(summary)["✅ Save"], on=summary))).answers()
    assert late and "no longer open" in late[0].text
    assert await count(app, ContactPerson) == 0 and await count(app, Customer) == 1


async def test_a_card_matches_the_same_name_written_shorter_and_a_contacts_mobile(app, read_as_said):
    from services.access import viewer_for
    from services.contacts import add_contact

    async with app.sessions() as session:
        lee = await session.get(User, app.rep_id)
        far = await create_customer(session, name="远东贸易有限公司", owner_id=lee.id)
        await add_contact(session, await viewer_for(session, lee), far.id, name="陈静", mobile="177 2233 4455")
        await session.commit()
    await app.sync()
    # The known 深圳市创维化工有限公司, written without 市 and with no phone on the card.
    _reading, summary = (await app.send(photo_update(rep, file_id=card_file(
        app, "c2", name="刘洋", company="深圳创维化工有限公司")))).sent()
    [offer] = (await app.send(button_update(rep, buttons(summary)["✅ Save"], on=summary))).sent()
    assert "Add 刘洋 to one of these customers?" in offer.text
    assert "📇 深圳市创维化工有限公司" in buttons(offer) and "➕ New customer “深圳创维化工有限公司”" in buttons(offer)
    await app.send(button_update(rep, buttons(offer)["✖️ Cancel"], on=offer))
    # A company nobody has, but the mobile of a contact at 远东贸易: the person moved, or it is a branch.
    _reading, summary = (await app.send(photo_update(rep, file_id=card_file(
        app, "c3", name="陈静", company="成都远东医疗器械有限公司", mobile="+86 177 2233 4455")))).sent()
    [offer] = (await app.send(button_update(rep, buttons(summary)["✅ Save"], on=summary))).sent()
    assert "📇 远东贸易有限公司" in buttons(offer)
    [duplicate] = (await app.send(button_update(rep, buttons(offer)["📇 远东贸易有限公司"], on=offer))).sent()
    assert "Already listed: 陈静" in duplicate.text  # the same person is not added twice without asking
    assert await count(app, ContactPerson) == 1


async def test_a_colleagues_customer_is_counted_not_shown_and_the_rep_may_still_create_a_new_one(app, read_as_said):
    async with app.sessions() as session:
        wang = (await session.execute(select(User).where(User.telegram_id == OTHER))).scalar_one()
        await create_customer(session, name="杭州恒达机电设备集团有限公司", owner_id=wang.id, phone="0571-8765 4321")
        await session.commit()
    await app.sync()
    _reading, summary = (await app.send(photo_update(rep, file_id=card_file(
        app, "c4", name="欧阳明", company="杭州恒达机电设备集团有限公司", office="(0571) 8765 4321")))).sent()
    [offer] = (await app.send(button_update(rep, buttons(summary)["✅ Save"], on=summary))).sent()
    assert "1 similar customer(s) belong to colleagues" in offer.text
    assert not any(text.startswith("📇") for text in buttons(offer))  # nothing of the colleague's is shown
    [stages] = (await app.send(button_update(
        rep, buttons(offer)["➕ New customer “杭州恒达机电设备集团有限公司”"], on=offer))).sent()
    assert "Where do things stand" in stages.text


async def test_a_chinese_speaking_rep_reads_and_cancels_a_card_in_chinese(app, read_as_said):
    zh = person(6300, language="zh-hans")
    async with app.sessions() as session:
        await add_user(session, name="周", telegram_id=6300, language="zh_Hans")
        await session.commit()
    reading, summary = (await app.send(photo_update(zh, file_id=card_file(
        app, "c5", name="王芳", company="广州市人易软件技术有限公司")))).sent()
    assert "名片识别结果" in summary.text and "公司" in summary.text
    [stages] = (await app.send(button_update(zh, buttons(summary)["✅ 保存"], on=summary))).sent()
    assert "新客户" in stages.text  # no customer like it: the stage question, where the rep may still cancel
    [cancelled] = (await app.send(button_update(zh, buttons(stages)["✖️ 取消"], on=stages))).sent()
    assert cancelled.text == "已取消，没有保存任何内容。"


async def test_a_stuck_reading_does_not_keep_the_next_card_waiting(app, monkeypatch):
    import handlers.namecard as namecard
    from bot.background import worker_pid

    monkeypatch.setattr(namecard, "read_card_work", stuck)
    monkeypatch.setattr(namecard, "READ_SECONDS", 8)  # the worker's first start included
    app.recorder.files["stuck"] = b"stuck"
    _reading, late = (await app.send(photo_update(rep, file_id="stuck"))).sent()
    assert "took too long" in late.text
    monkeypatch.setattr(namecard, "READ_SECONDS", 50)  # a new worker's start under a loaded machine included
    began = time.perf_counter()
    _reading, summary = (await app.send(photo_update(rep, file_id=card_file(app, "c6", name="陈静")))).sent()
    assert "陈静" in summary.text, summary.text  # read by a new worker, not after the stuck one's minute
    assert time.perf_counter() - began < 40 and worker_pid("cards") is not None  # not behind the 60 s


async def test_cards_queued_behind_a_stuck_one_are_read_in_a_new_worker_and_none_fails(engine):
    """The stuck reading's worker is ended, and only that one: the cards that waited behind it are tried
    again in a new worker with their time counted afresh — they ran past nothing themselves (a review found
    the second card ending the new worker, and the third failing)."""
    from bot.background import close_all, for_sessions, worker_pid
    from bot.db import make_sessionmaker

    background = for_sessions(make_sessionmaker(engine))
    first = await background.run(partial(napping_for, 0), lane="cards", timeout=60)  # the worker is up
    stuck = asyncio.create_task(background.run(partial(napping_for, 60), lane="cards", timeout=3))
    await asyncio.sleep(0.3)
    # Each has 30 s: plenty for a new worker's start and its nap, though it waited behind the stuck one.
    behind = [asyncio.create_task(background.run(partial(napping_for, 1.5), lane="cards", timeout=30))
              for _ in range(2)]
    with pytest.raises(TimeoutError):
        await stuck
    pids = await asyncio.gather(*behind)
    assert first not in pids and len(set(pids)) == 1 and pids[0] == worker_pid("cards")
    await close_all()
