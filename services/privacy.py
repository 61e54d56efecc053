"""Personal data shown outside a rep's own chat with the bot.

Rule "phone numbers are masked in group chats": a card posted into a group or channel (inline mode, team
digests) shows a number as 138****5678 — enough to recognise it, not enough to call it. Where the chat
type is not known, it is treated as a group.
"""

from __future__ import annotations

SHARED_CHATS = {"group", "supergroup", "channel", None}


def is_shared(chat_type: str | None) -> bool:
    return chat_type in SHARED_CHATS


def mask_phone(phone: str | None) -> str | None:
    """Digits but the first 3 and the last 4 become *, the rest of the writing stays (+86 138-****-5678).
    Short numbers keep only their last 2 digits."""
    if not phone:
        return phone
    positions = [i for i, ch in enumerate(phone) if ch.isdigit()]
    keep = set(positions[:3] + positions[-4:]) if len(positions) >= 10 else set(positions[-2:])
    return "".join("*" if i in positions and i not in keep else ch for i, ch in enumerate(phone))
