"""Names of the domain's values (stages, channels, feedback kinds) in the user's language."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _

from models import InteractionKind, Role, Stage


def role_label(role: str) -> str:
    return {Role.rep: _("rep"), Role.manager: _("manager"), Role.admin: _("admin")}.get(role, role)


def role_from_words(text: str) -> str:
    """A role as a person types it: the code (rep, manager, admin) or its name in their language (经理)."""
    text = text.strip().lower()
    return next((role for role in Role if text in (role.value, role_label(role).lower())), text)


def stage_label(stage: str) -> str:
    return {
        Stage.interested: _("interested"),
        Stage.hesitating: _("hesitating"),
        Stage.not_now: _("not buying now"),
        Stage.definitely_not: _("definitely not buying"),
        Stage.quoted_no_response: _("quoted, no response"),
        Stage.customer: _("customer"),
    }.get(stage, stage)


def interaction_label(kind: str) -> str:
    return {
        InteractionKind.visit: _("visit"), InteractionKind.call: _("call"), InteractionKind.email: _("email"),
        InteractionKind.chat: _("chat"), InteractionKind.message: _("message"), InteractionKind.letter: _("letter"),
        InteractionKind.gift: _("gift"), InteractionKind.event: _("event"),
    }.get(kind, kind)


def feedback_kind_names(gettext=_) -> dict[str, str]:
    from bot.report_words import feedback_kind_names as names  # one list, also for the workbook

    return names(gettext)


def feedback_label(kind: str) -> str:
    return feedback_kind_names().get(kind, kind)


def rfm_segment_label(segment: str) -> str:
    from bot.report_view import segment_names

    return segment_names(_).get(segment, segment)


def map_app_name(navigator: str) -> str:
    """The map app /route's links open (services.route.NAVIGATORS), by its name in the user's language."""
    return {"amap": _("Amap"), "apple": _("Apple Maps"), "google": _("Google Maps")}.get(navigator, navigator)
