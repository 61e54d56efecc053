"""Plan my day (/route): today's must-visit customers in the shortest order that fits the working day,
with navigation links and a map; customers without a location are listed apart."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from aiogram.methods import EditMessageText, SendPhoto
from aiogram.types import ReplyKeyboardMarkup, ReplyKeyboardRemove
from sqlalchemy import select, update

from bot.callbacks import RouteCallback, SettingsCallback
from bot.notify import render_agenda
from models import AuditLog, Customer, Reminder, User
from services.customers import create_customer
from services.nearby import distance_km
from services.reminders import agenda as agenda_items
from services.route import (
    Stop,
    navigation_url,
    navigator_for,
    nearest_neighbour,
    path_km,
    plan_day,
    route_map,
    todays_stops,
    working_window,
)
from services.users import add_user
from tests.botkit import button_update, location_update, make_app, person, sticker_update, text_update
from tests.in_worker import planned_noting_pid

DAY = date(2026, 12, 7)
BEGIN, END = datetime(2026, 12, 7, 9, 0, tzinfo=UTC), datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
KM = 1 / 111.195  # one kilometre of longitude on the equator, in degrees


def on_equator(*kms: float) -> list[Stop]:
    return [Stop(n, f"c{n}", 0.0, x * KM) for n, x in enumerate(kms)]


def order(plan) -> list[str]:
    return [v.stop.name for v in plan.visits]


def test_stops_on_a_road_go_to_the_near_side_first_then_straight_on_where_nearest_neighbour_doubles_back():
    stops = on_equator(1, -1.5, 3, 5)  # standing at 0
    plan = plan_day(stops, (0.0, 0.0), BEGIN, END)
    assert order(plan) == ["c1", "c0", "c2", "c3"] and not plan.dropped
    assert plan.km == pytest.approx((1.5 + 6.5) * 1.3, abs=0.05)  # the optimum: 8 km of straight line
    greedy = nearest_neighbour((0.0, 0.0), [(s.latitude, s.longitude) for s in stops])
    assert [stops[i].name for i in greedy] == ["c0", "c2", "c3", "c1"]  # 1 + 2 + 2 + 6.5 = 11.5 km
    assert path_km((0.0, 0.0), [(stops[i].latitude, stops[i].longitude) for i in greedy]) > plan.km


def test_the_corners_of_a_square_are_walked_round_not_crossed():
    side = 2 * KM
    stops = [Stop(1, "far", side, side), Stop(2, "north", side, 0.0), Stop(3, "east", 0.0, side)]
    plan = plan_day(stops, (0.0, 0.0), BEGIN, END)
    assert order(plan) in (["north", "far", "east"], ["east", "far", "north"])
    assert plan.km == pytest.approx(3 * 2 * 1.3, abs=0.05)
    greedy = nearest_neighbour((0.0, 0.0), [(s.latitude, s.longitude) for s in stops])
    assert plan.km <= path_km((0.0, 0.0), [(stops[i].latitude, stops[i].longitude) for i in greedy]) + 1e-6


def test_eta_counts_the_drive_at_the_average_speed_and_each_visit_length():
    plan = plan_day(on_equator(15, 30), (0.0, 0.0), BEGIN, END, visit_minutes=30, speed_kmh=30, road_factor=1.0)
    first, second = plan.visits
    assert abs((first.arrive - BEGIN).total_seconds() - 30 * 60) < 60  # 15 km at 30 km/h
    assert first.leave - first.arrive == timedelta(minutes=30)
    assert abs((second.arrive - first.leave).total_seconds() - 30 * 60) < 60


def test_without_a_location_the_day_starts_at_the_first_must_visit_customer():
    stops = on_equator(10, 0, 11, 9)  # most important first: c0 at 10 km
    plan = plan_day(stops, None, BEGIN, END)
    assert order(plan)[0] == "c0" and plan.visits[0].arrive == BEGIN and plan.visits[0].km == 0
    assert order(plan) in (["c0", "c3", "c1", "c2"], ["c0", "c2", "c3", "c1"])
    # 10→9→0 then 11 (9+11=20 km) loses to 10→11→9→0 (1+2+9=12 km).
    assert order(plan) == ["c0", "c2", "c3", "c1"]


def test_visits_that_do_not_fit_the_working_hours_are_left_out_the_most_important_kept():
    # Two customers 15 km away on either side: one visit (30 min drive + 30 min visit) fits in an hour.
    stops = [Stop(1, "small", 0.0, -15 * KM, importance=1), Stop(2, "big account", 0.0, 15 * KM, importance=5)]
    plan = plan_day(stops, (0.0, 0.0), BEGIN, BEGIN + timedelta(minutes=65), road_factor=1.0)
    assert order(plan) == ["big account"] and [s.name for s in plan.dropped] == ["small"]
    assert plan.visits[-1].leave <= BEGIN + timedelta(minutes=65)


def test_a_customer_too_far_for_the_day_is_dropped_and_the_rest_still_planned():
    stops = on_equator(2, 400, 3)  # 400 km at 30 km/h: 17 hours
    plan = plan_day(stops, (0.0, 0.0), BEGIN, END)
    assert order(plan) == ["c0", "c2"] and [s.name for s in plan.dropped] == ["c1"]


def test_after_the_end_of_work_nothing_fits():
    plan = plan_day(on_equator(1, 2), (0.0, 0.0), END, END)
    assert plan.visits == [] and len(plan.dropped) == 2


def test_the_rest_of_the_working_day_is_planned_in_the_reps_time_zone():
    class Rep:
        timezone, work_start, work_end = "Asia/Shanghai", time(9), time(18)

    early = working_window(Rep, datetime(2026, 12, 7, 0, 30, tzinfo=UTC))  # 08:30 in Shanghai
    assert (early[0].hour, early[0].minute, early[1].hour) == (9, 0, 18)
    later = working_window(Rep, datetime(2026, 12, 7, 5, 15, tzinfo=UTC))
    assert (later[0].hour, later[0].minute) == (13, 15)
    over = working_window(Rep, datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
    assert over[0] == over[1]


def test_navigation_links_open_the_customer_in_each_map_app():
    stop = Stop(1, "人易软件", 23.1291, 113.2644)
    amap = urlsplit(navigation_url(stop, "amap"))
    assert (amap.netloc, amap.path) == ("uri.amap.com", "/marker")
    assert parse_qs(amap.query) == {"position": ["113.264400,23.129100"], "name": ["人易软件"],
                                    "coordinate": ["wgs84"], "callnative": ["1"]}
    assert navigation_url(stop, "apple").startswith("https://maps.apple.com/?daddr=23.129100,113.264400")
    assert navigation_url(stop, "google") == \
        "https://www.google.com/maps/dir/?api=1&destination=23.129100,113.264400"
    assert navigator_for("zh_Hant") == "amap" and navigator_for("en") == "google"


def test_the_map_is_a_png():
    plan = plan_day(on_equator(1, 2, 3), (0.0, 0.0), BEGIN, END)
    assert route_map(plan, "今天的路线", start_label="你在这里").startswith(b"\x89PNG")


def test_names_that_look_like_mathematics_are_drawn_as_written():
    stops = [Stop(i, name, 0.0, km / 111.32) for i, name in
             enumerate(["Cash $$ Store", "Cost$ave 50%$ off", "^_^ {x}"], start=1) for km in [i]]
    plan = plan_day(stops, (0.0, 0.0), BEGIN, END)
    assert len(plan.visits) == 3  # matplotlib took text between $ for TeX and failed: /route failed with it
    assert route_map(plan, "Today", dropped_label="left out").startswith(b"\x89PNG")


# --------------------------------------------------------------------------- with the database

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # before work: the plan starts at 09:00 (UTC reps)
REP, IDLE = 7100, 7101
HERE = (23.1291, 113.2644)


def _reminder(key: str, user, customer, due_on: date, kind: str = "contact_due") -> Reminder:
    """A weekly contact reminder as services.reminders writes it: due `due_on`, last contact a cycle before."""
    since = due_on - timedelta(days=7)
    return Reminder(key=key, user_id=user.id, customer_id=customer.id, kind=kind, due_on=due_on,
                    detail={"since": since.isoformat(), "cycle": 7, "days": 7})


async def _due(session, user, customer, *, days_late: int, kind: str = "contact_due") -> None:
    session.add(_reminder(f"test:{user.id}:{customer.id}:{kind}", user, customer, DAY - timedelta(days=days_late),
                          kind))


async def _world(session, language: str = "en"):
    rep = await add_user(session, name="Lee", telegram_id=REP, language=language, timezone="UTC")
    await add_user(session, name="Idle", telegram_id=IDLE, language="en", timezone="UTC")
    # On a line east of HERE: 1 km, 2 km, 3 km; the most important one (most overdue) is the farthest.
    far = await create_customer(session, name="Far Corp", owner_id=rep.id, latitude=HERE[0],
                                longitude=HERE[1] + 0.0294)
    mid = await create_customer(session, name="Mid Ltd", owner_id=rep.id, latitude=HERE[0],
                                longitude=HERE[1] + 0.0196)
    near = await create_customer(session, name="Near Co", owner_id=rep.id, latitude=HERE[0],
                                 longitude=HERE[1] + 0.0098)
    nowhere = await create_customer(session, name="No Address Inc", owner_id=rep.id)
    await _due(session, rep, far, days_late=9)
    await _due(session, rep, mid, days_late=3)
    await _due(session, rep, near, days_late=1)
    await _due(session, rep, near, days_late=0, kind="contact_overdue")  # one stop per customer
    await _due(session, rep, nowhere, days_late=5)
    await session.commit()
    return rep


async def test_todays_stops_are_the_reps_due_customers_most_important_first_without_location_apart(session):
    rep = await _world(session)
    today = await todays_stops(session, rep, NOW)
    assert [s.name for s in today.stops] == ["Far Corp", "Mid Ltd", "Near Co"]
    assert [name for _id, name in today.unplaced] == ["No Address Inc"]
    assert 0.9 < distance_km(*HERE, today.stops[2].latitude, today.stops[2].longitude) < 1.1


@pytest.fixture
async def app(engine, monkeypatch):
    monkeypatch.setattr("handlers.route.utcnow", lambda: NOW)
    app = await make_app(engine)
    async with app.sessions() as session:
        await _world(session)
    return app


rep = person(REP, language="en")


async def test_route_asks_where_to_start_then_sends_a_map_and_the_numbered_route_with_links(app):
    [ask] = (await app.send(text_update(rep, "/route"))).sent()
    assert isinstance(ask.reply_markup, ReplyKeyboardMarkup)
    assert ask.reply_markup.keyboard[0][0].request_location
    assert ask.text.startswith("4 customers to visit today")
    [hint] = (await app.send(sticker_update(rep))).sent()
    assert "Share your location" in hint.text
    recorder = await app.send(location_update(rep, *HERE))
    photos = [r for r in recorder.requests if isinstance(r, SendPhoto)]
    assert len(photos) == 1
    planning, route = recorder.sent()
    assert isinstance(planning.reply_markup, ReplyKeyboardRemove)
    lines = route.text.splitlines()
    assert lines[0].startswith("🗺 Your route for today: 3 visits, 3.9 km of driving, done by 10:")
    # Straight along the line: nearest first, though Far Corp is the most overdue.
    assert [line.split(" ", 2)[2].split(" · ")[0] for line in lines[1:4]] == ["Near Co", "Mid Ltd", "Far Corp"]
    assert lines[1].startswith("1. 09:02 Near Co · 1.3 km")
    assert "No Address Inc" in route.text and "check-in" in route.text
    buttons = [row[0] for row in route.reply_markup.inline_keyboard]
    assert [b.text for b in buttons] == ["1. Near Co", "2. Mid Ltd", "3. Far Corp"]
    assert all(b.url.startswith("https://www.google.com/maps/dir/?api=1&destination=") for b in buttons)


async def test_route_can_start_at_the_first_visit_and_chinese_reps_get_amap_links(app):
    async with app.sessions() as session:
        await session.execute(update(User).where(User.telegram_id == REP).values(language="zh_Hans"))
        await session.commit()
    zh = person(REP, language="zh-hans")
    [ask] = (await app.send(text_update(zh, "/route"))).sent()
    start_here = ask.reply_markup.keyboard[1][0].text
    recorder = await app.send(text_update(zh, start_here))
    assert [r for r in recorder.requests if isinstance(r, SendPhoto)]
    route = recorder.sent()[-1]
    buttons = [row[0] for row in route.reply_markup.inline_keyboard]
    assert [b.text for b in buttons] == ["1. Far Corp", "2. Mid Ltd", "3. Near Co"]
    assert all(b.url.startswith("https://uri.amap.com/marker?position=") for b in buttons)
    assert "09:00" in route.text.splitlines()[1]


async def test_a_rep_chooses_apple_maps_in_settings_and_routes_then_open_apple_maps_until_back_to_by_language(app):
    rep = person(REP, language="en")
    [shown] = (await app.send(text_update(rep, "/settings"))).sent()
    assert "Map app for /route: by language (Google Maps)" in shown.text
    maps = next(b for row in shown.reply_markup.inline_keyboard for b in row if b.text == "🗺 Map app")
    [choices] = (await app.send(button_update(rep, maps.callback_data, on=shown))).sent()
    apps = {b.text: b.callback_data for row in choices.reply_markup.inline_keyboard for b in row}
    assert list(apps) == ["Amap", "Apple Maps", "Google Maps", "By my language"]
    def edited(recorder) -> EditMessageText:
        [edit] = [r for r in recorder.requests if isinstance(r, EditMessageText)]
        return edit

    chosen = edited(await app.send(button_update(rep, apps["Apple Maps"], on=choices)))
    assert chosen.text == "Map app for /route: Apple Maps"

    async def route_links() -> list[str]:
        await app.send(text_update(rep, "/route"))
        route = (await app.send(location_update(rep, *HERE))).sent()[-1]
        assert route.text.startswith("🗺 Your route for today: 3 visits")
        app_line = next(line for line in route.text.splitlines() if line.startswith("The buttons open"))
        urls = [row[0].url for row in route.reply_markup.inline_keyboard]
        return [app_line, *urls]

    line, *links = await route_links()
    assert line == "The buttons open Apple Maps at each customer."
    assert len(links) == 3 and all(url.startswith("https://maps.apple.com/?daddr=") for url in links)
    async with app.sessions() as session:
        entry = await session.scalar(select(AuditLog).where(AuditLog.entity == "user").order_by(AuditLog.id.desc()))
        assert entry.changes == {"navigator": [None, "apple"]}

    # A forged choice changes nothing; "by my language" goes back to the default.
    await app.send(button_update(rep, SettingsCallback(action="map", value="waze").pack(), on=choices))
    assert all(url.startswith("https://maps.apple.com/") for url in (await route_links())[1:])
    back = edited(await app.send(button_update(rep, apps["By my language"], on=choices)))
    assert back.text == "Map app for /route: by language (Google Maps)"
    line, *links = await route_links()
    assert line == "The buttons open Google Maps at each customer."
    assert all(url.startswith("https://www.google.com/maps/") for url in links)


async def test_a_rep_with_nothing_due_is_told_so_without_being_asked_for_a_location(app):
    [reply] = (await app.send(text_update(person(IDLE, language="en"), "/route"))).sent()
    assert "Nothing to visit today" in reply.text and reply.reply_markup is None


async def test_today_and_the_morning_digest_carry_a_plan_my_route_button_that_starts_route(app):
    async with app.sessions() as session:
        lee = await session.scalar(select(User).where(User.telegram_id == REP))
        near = await session.scalar(select(Customer).where(Customer.name == "Near Co"))
        session.add(_reminder("test:today", lee, near, datetime.now(UTC).date() - timedelta(days=2)))
        await session.commit()
    [agenda] = (await app.send(text_update(rep, "/today"))).sent()
    [plan] = agenda.reply_markup.inline_keyboard[-1]
    assert plan.text == "🗺 Plan my route" and plan.callback_data == RouteCallback(action="plan").pack()
    [ask] = (await app.send(button_update(rep, plan.callback_data, on=agenda))).sent()
    assert isinstance(ask.reply_markup, ReplyKeyboardMarkup) and "to visit today" in ask.text
    # The morning digest is drawn by the same function: the same button.
    async with app.sessions() as session:
        items = await agenda_items(session, lee, NOW)
    _text, markup = render_agenda(items, len(items), lee, DAY, digest=True)
    assert markup.inline_keyboard[-1][0].callback_data == plan.callback_data


def _arrivals(route) -> list[int]:
    """Minutes after midnight of each numbered visit of a route message."""
    times = [line.split(" ")[1] for line in route.text.splitlines() if line[:1].isdigit() and ". " in line]
    return [int(t[:2]) * 60 + int(t[3:]) for t in times]


async def test_a_rep_sets_an_hour_per_visit_and_what_no_longer_fits_is_left_out_the_most_important_kept(app):
    [shown] = (await app.send(text_update(rep, "/settings"))).sent()
    assert "Visit length for /route: 30 min (the team's default)" in shown.text
    visits = next(b for row in shown.reply_markup.inline_keyboard for b in row if b.text == "⏱ Visit length")
    [choices] = (await app.send(button_update(rep, visits.callback_data, on=shown))).sent()
    minutes = {b.text: b.callback_data for row in choices.reply_markup.inline_keyboard for b in row}
    assert list(minutes) == ["15 min", "20 min", "30 min", "45 min", "60 min", "90 min",
                             "The team's default (30 min)"]
    [chosen] = [r for r in (await app.send(button_update(rep, minutes["60 min"], on=choices))).requests
                if isinstance(r, EditMessageText)]
    assert chosen.text == "Visit length for /route: 60 min"
    # A forged length changes nothing: out of range it is refused with the range, in other digits ignored.
    refused = (await app.send(button_update(rep, SettingsCallback(action="visit", value="600").pack(),
                                            on=choices))).answers()
    assert refused and "5 to 240 minutes" in refused[0].text
    await app.send(button_update(rep, SettingsCallback(action="visit", value="²").pack(), on=choices))
    await app.send(button_update(rep, SettingsCallback(action="day", value="٣").pack(), on=choices))
    async with app.sessions() as session:
        lee = await session.scalar(select(User).where(User.telegram_id == REP))
        assert lee.visit_minutes == 60

    await app.send(text_update(rep, "/route"))
    route = (await app.send(location_update(rep, *HERE))).sent()[-1]
    arrivals = _arrivals(route)
    assert len(arrivals) == 3 and all(b - a >= 60 for a, b in zip(arrivals, arrivals[1:]))  # an hour at each

    # Two hours of work left: one visit fits; the most overdue customer (Far Corp) is the one kept.
    async with app.sessions() as session:
        await session.execute(update(User).where(User.telegram_id == REP).values(work_end=time(11, 0)))
        await session.commit()
    await app.send(text_update(rep, "/route"))
    route = (await app.send(location_update(rep, *HERE))).sent()[-1]
    assert [row[0].text for row in route.reply_markup.inline_keyboard] == ["1. Far Corp"]
    assert "⏳ Left out, they do not fit before 11:00 (2): Mid Ltd, Near Co" in route.text


async def test_after_the_working_day_route_says_so_and_plans_nothing(app, monkeypatch):
    monkeypatch.setattr("handlers.route.utcnow", lambda: NOW.replace(hour=19))  # 19:00 for a UTC rep
    await app.send(text_update(rep, "/route"))
    recorder = await app.send(location_update(rep, *HERE))
    [over] = recorder.sent()
    assert over.text.startswith("Your working day is over (it ends at 18:00)") and "/settings" in over.text
    assert not [r for r in recorder.requests if isinstance(r, SendPhoto)]


async def test_the_route_is_solved_in_a_worker_process_not_beside_the_bots_loop(app, monkeypatch, tmp_path):
    """The solver's second of Python callbacks, in a thread, shared the interpreter lock with the bot's loop:
    every other user's reply was about half as fast meanwhile. It runs in a worker process of its own."""
    import os
    from functools import partial

    from bot.background import worker_pid

    pid_file = tmp_path / "planned-by"
    monkeypatch.setattr("handlers.route.plan_work", partial(planned_noting_pid, str(pid_file)))
    await app.send(text_update(rep, "/route"))
    route = (await app.send(location_update(rep, *HERE))).sent()[-1]
    assert route.text.startswith("🗺 Your route for today: 3 visits")
    assert int(pid_file.read_text()) == worker_pid("route") != os.getpid()
