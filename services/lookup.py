"""Customer lookup: find the right customer from whatever a rep types, in milliseconds.

What is searched, per customer: the full name, short name and aliases, the contact persons' names, and
phone numbers (the customer's and the contacts'). A query may be hanzi (exact, partial, a wrong or
missing character, a homophone the input method picked), pinyin without tones (with or without spaces,
unfinished at the end), initials, Traditional characters, Latin names (any case or accents, typos, any
word order), or digits (a whole phone number in any format, or its last 4+ digits).

How (rules):
1. Names are folded and stripped of boilerplate (services.textnorm) so 广州市 / 有限公司 / Co., Ltd. never
   drown the distinctive part.
2. Candidates come from an inverted index of grams — hanzi characters and bigrams, pinyin syllable bigrams (every common
   reading of polyphonic characters, so homophones meet), initials bigrams, Latin words and trigrams,
   the last four digits of phones — weighted by rarity (IDF); the best k by that weight are scored (equal
   weights: the shorter document first). Single-word pinyin that finds nothing sure is looked up again
   with its sound trigrams (a typo may spell other pinyin: ailong for kailong).
3. The viewer's visibility (services.access) is applied to *all* candidates before the top-k cut, so a
   rep never loses their own customer behind others they cannot see.
4. The best candidates are re-ranked by an exact score per field, which also says why they matched:
   name, alias, pinyin, contact or phone.
5. The index follows changes at once (`refresh` after a commit) and is rebuilt from the database on start.
6. While that build runs (seconds at 100k customers, a minute or more at 1M), the bot already answers: a
   *loading* index (`start_index`, read in well under a second at 100k) finds a customer by its exact
   name, short name or alias (after services.queryparts.clean) or its whole phone number, and says it is
   still loading; `finish_loading` then swaps the whole index in and re-reads whatever changed meanwhile.
7. A process that built the whole index saves it (`save_index`, in DATA_DIR/lookup/); the next start on the
   same database and code opens it (`open_saved`, a second at 1M customers) and reads again only the
   customers whose change stamp (updated_at: a contact's change moves its customer's too) differs from the
   saved one, or that were added or archived since. More changes than a tenth of the customers, other code,
   another database or a damaged file: built as in 5-6.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import threading
import time
import zlib
from array import array
from collections import deque
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz import fuzz
from sqlalchemy import BigInteger, Integer, bindparam, cast, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from models import Customer
from services.access import Viewer
from services.parsing import phone_digits
from services.queryparts import (
    LEGAL,
    TRADE_ENGLISH,
    Parts,
    area_split,
    clean,
    clean_folded,
    facts,
    is_pinyin,
    split,
)
from services.sql import collector_paused, columns
from services.textnorm import (
    PRIMARY,
    SPELLED,
    SYLLABLES,
    char_readings,
    core_name,
    fold,
    han_only,
    reading_variants,
    segment_pinyin,
)

log = logging.getLogger(__name__)

GROUP, FIELD, PHONE = "\x1e", "\x1f", "\x1d"
_WORDS = re.compile(r"[a-z0-9]+")
_PHONEISH = re.compile(r"^[\d\s+\-().#*/]+$")
WEIGHT = {"H": 1.0, "h": 0.35, "P": 0.9, "I": 0.5, "w": 1.0, "t": 0.45, "d": 1.0, "x": 0.8, "T": 0.45, "C": 0.8,
          "a": 0.6}
QUALIFIERS = re.compile(r"国际|控股|集团|实业|股份")  # words a rep leaves out of a firm's name
POSTING_BUDGET = 60_000  # postings read per query at most (rarest grams first)


@dataclass(frozen=True)
class Match:
    customer_id: int
    name: str
    score: float
    why: str  # name, alias, pinyin, contact, phone
    matched: str  # the text that matched (a short name, a contact's name, a phone number …)
    exact: bool = False  # the query is this customer's name, short name or alias (after queryparts.clean)


@dataclass
class CustomerText:
    """What the index knows of one customer."""

    customer_id: int
    owner_id: int | None
    names: list[str]  # full name first, then short name and aliases
    contacts: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)  # every number's digits: the customer's, then contacts'
    contact_phones: list[list[str]] = field(default_factory=list)  # each contact's numbers, as `contacts`

    def prepared(self) -> tuple[str, set[str]]:
        """(packed text, grams): display name, folded core names (the full name's first), folded contact
        names, phone digits, the cleaned full names (services.queryparts.clean) and each contact's numbers
        — what re-ranking reads — and what the inverted index files it under."""
        folded = [fold(name) for name in self.names]
        full = core_name(folded[0])
        cores = [full] + [c for c in name_cores(folded[1:], folded=True) if c != full]
        people: dict[str, list[str]] = {}
        for n, person in enumerate(self.contacts):
            numbers = people.setdefault(fold(person), [])
            if n < len(self.contact_phones):
                numbers.extend(self.contact_phones[n])
        names = list(dict.fromkeys(clean_folded(f) for f in folded))
        packed = GROUP.join([self.names[0], FIELD.join(cores), FIELD.join(people), FIELD.join(self.phones),
                             FIELD.join(names), FIELD.join(PHONE.join(numbers) for numbers in people.values())])
        return packed, document_grams(sorted(cores, key=len, reverse=True), list(people), self.phones,
                                      facts(FIELD.join(names))[0])


# --------------------------------------------------------------------------- grams


def _han_grams(core: str, grams: set[str], *, person: bool, han: str | None = None) -> None:
    han = han_only(core) if han is None else han
    if not han:
        return
    grams.update("h" + ch for ch in han)
    if not person:  # a firm's name: every two neighbouring characters, as often as they repeat (cached)
        for i in range(1, len(han)):
            grams.update(_pair_grams(han[i - 1:i + 1]))
        return
    grams.update("H" + han[i - 1:i + 1] for i in range(1, len(han)))
    per_char = [r[:2] for r in char_readings(han, person=person)]
    add = grams.add
    for i in range(1, len(per_char)):
        for a in per_char[i - 1]:
            for b in per_char[i]:
                add(f"P{a} {b}")
                add(f"I{a[:1]}{b[:1]}")


@lru_cache(maxsize=20_000)
def _pair_grams(pair: str) -> tuple[str, ...]:
    """The grams of two neighbouring hanzi of a firm's name: the pair, and its syllable and initials
    bigrams in every common reading of each."""
    first, second = (r[:2] for r in char_readings(pair))
    grams = {"H" + pair}
    for a in first:
        for b in second:
            grams.add(f"P{a} {b}")
            grams.add(f"I{a[:1]}{b[:1]}")
    return tuple(grams)


def _latin_grams(core: str, grams: set[str]) -> None:
    for word in _WORDS.findall(core):
        if word.isdigit():
            continue
        grams.add("w" + word)
        padded = f"^{word}$"
        for i in range(len(padded) - 2):
            grams.add("t" + padded[i:i + 3])


@lru_cache(maxsize=200_000)
def _person_grams(folded: str) -> frozenset[str]:
    """Grams of a contact person's name (names repeat a lot: cached). People are found by their whole
    name in hanzi or pinyin, or by their surname alone (王 → the customers whose contact is a Wang);
    other single characters and initials are left out."""
    grams: set[str] = set()
    _han_grams(folded, grams, person=True)
    _latin_grams(folded, grams)
    han = han_only(folded)
    return frozenset(g for g in grams if g[0] not in "hI" or g == "h" + han[:1])


def name_cores(names: list[str], *, folded: bool = False) -> list[str]:
    """Folded core of each name (names already folded when `folded`), without repeats, longest first."""
    return sorted(dict.fromkeys(core_name(name if folded else fold(name)) for name in names), key=len, reverse=True)


def document_grams(cores: list[str], people: list[str], phones: list[str],
                   places: tuple[str, ...] = ()) -> set[str]:
    grams: set[str] = {"C" + place for place in places}  # the cities its names say (queryparts.facts)
    done: list[str] = []
    for core in cores:  # longest first: a short name inside the full name adds no new grams
        if any(core in longer for longer in done):
            continue
        done.append(core)
        whole = han_only(core)
        _han_grams(core, grams, person=False, han=whole)
        _latin_grams(core, grams)
        han = QUALIFIERS.sub("", whole)
        if len(han) >= 2:  # the name's main pinyin as a rep says it, for pinyin typed with a typo
            # With the city first when it has one (which holds every trigram of the name alone).
            place = min(places) if places and core is cores[0] else ""
            grams |= _sound_trigrams(_spell(place + han))
    for person in people:
        grams |= _person_grams(person)
    for digits in phones:
        if len(digits) >= 4:
            grams.add("d" + digits[-4:])
        area, local = area_split(digits)
        if area and len(local) >= 4:
            grams.add("x" + local[:4])  # a switchboard typed by its first digits after the area code
            grams.add("a" + area)
    return grams


@dataclass
class Query:
    raw: str
    folded: str
    core: str
    han: str
    letters: str  # Latin letters and digits without spaces
    words: list[str]
    syllables: tuple[str, ...] | None
    digits: str
    phone: bool
    han_readings: tuple[tuple[str, ...], ...] = ()  # each hanzi's readings, each as " reading " (see han_info)


def parse_query(raw: str) -> Query:
    folded = fold(raw).strip()
    core = core_name(folded) if folded else ""
    digits = re.sub(r"\D", "", folded)
    phone = bool(_PHONEISH.match(folded)) and len(digits) >= 4
    if phone:
        digits = phone_digits(folded)
    han = han_only(core)
    words = _WORDS.findall(core)
    letters = "".join(words)
    syllables = segment_pinyin(letters) if letters.isalpha() and not han else None
    readings = tuple(tuple(f" {x} " for x in r if x) for r in char_readings(han)) if han else ()  # "": none
    return Query(raw, folded, core, han, letters, words, syllables, digits, phone, readings)


def query_grams(q: Query) -> dict[str, float]:
    grams: dict[str, float] = {}
    if q.phone:
        grams["d" + q.digits[-4:]] = WEIGHT["d"]
        return grams
    found: set[str] = set()
    if q.han:
        _han_grams(q.han, found, person=False)
        # Initials are for typed letters. Hanzi unigrams help short queries (with a wrong character,
        # the rare right ones still point at the customer); a long name has bigrams enough.
        found = {g for g in found if g[0] != "I" and (len(q.han) <= 6 or g[0] != "h")}
    if q.words:
        whole = list(q.syllables or ())
        complete = whole if whole and whole[-1] in SYLLABLES else whole[:-1]
        pinyin_only = len(complete) >= 2 and len(whole) == len(complete)
        run_on = len(q.words) == 1 and len(q.letters) >= 9  # one long run of letters: pinyin, maybe mistyped
        if pinyin_only or run_on:  # an English name's trigrams would only add noise
            found.update("w" + word for word in q.words)
        else:
            _latin_grams(" ".join(q.words), found)
        for a, b in zip(complete, complete[1:]):
            found.add(f"P{a} {b}")
        if len(q.letters) <= 12 and q.letters.isalpha() and not pinyin_only:
            for a, b in zip(q.letters, q.letters[1:]):
                found.add("I" + a + b)
        if len(q.letters) >= 5 and q.letters.isalpha() and not pinyin_only:
            found.update(_sound_trigrams(q.letters))  # pinyin with a typo still shares most of these
    for gram in found:
        grams[gram] = WEIGHT[gram[0]]
    return grams


def _sound_trigrams(spelled: str) -> set[str]:
    return {"T" + spelled[i:i + 3] for i in range(len(spelled) - 2)}


# --------------------------------------------------------------------------- exact scoring


@lru_cache(maxsize=30_000)
def han_info(text: str, person: bool) -> tuple[str, tuple[str, ...], str]:
    """(hanzi of a folded core, the readings of each, every reading) — cached: computed once per name.
    Readings are kept as strings, " zhong chong " (a query's " zhong " is in it), not as sets: a cache
    of strings and tuples of strings is nothing the cycle collector walks, while 30,000 entries of
    frozensets made its full passes take 50-80 ms of a lookup at 100k customers (issue 18)."""
    han = han_only(text)
    if not han:
        return han, (), ""
    if person:
        per_char = tuple(f" {' '.join(x for x in r if x)} " for r in char_readings(han, person=True))
    else:
        per_char = tuple(SPELLED.get(ch, " ") for ch in han)
    return han, per_char, " " + " ".join(sorted({x for r in per_char for x in r.split()})) + " "


@lru_cache(maxsize=30_000)
def letter_info(text: str, person: bool) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(Latin words, whole-name pinyin spellings primary first, the same spaced, initials) — cached."""
    han = han_only(text)
    if not han:
        return " ".join(_WORDS.findall(text)), (), (), ()
    variants = reading_variants([r[:2] for r in char_readings(han, person=person)], limit=4)
    return ("", tuple("".join(v) for v in variants), tuple(" " + " ".join(v) + " " for v in variants),
            tuple("".join(x[:1] for x in v) for v in variants))


@lru_cache(maxsize=30_000)
def _hanzi(text: str) -> tuple[str, str]:
    """(the hanzi of a name, the same without qualifiers such as 国际 / 控股) — cached: two regular
    expressions a name, which each candidate of each query ran again (a fifth of a cold lookup's time)."""
    han = han_only(text)
    return han, QUALIFIERS.sub("", han)


def _coverage(part: int, whole: int) -> float:
    return part / max(whole, 1)


def _score_han(q: Query, text: str, person: bool) -> tuple[float, str]:
    """A hanzi query against one field: exact, contained, one character missing or wrong, homophones."""
    han, readings, sounds = han_info(text, person)
    qh = q.han
    if not han:
        return 0.0, ""
    if qh == han or q.core == text:
        return 100.0, "text"
    if len(qh) >= 3 and qh == _hanzi(han)[1]:
        return 98.0, "text"  # 俊鸿食品 for 俊鸿国际食品: a rep leaves 国际 / 控股 out
    n, m = len(han), len(qh)
    if qh in han:
        return 90.0 + 8 * _coverage(m, n) - (0 if han.startswith(qh) else 2), "text"
    shared = sum(ch in han for ch in qh)
    if not shared and not any(x in sounds for r in q.han_readings for x in r):
        return 0.0, ""  # not a character in common, not even by sound
    best, how = 0.0, ""
    # The query's characters in order, with gaps: characters left out (人软件 for 人易软件).
    if 2 <= m < n and shared == m:
        pos, gaps, last = 0, 0, -1
        for ch in qh:
            found = han.find(ch, pos)
            if found < 0:
                break
            gaps += last >= 0 and found != last + 1
            last, pos = found, found + 1
        else:
            best, how = 78.0 + 8 * _coverage(m, n) + 4 - 3 * gaps - (2 if han[0] != qh[0] else 0), "text"
    # Same positions: one character wrong (人易较件 for 人易软件), homophones counting as near matches.
    qr = q.han_readings
    for start in range(0, max(n - m, 0) + 1):
        window = han[start:start + m]
        same = sound = 0
        for i, (a, b) in enumerate(zip(qh, window)):
            if a == b:
                same += 1
            elif any(x in readings[start + i] for x in qr[i]):
                sound += 1
        if sound and same + sound == m:  # every character sounds right: the input method picked a homophone
            score = 78.0 + 8 * _coverage(m, n) + 4 * same / m - (2 if start else 0)
            if score > best:
                best, how = score, "pinyin"
        elif m >= 3 and same >= m / 2:
            score = 60.0 + 24 * (same + 0.8 * sound) / m + 4 * _coverage(m, n) - (2 if start else 0)
            if score > best:
                best, how = score, "text"
    fuzzy = fuzz.ratio(qh, han) * 0.8
    if fuzzy > best:
        best, how = fuzzy, "text"
    return best, how


def _score_letters(q: Query, text: str, person: bool) -> tuple[float, str]:
    """A Latin query against one field: a Latin name (typos, word order), pinyin, or initials."""
    latin, spellings, spaced, capitals = letter_info(text, person)
    best, how = 0.0, ""
    if latin:
        if q.core == latin or q.letters == latin.replace(" ", ""):
            return 100.0, "text"
        if latin.startswith(q.core):
            best, how = 88.0 + 10 * _coverage(len(q.core), len(latin)), "text"
        words = " ".join(q.words)
        # Word order may differ; among equals, the one written in the same order wins (a tiny share).
        score = max(fuzz.WRatio(words, latin) * 0.93, fuzz.token_sort_ratio(words, latin) * 0.96) \
            + fuzz.ratio(words, latin) * 0.02
        if score > best:
            best, how = score, "text"
    if spellings and q.letters.isalpha():
        letters = q.letters
        syllables = " " + " ".join(q.syllables) if q.syllables and len(q.syllables) > 1 else None
        for rank, spelled in enumerate(spellings):
            alternate = 3 * (rank > 0)  # a less common reading ranks a little lower
            if letters == spelled:
                return 97.0 - alternate, "pinyin"
            if spelled.startswith(letters):
                score = 86.0 + 10 * _coverage(len(letters), len(spelled)) - alternate
            elif syllables is not None and syllables in spaced[rank]:
                score = 80.0 + 10 * _coverage(len(letters), len(spelled)) - alternate
            else:
                score = 0.0
            caps = capitals[rank]
            if letters == caps:
                score = max(score, 90.0 - alternate)
            elif len(letters) >= 2 and caps.startswith(letters):
                score = max(score, 80.0 + 8 * _coverage(len(letters), len(caps)) - alternate)
            elif len(letters) >= 3 and letters in caps:
                score = max(score, 74.0 - alternate)
            if score > best:
                best, how = score, "pinyin"
        if best < 70 and len(letters) >= 4:
            typo = fuzz.ratio(letters, spellings[0]) * 0.8
            if typo > best:
                best, how = typo, "pinyin"
    return best, how


def score_document(q: Query, packed: str) -> tuple[float, str, str]:
    """(score 0–100, why, what matched) of one customer for a query of one part (services.queryparts)."""
    display, cores, contacts, phones, _names, _numbers = packed.split(GROUP)
    best = (0.0, "", "")
    if q.phone:
        for number in phones.split(FIELD) if phones else ():
            if number == q.digits:
                return 100.0, "phone", number
            if number.endswith(q.digits):
                best = max(best, (88.0 + 10 * _coverage(len(q.digits), len(number)), "phone", number))
        return best
    scorer = _score_han if q.han else _score_letters
    for index, core in enumerate(cores.split(FIELD)):
        score, how = scorer(q, core, False)
        if score > best[0]:
            best = (score, "pinyin" if how == "pinyin" else ("name" if index == 0 else "alias"), core)
    if len(q.han) > 4 or len(q.letters) > 24:
        return best  # too long to be a person's name
    for person in contacts.split(FIELD) if contacts else ():
        score, how = scorer(q, person, True)
        if score * 0.95 > best[0]:
            best = (score * 0.95, "contact", person)
    return best


def _spell(han: str) -> str:
    """The main pinyin of hanzi, fast (one dictionary look-up a character)."""
    return "".join([PRIMARY.get(ch, "") for ch in han])


@lru_cache(maxsize=20_000)
def _name_sounds(names: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """A customer's cleaned full names as sounds: whole-name pinyin spellings (a few readings), their
    initials, and the main spelling of each name cut down to what a rep says — without the legal suffix,
    with and without the city and qualifiers such as 国际 / 控股 (for pinyin typed with a typo)."""
    spellings: list[str] = []
    capitals: list[str] = []
    said: set[str] = set()
    places = facts(names)[0]
    for name in names.split(FIELD):
        han = han_only(name)
        if not han:
            continue
        for variant in reading_variants([r[:2] for r in char_readings(han)], limit=2):
            spellings.append("".join(variant))
            capitals.append("".join(v[:1] for v in variant))
        short = LEGAL.sub("", han.removesuffix("分公司")) or han
        short = re.sub(r"^(\w{2,3}?)[市省]", r"\1", short)  # 太原市明华 is said 太原明华
        for form in {short, QUALIFIERS.sub("", short)}:
            said.add(_spell(form))
            core = core_name(form)
            said.add(_spell(core))
            for place in places:
                said.add(_spell(place + core.replace(place, "")))  # 荣昌(杭州)新材料 said 杭州荣昌新材料
    return tuple(spellings), tuple(capitals), tuple(sorted(said))


def _typo_fit(letters: str, sounds: tuple[tuple[str, ...], ...]) -> float:
    """Pinyin typed with a typo (a letter dropped, doubled or a key off, zh/z, ng/n): how close the letters
    come to the name as a rep says it, 0–0.92 (never as sure as a spelling that matches)."""
    spellings, _capitals, said = sounds
    if not spellings:
        return 0.0
    near = max(max(fuzz.ratio(letters, spelled) for spelled in said),
               max(fuzz.partial_ratio(letters, spelled) for spelled in spellings) - 5)
    return 0.92 * near / 100 if near >= 75 else 0.0


def _fit_words(part: Query, cores: list[str], people: list[str], names: list[str],
               sounds: tuple[tuple[str, ...], ...]) -> tuple[float, str, str]:
    """How well one word of a longer query (a brand, a trade, a contact's name, pinyin) fits a customer:
    0–1, why, what matched."""
    if part.han and any(part.han in _hanzi(name)[0] for name in names):
        return 1.0, "name", names[0]
    best = (0.0, "", "")
    if len(part.han) >= 3 and any(part.han in _hanzi(name)[1] for name in names):
        best = (0.97, "name", names[0])  # 柏骏化工 in 柏骏控股化工: a rep leaves 控股 / 国际 out
    if part.letters and not part.han:
        letters = part.letters
        spellings, capitals, _said = sounds
        if len(letters) >= 3 and any(letters in spelled for spelled in spellings):
            best = (1.0, "pinyin", names[0])
        elif 2 <= len(letters) <= 6 and any(letters in caps for caps in capitals):
            best = (0.88, "pinyin", names[0])
        elif len(letters) >= 5 and spellings:
            best = (_typo_fit(letters, sounds), "pinyin", names[0])
    if best[0] >= 1.0:
        return best
    scorer = _score_han if part.han else _score_letters
    for index, core in enumerate(cores):
        score, how = scorer(part, core, False)
        if score / 100 > best[0]:
            best = (score / 100, "pinyin" if how == "pinyin" else ("name" if index == 0 else "alias"), core)
    for person in people:
        score, _how = scorer(part, person, True)
        if score * 0.95 / 100 > best[0]:
            best = (score * 0.95 / 100, "contact", person)
    return best


def _fit_digits(digits: list[str], numbers: list[str]) -> float:
    """Digits typed without a person: an area code and the switchboard's first or last digits (0591 6770,
    (0576)1104), a local number without its area code (2688-8888), or the end of any number."""
    if not numbers:
        return 0.0
    first, rest = digits[0], "".join(digits[1:])
    best = 0.0
    for number in numbers:
        area, local = area_split(number)
        if rest and first.startswith("0") and 3 <= len(first) <= 4:
            if area == first and (local.startswith(rest) or local.endswith(rest)):
                return 1.0
            best = max(best, 0.35 if area == first else (0.5 if rest in local else 0.0))
            continue
        whole = first + rest
        if len(whole) < 4:
            continue
        if number == whole or local == whole or number.endswith(whole):
            return 1.0
        if len(whole) >= 4 and local.startswith(whole):
            best = max(best, 0.9)
    return best


def score_parts(parts: Parts, packed: str) -> tuple[float, str, str]:
    """(score 0–100, why, what matched) of one customer for a query of several parts (services.queryparts):
    every part counts — cities, branch, people with their digits, digits, words — weighted by how much
    each says; a city the customer's name contradicts (another city) costs a quarter of the score, and a
    branch office not asked for ranks below its head office."""
    display, cores_text, contacts, phones, names_text, numbers_text = packed.split(GROUP)
    cores = cores_text.split(FIELD)
    people = contacts.split(FIELD) if contacts else []
    per_person = [group.split(PHONE) if group else [] for group in numbers_text.split(FIELD)] if contacts else []
    names = names_text.split(FIELD)
    known_places, _, known_branch = facts(names_text)
    numbers = phones.split(FIELD) if phones else []
    total = weight = 0.0
    contradicted = False
    why, matched, strongest = "", "", 0.0
    for place in parts.places:
        fit = 1.0 if place in known_places else (0.0 if known_places else 0.4)
        contradicted |= bool(known_places) and place not in known_places
        total, weight = total + fit, weight + 1.0
    if parts.branch:
        total, weight = total + (1.0 if known_branch else 0.0), weight + 1.0
    for person in parts.people:
        fit, who = 0.0, ""
        for name, its_numbers in zip(people, per_person):
            if not name.startswith(person.surname):
                continue
            here = 1.0 if not person.digits or any(n.endswith(person.digits) for n in its_numbers) else 0.25
            if here > fit:
                fit, who = here, name
        w = 2.5 if person.digits else 1.5
        total, weight = total + fit * w, weight + w
        if fit * w > strongest:
            strongest, why, matched = fit * w, "contact", who
    if parts.digits:
        fit = _fit_digits(parts.digits, numbers)
        total, weight = total + fit * 2.0, weight + 2.0
        if fit * 2.0 > strongest:
            strongest, why, matched = fit * 2.0, "phone", "".join(parts.digits)
    sounds = _name_sounds(names_text) if parts.latin else ((), (), ())
    for word in [*parts.han, *parts.trades, *parts.latin]:
        part = _parsed_word(word)
        if not part.han and not part.letters:
            continue
        fit, how, what = _fit_words(part, cores, people, names, sounds)
        if fit < 1 and word in TRADE_ENGLISH and any(f" {english} " in f" {name} " for name in names
                                                     for english in TRADE_ENGLISH[word]):
            fit, how, what = 1.0, "name", names[0]  # trading in an English name for 贸易
        w = min(3.0, max(1.0, len(part.han) * 0.5)) if part.han else min(3.0, max(1.0, len(part.letters) / 4))
        total, weight = total + fit * w, weight + w
        if fit * w > strongest:
            strongest, why, matched = fit * w, how, what
    if not weight:
        return 0.0, "", ""
    score = 100.0 * total / weight
    if contradicted:
        score *= 0.75
    if known_branch and not parts.branch:
        score -= 3.0
    return score, why or "name", matched or display


@lru_cache(maxsize=4096)
def _parsed_word(word: str) -> Query:
    """A query's word parsed once for all the candidates scored against it (score_parts), not once per
    candidate: 40-odd candidates a search spent a quarter of its time parsing the same words again.
    Read-only: the Query is shared."""
    return parse_query(word)


def is_simple(parts: Parts) -> bool:
    """One word and nothing else: the single-part scoring (score_document) is the whole story."""
    return parts.words <= 1 and not (parts.places or parts.people or parts.digits or parts.branch or parts.trades)


# --------------------------------------------------------------------------- the index

CHUNK = 20_000
PARALLEL_FROM = 60_000


def _prepare_chunk(job: tuple[int, list[CustomerText]]) -> tuple[bytes, bytes, dict[str, bytes]]:
    """Packed texts of a run of documents (one UTF-8 blob and the byte length of each), and their
    postings (global document numbers) per gram."""
    start, docs = job
    texts: list[bytes] = []
    every: list[str] = []  # each document's grams, one document after the other
    counts = array("i")
    with collector_paused():
        for doc in docs:
            packed, grams = doc.prepared()
            texts.append(packed.encode())
            every.extend(grams)
            counts.append(len(grams))
        # Postings by sorting, not a list per gram appended to a gram at a time (a quarter of the build).
        # Grams keep their first-seen order and each posting its document order, as appending gave.
        numbers = dict.fromkeys(every)
        for number, gram in enumerate(numbers):
            numbers[gram] = number
        codes = np.fromiter(map(numbers.__getitem__, every), dtype=np.int32, count=len(every))
        del every
        owners = np.repeat(np.arange(start, start + len(docs), dtype=np.int32), np.frombuffer(counts, dtype=np.int32))
        data = owners[np.argsort(codes, kind="stable")].tobytes()
        ends = np.cumsum(np.bincount(codes, minlength=len(numbers)) * 4).tolist()
        postings = {gram: data[begin:end] for gram, begin, end in zip(numbers, [0, *ends], ends)}
    sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)).tobytes()
    return b"".join(texts), sizes, postings


@dataclass
class Built:
    """What a build produces: documents in customer-id order and their frozen postings."""

    customer: np.ndarray  # int64, customer id per document
    owner: np.ndarray  # int32, owner user id per document (-1: unassigned)
    blob: bytes  # the packed texts, UTF-8, one after the other
    blob_offsets: np.ndarray  # int64, where each document's text starts (and the end)
    slot: dict[str, int]  # gram → its run in `postings`
    offsets: np.ndarray  # int64, where each gram's run starts (and the end)
    postings: np.ndarray  # int32, document numbers


class _Builder:
    """Collects prepared chunks in customer-id order (document numbers given out by `describe`, postings
    merged in the same order by `merge`) and freezes them into a `Built`."""

    def __init__(self) -> None:
        self.size = 0
        self.customers: list[np.ndarray] = []
        self.owners: list[np.ndarray] = []
        self.lists: dict[str, list[bytes]] = {}
        self.blobs: list[bytes] = []
        self.lengths: list[np.ndarray] = []

    def describe(self, docs: list[CustomerText]) -> int:
        """Give these documents their numbers; returns the number of the first one."""
        start, count = self.size, len(docs)
        self.customers.append(np.fromiter((d.customer_id for d in docs), np.int64, count))
        self.owners.append(np.fromiter((-1 if d.owner_id is None else d.owner_id for d in docs), np.int32, count))
        self.size += count
        return start

    def merge(self, result: tuple[bytes, bytes, dict[str, bytes]]) -> None:
        blob, sizes, postings = result
        self.blobs.append(blob)
        self.lengths.append(np.frombuffer(sizes, dtype=np.int64))
        lists = self.lists
        for gram, ids in postings.items():
            part = lists.get(gram)
            if part is None:
                lists[gram] = [ids]
            else:
                part.append(ids)

    def finish(self, collect: bool = True, stop: threading.Event | None = None) -> Built:
        blob_offsets = np.zeros(self.size + 1, dtype=np.int64)
        if self.lengths:
            np.cumsum(np.concatenate(self.lengths), out=blob_offsets[1:])
        # Built beside a serving bot, in bounded steps: one C call over everything (freeing the dict of
        # runs, joining and copying every posting at once) held the interpreter, and the bot's loop, for
        # 0.2-0.3 s each at 1M customers. Python loops let the interpreter switch between steps.
        lists, self.lists = self.lists, {}
        grams = list(lists)
        joined = []
        for start in range(0, len(grams), POSTING_STEP):  # each gram's runs freed as they are joined
            _check(stop)
            joined.extend(b"".join(lists.pop(g)) for g in grams[start:start + POSTING_STEP])
        lengths = np.fromiter((len(b) // 4 for b in joined), dtype=np.int64, count=len(grams))
        offsets = np.zeros(len(grams) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        postings = np.empty(int(offsets[-1]), dtype=np.int32)
        for start in range(0, len(grams), POSTING_STEP):
            _check(stop)
            end = min(start + POSTING_STEP, len(grams))
            postings[offsets[start]:offsets[end]] = np.frombuffer(b"".join(joined[start:end]), dtype=np.int32)
            joined[start:end] = [b""] * (end - start)
        del joined
        empty_ids = np.zeros(0, np.int64)
        built = Built(
            customer=np.concatenate(self.customers) if self.customers else empty_ids,
            owner=np.concatenate(self.owners) if self.owners else np.zeros(0, np.int32),
            blob=b"".join(self.blobs), blob_offsets=blob_offsets,
            slot={gram: i for i, gram in enumerate(grams)}, offsets=offsets, postings=postings)
        self.blobs, self.lengths, self.customers, self.owners = [], [], [], []
        _person_grams.cache_clear()  # only useful while building
        _pair_grams.cache_clear()
        # Not beside a serving bot: a full collection holds the interpreter for a good while. Nor after a
        # build of less than a chunk: it left little to collect, and the pass costs the same whatever the
        # build — 0.26-0.5 s in a process that has loaded the bot (each test that makes one paid it).
        if collect and self.size >= CHUNK:
            gc.collect()
        return built


POSTING_STEP = 20_000  # grams whose postings are copied together when a build finishes


class BuildStopped(Exception):
    """A build given up on its way (`stop` set: the process is stopping)."""


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise BuildStopped


async def _prepared(future: asyncio.Future, stop: threading.Event | None) -> Any:
    """A chunk's result from the worker processes, looking at `stop` every 0.1 s while it is awaited (a
    chunk of 5,000 takes about half a second, and the workers' start seconds more)."""
    try:
        while stop is not None and not future.done():
            await asyncio.wait({future}, timeout=0.1)
            _check(stop)
    except BuildStopped:
        future.cancel()  # (its result, arriving after this loop is closed, is then dropped quietly)
        raise
    return await future


async def _build(chunks: AsyncIterator[list[CustomerText]], workers: int, collect: bool = True,
                 stop: threading.Event | None = None) -> Built:
    """The one build: each chunk (in customer-id order) is prepared — in a worker process when
    `workers` > 1, while the next chunk is still being read — and merged in order. `stop` (set from
    another thread) ends it between chunks with BuildStopped: a process stopped during the first build at
    1M customers otherwise waited for all of it (a minute and more) before it could exit."""
    builder = _Builder()
    loop = asyncio.get_running_loop()
    # "spawn": fresh interpreters, safe beside the database driver's threads (fork is not).
    pool = (ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 else None)
    pending: deque[asyncio.Future] = deque()
    try:
        with collector_paused():
            async for chunk in chunks:
                _check(stop)
                start = builder.describe(chunk)
                if pool is None:
                    builder.merge(_prepare_chunk((start, chunk)))
                    continue
                pending.append(loop.run_in_executor(pool, _prepare_chunk, (start, chunk)))
                while len(pending) > 2 * workers or (pending and pending[0].done()):
                    builder.merge(await _prepared(pending.popleft(), stop))
                    _check(stop)
            while pending:
                builder.merge(await _prepared(pending.popleft(), stop))
                _check(stop)
            return builder.finish(collect, stop)
    finally:
        for future in pending:
            future.cancel()
        if pool is not None:
            # Stopped: the chunks under way are not waited for (each worker ends after its own, on its own).
            pool.shutdown(wait=not (stop is not None and stop.is_set()), cancel_futures=True)


_TIE = 1e-9  # times a document's length: below any difference between two sums of gram weights


def _sum_per_document(every: np.ndarray, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each document named in `every` (postings one after the other) once, with the sum of its
    occurrences' weights — added in the same order as a bincount over the whole collection would, so the
    sums are the same to the bit — in time proportional to the postings read, not to the collection
    (no array of `size` to clear per query)."""
    position = np.arange(len(every), dtype=np.int32)
    first = np.empty(size, dtype=np.int32)  # not cleared: only the places written here are read
    first[every] = position  # a document named twice keeps one of its positions, whichever
    mine = first[every]  # each occurrence → its document's one position
    sums = np.bincount(mine, weights=weights, minlength=len(every))
    chosen = mine == position
    return every[chosen], sums[chosen]


def _workers_for(total: int) -> int:
    return min(os.cpu_count() or 1, 4) if total >= PARALLEL_FROM else 1


class LookupIndex:
    """In-memory index of every active customer; one per process, built from the database on start
    (`build_index`) and kept current by `upsert` / `remove` (`refresh`, `sync`)."""

    def __init__(self, built: Built | None = None) -> None:
        built = built or _Builder().finish()
        # Packed texts: one UTF-8 blob for what the build made (compact, no per-string objects), a list
        # for documents added afterwards.
        self._blob = built.blob
        self._blob_offsets = built.blob_offsets
        self._built = self._size = self._live = len(built.customer)
        self._later_text: list[str] = []
        self._customer = built.customer
        self._owner = built.owner
        self._alive = np.ones(self._size, dtype=bool)
        # Where a customer's document is: built documents are in customer-id order (binary search);
        # documents added afterwards are in a small dict.
        self._later_of: dict[int, int] = {}
        self._slot = built.slot
        self._offsets = built.offsets
        self._postings = built.postings
        self._delta: dict[str, list[int]] = {}
        self._masks: dict[Viewer, np.ndarray] = {}
        self.version = 0
        self.watermark: datetime | None = None  # newest customers.updated_at seen (see `sync`)
        self.recent: dict[int, datetime] = {}  # customers changed within SYNC_LOOKBACK: the updated_at loaded
        self.window: tuple | None = None  # (since, fingerprint) of the last sync's window (see `sync`)
        self.stamps: tuple[np.ndarray, np.ndarray] | None = None  # as built, for `save_index` (rule 7)
        self.behind = 0  # opened from a saved index (rule 7): the customers read again then
        # While loading (rule 6): exact keys → customer ids, each id's (owner, display name), and the
        # customers changed meanwhile (re-read by `finish_loading`).
        self.loading = False
        self._exact: dict[str, int | list[int]] = {}
        self._quick: dict[int, tuple[int | None, str]] = {}
        self._pending: set[int] = set()

    @classmethod
    async def from_documents(cls, docs: Iterable[CustomerText], *, workers: int | None = None,
                             chunk: int | None = None) -> LookupIndex:
        """An index of these documents, by the same build as `build_index` (for tools and tests that
        have the documents already)."""
        docs = sorted(docs, key=lambda doc: doc.customer_id)  # binary search over ids needs the order
        size = chunk or CHUNK

        async def chunks() -> AsyncIterator[list[CustomerText]]:
            for start in range(0, len(docs), size):
                yield docs[start:start + size]

        return cls(await _build(chunks(), _workers_for(len(docs)) if workers is None else workers))

    # ---- changes

    def __len__(self) -> int:
        """Active customers in the index (while loading: those findable by exact name)."""
        return len(self._quick) if self.loading else self._live

    def _doc_of(self, customer_id: int) -> int | None:
        index = self._later_of.get(customer_id)
        if index is not None:
            return index
        built = self._customer[:self._built]
        at = int(np.searchsorted(built, customer_id))
        if at < self._built and built[at] == customer_id and self._alive[at]:
            return at
        return None

    def owner_of(self, customer_id: int) -> int | None:
        doc = self._doc_of(customer_id)
        if doc is None or self._owner[doc] < 0:
            return None
        return int(self._owner[doc])

    def _grow(self, needed: int) -> None:
        capacity = len(self._customer)
        if needed <= capacity:
            return
        new = max(needed, capacity * 2, 1024)
        for name in ("_customer", "_owner", "_alive"):
            old = getattr(self, name)
            grown = np.zeros(new, dtype=old.dtype)
            grown[:capacity] = old
            setattr(self, name, grown)

    def _add_doc(self, doc: CustomerText, packed: str | None = None) -> int:
        index = self._size
        self._grow(index + 1)
        self._size += 1
        self._customer[index] = doc.customer_id
        self._owner[index] = -1 if doc.owner_id is None else doc.owner_id
        self._alive[index] = True
        if packed is not None:
            self._later_text.append(packed)
            self._later_of[doc.customer_id] = index
        self._live += 1
        return index

    def _length(self, docs: np.ndarray) -> np.ndarray:
        """The length of these documents' packed texts (bytes; later documents' in characters)."""
        built = np.minimum(docs, self._built - 1) if self._built else np.zeros_like(docs)
        lengths = (self._blob_offsets[built + 1] - self._blob_offsets[built]) if self._built else np.zeros(len(docs))
        later = docs >= self._built
        if later.any():
            lengths = lengths.copy()
            lengths[later] = [len(self._later_text[d - self._built]) for d in docs[later].tolist()]
        return lengths

    def _text(self, index: int) -> str:
        if index < self._built:
            return self._blob[self._blob_offsets[index]:self._blob_offsets[index + 1]].decode()
        return self._later_text[index - self._built]

    def upsert(self, doc: CustomerText) -> None:
        """Add a new customer or replace an edited one; findable by the next query."""
        if self.loading:
            self._pending.add(doc.customer_id)
            self._remember(doc.customer_id, doc.owner_id, doc.names, doc.phones)
            self.version += 1
            return
        self.remove(doc.customer_id)
        packed, grams = doc.prepared()
        index = self._add_doc(doc, packed)
        for gram in grams:
            self._delta.setdefault(gram, []).append(index)
        self._masks.clear()
        self.version += 1

    def remove(self, customer_id: int) -> None:
        if self.loading:
            self._pending.add(customer_id)
            self._quick.pop(customer_id, None)
            self.version += 1
            return
        index = self._doc_of(customer_id)
        self._later_of.pop(customer_id, None)
        if index is not None:
            self._live -= 1
            self._alive[index] = False
            self._masks.clear()
            self.version += 1

    # ---- while loading (rule 6)

    def _remember(self, customer_id: int, owner_id: int | None, names: list[str], phones: list[str]) -> None:
        self._quick[customer_id] = (owner_id, names[0])
        exact = self._exact
        keys = {clean(name).replace(" ", "") for name in names} | {"#" + p for p in phones if len(p) >= 7}
        for key in keys - {""}:
            ids = exact.get(key)
            if ids is None:
                exact[key] = customer_id  # most keys name one customer: no list for them
            elif isinstance(ids, int):
                if ids != customer_id:
                    exact[key] = [ids, customer_id]
            elif customer_id not in ids:
                ids.append(customer_id)

    def _search_loading(self, query: str, viewer: Viewer, limit: int) -> list[Match]:
        """Rule 6: the exact name, short name or alias, or the whole phone number; the viewer's only."""
        folded = fold(query).strip()
        if _PHONEISH.match(folded):
            key, why = "#" + re.sub(r"\D", "", folded), "phone"
        else:
            key, why = clean(query).replace(" ", ""), "name"
        found = []
        hits = self._exact.get(key, ())
        for cid in (hits,) if isinstance(hits, int) else hits:
            entry = self._quick.get(cid)
            if entry is None or not viewer.can_see(entry[0]):
                continue
            name = entry[1]
            kind = why if why == "phone" or clean(name).replace(" ", "") == key else "alias"
            found.append((len(name), cid, name, kind))
        found.sort()
        return [Match(cid, name, 100.0, kind, query.strip(), True) for _n, cid, name, kind in found[:limit]]

    def adopt(self, built: LookupIndex) -> set[int]:
        """Become the whole index `built` (rule 6); returns the customers changed while loading, which the
        caller re-reads (`finish_loading`)."""
        pending = self._pending
        version = self.version
        self.__dict__.update(built.__dict__)
        self.version = version + 1
        self._masks = {}
        return pending

    # ---- searching

    def _mask(self, viewer: Viewer) -> np.ndarray:
        mask = self._masks.get(viewer)
        if mask is None or len(mask) != self._size:
            alive = self._alive[:self._size]
            owner = self._owner[:self._size]
            if viewer.owners is None:
                mask = alive.copy() if viewer.unassigned else alive & (owner != -1)
            else:
                allowed = np.isin(owner, np.fromiter(viewer.owners, dtype=np.int32))
                if viewer.unassigned:
                    allowed |= owner == -1
                mask = alive & allowed
            if len(self._masks) > 256:
                self._masks.clear()
            self._masks[viewer] = mask
        return mask

    def _posting(self, gram: str) -> np.ndarray | None:
        slot = self._slot.get(gram)
        base = self._postings[self._offsets[slot]:self._offsets[slot + 1]] if slot is not None else None
        extra = self._delta.get(gram)
        if extra:
            tail = np.asarray(extra, dtype=np.int32)
            return tail if base is None else np.concatenate([base, tail])
        return base

    def candidates(self, q: Query | dict[str, float], viewer: Viewer, k: int) -> np.ndarray:
        """The documents the query's grams (a Query's, or given) point at most, the viewer's only."""
        grams = query_grams(q) if isinstance(q, Query) else q
        if not grams or self._size == 0:
            return np.zeros(0, dtype=np.int64)
        found = []
        for gram, weight in grams.items():
            posting = self._posting(gram)
            if posting is not None and len(posting):
                found.append((len(posting), gram, weight, posting))
        if not found:
            return np.zeros(0, dtype=np.int64)
        found.sort(key=lambda item: (item[0], item[1]))  # rarest first: they say the most, and cost the least
        total = max(1, self._live)
        ids, weights, budget = [], [], 0
        for length, _gram, weight, posting in found:
            if budget and budget + length > POSTING_BUDGET:
                break
            budget += length
            ids.append(posting)
            weights.append(weight * math.log1p(total / length))
        every = np.concatenate(ids) if len(ids) > 1 else ids[0]
        lengths = np.fromiter((len(p) for p in ids), dtype=np.int64, count=len(ids))
        docs, scores = _sum_per_document(every, np.repeat(np.asarray(weights, dtype=np.float32), lengths),
                                         self._size)
        scores *= self._mask(viewer)[docs]
        seen = scores > 0
        docs, scores = docs[seen], scores[seen]
        if len(docs) > k:
            # The best k; among equal scores the earlier document (many documents share a score: they
            # matched the same grams — and argpartition over many equal values is slow, so it is given
            # none).
            ranked = scores - self._length(docs) * _TIE
            docs = docs[np.argpartition(ranked, -k)[-k:]]
        return docs

    def search(self, query: str, viewer: Viewer, limit: int = 10) -> list[Match]:
        """Ranked matches the viewer may see, best first, each with a score and why it matched. A name
        that equals the query (after services.queryparts.clean) is first; then the score; then the shorter
        name, then the id."""
        folded = fold(query).strip()
        if not folded:
            return []
        if self.loading:
            return self._search_loading(query, viewer, limit)
        parts = split(query)
        phoneish = bool(_PHONEISH.match(folded)) and len(re.sub(r"\D", "", folded)) >= 4
        simple = False
        typos: dict[str, float] = {}
        if phoneish:
            q = parse_query(query)
            grams = query_grams(q) | digit_grams(parts.digits)
            score = lambda packed: max(score_document(q, packed),  # noqa: E731
                                       (96.0 * _fit_digits(parts.digits, _numbers(packed)), "phone",
                                        "".join(parts.digits)))
        elif simple := is_simple(parts):
            q = parse_query(parts.cleaned)
            if not q.han and not q.letters:
                return []
            if len(q.han) + len(q.letters) < 2 and not q.han:
                return []
            grams = query_grams(q)
            if q.letters.isalpha() and len(q.letters) >= 5 and not q.han:
                # A typo may spell other pinyin (kailong → ailong), which the syllable grams alone do not
                # tell from any other …long: when nothing sure is found, again with the sound trigrams
                # (which letters that are not pinyin have anyway).
                typos = {gram: WEIGHT["T"] for gram in _sound_trigrams(q.letters)} | grams
                # Maybe pinyin with a typo, city and all (a typo can spell other syllables: tai·tuan).
                def score(packed: str) -> tuple[float, str, str]:
                    best = score_document(q, packed)
                    return best if best[0] >= 90 else max(best, _typo_score(q.letters, packed))
            else:
                score = lambda packed: score_document(q, packed)  # noqa: E731
        elif parts.places or parts.people or parts.digits or parts.branch:
            grams = parts_grams(parts)
            score = lambda packed: score_parts(parts, packed)  # noqa: E731
        else:  # words only: every word counts, or the whole as one (an English name in any order, typos)
            whole = parse_query(parts.cleaned)
            grams = parts_grams(parts)
            if parts.han or all(is_pinyin(word) for word in parts.latin):
                score = lambda packed: score_parts(parts, packed)  # noqa: E731
            else:  # Latin words that are not pinyin: an English name, in any order, with typos
                grams |= query_grams(whole)

                def score(packed: str) -> tuple[float, str, str]:
                    best = score_document(whole, packed)
                    return best if best[0] >= 90 else max(best, score_parts(parts, packed))
        compact = parts.cleaned.replace(" ", "")
        k = max(limit * 3, 24) if phoneish or simple else max(limit * 5, 48)  # several parts: wider net
        scored: dict[int, tuple | None] = {}  # per candidate, for both rounds (most are in both)
        found = self._rank(grams, score, compact, viewer, k, limit, scored)
        if len(typos) > len(grams) and (not found or found[0].score < CONFIDENT_SCORE):
            found = self._rank(typos, score, compact, viewer, k, limit, scored)
        return found

    def _rank(self, grams: dict[str, float], score, compact: str, viewer: Viewer, k: int,
              limit: int, scored: dict[int, tuple | None]) -> list[Match]:
        """The best k candidates of these grams, scored by `score` (once per search: `scored`), the best
        `limit` of them in order."""
        ranked = []
        for doc in self.candidates(grams, viewer, k).tolist():
            if doc in scored:
                if scored[doc] is not None:
                    ranked.append(scored[doc])
                continue
            scored[doc] = None
            packed = self._text(doc)
            value, why, matched = score(packed)
            names = packed.split(GROUP, 5)[4]
            exact = compact != "" and any(compact == name.replace(" ", "") for name in names.split(FIELD))
            if exact:
                value, why, matched = 100.0, "name" if names.split(FIELD)[0].replace(" ", "") == compact \
                    else "alias", matched
            if value >= 50:
                name = packed.split(GROUP, 1)[0]
                scored[doc] = (-round(value, 1), not exact, len(name), int(self._customer[doc]), name, why, matched)
                ranked.append(scored[doc])
        ranked.sort()
        return [Match(cid, name, -neg, why, matched, not inexact)
                for neg, inexact, _len, cid, name, why, matched in ranked[:limit]]


def _typo_score(letters: str, packed: str) -> tuple[float, str, str]:
    names = packed.split(GROUP)[4]
    return 100 * _typo_fit(letters, _name_sounds(names)), "pinyin", packed.split(GROUP, 1)[0]


def _numbers(packed: str) -> list[str]:
    phones = packed.split(GROUP)[3]
    return phones.split(FIELD) if phones else []


def digit_grams(digits: list[str]) -> dict[str, float]:
    """Grams of typed digits: the last four of the whole, and after an area code its first four."""
    grams: dict[str, float] = {}
    whole = "".join(digits)
    if len(whole) >= 4:
        grams["d" + whole[-4:]] = WEIGHT["d"]
    if len(digits) >= 2 and digits[0].startswith("0") and 3 <= len(digits[0]) <= 4:
        grams["a" + digits[0]] = WEIGHT["a"]
        rest = "".join(digits[1:])
        if len(rest) >= 4:
            grams["x" + rest[:4]] = WEIGHT["x"]
            grams["d" + rest[-4:]] = WEIGHT["d"]
    elif len(whole) >= 4:
        grams["x" + whole[:4]] = WEIGHT["x"] * 0.5
    return grams


def parts_grams(parts: Parts) -> dict[str, float]:
    """The grams of a query of several parts: each word's, the cities', the people's, the digits'."""
    grams: dict[str, float] = {}
    for word in [*parts.han, *parts.trades, *parts.latin]:
        grams.update(query_grams(parse_query(word)))
    for place in parts.places:
        grams["C" + place] = WEIGHT["C"]
    for person in parts.people:
        grams["h" + person.surname[:1]] = WEIGHT["h"]
        if len(person.surname) > 1:
            grams.update(query_grams(parse_query(person.surname)))
        if len(person.digits) >= 4:
            grams["d" + person.digits[-4:]] = WEIGHT["d"]
    grams.update(digit_grams(parts.digits))
    return grams


CONFIDENT_SCORE = 90.0
CONFIDENT_MARGIN = 5.0


def confident(matches: list[Match]) -> Match | None:
    """Rule "open a card only when the lookup is sure": the query is exactly one customer's name, or the
    best match scores at least CONFIDENT_SCORE and
    leads the runner-up by at least CONFIDENT_MARGIN; otherwise the person chooses (a single weak match —
    人易 → 丰人医疗器械 at 82 — is a choice, not an answer). Measured on the labelled set (tests/data, 370
    queries with one right answer): 84 % open directly and none of them on a wrong customer; a margin of 3
    would open one wrong card, a score of 95 would open only 64 % (bench/lookup_bench.py prints the figures)."""
    if matches and matches[0].exact and not (len(matches) > 1 and matches[1].exact):
        return matches[0]  # the name itself, typed out: no doubt, whatever scores near-duplicates get
    if not matches or matches[0].score < CONFIDENT_SCORE:
        return None
    if len(matches) > 1 and matches[0].score - matches[1].score < CONFIDENT_MARGIN:
        return None
    return matches[0]


NOT_HERE_BELOW = 85.0


def probably_new(matches: list[Match]) -> bool:
    """Rule "not here, add it?": the best match scores under NOT_HERE_BELOW — what a firm that is not in the
    base gets from its near namesakes. On the generated near-duplicate base (bench/lookup_bench.py) 64 % of
    absent firms score under 85 and 1 % of right answers do; none of the absent firms reach 90."""
    return not matches or matches[0].score < NOT_HERE_BELOW


def is_exact(matches: list[Match]) -> bool:
    """The query is a customer's name, short name or alias, or a whole phone number — nothing new to add."""
    return bool(matches) and (matches[0].exact or (matches[0].score >= 100 and matches[0].why == "phone"))


# --------------------------------------------------------------------------- database

_CUSTOMERS = ("SELECT id, owner_id, name, short_name, aliases, phone FROM customer "
              "WHERE archived_at IS NULL AND {which} ORDER BY id")
_CONTACTS = ("SELECT customer_id, name, mobile, office_phone FROM contact_person WHERE archived_at IS NULL AND {which} "
             "ORDER BY customer_id, id")
_NEXT_CUSTOMERS = text(_CUSTOMERS.format(which="id > :after") + " LIMIT :size")
_CONTACTS_BETWEEN = text(_CONTACTS.format(which="customer_id BETWEEN :first AND :last"))
_THESE_CUSTOMERS = text(_CUSTOMERS.format(which="id IN :ids")).bindparams(bindparam("ids", expanding=True))
_THESE_CONTACTS = text(_CONTACTS.format(which="customer_id IN :ids")).bindparams(bindparam("ids", expanding=True))
_ID_BATCH = 5_000  # ids per IN (…) when reloading chosen customers


def _read(sync_session, customers, contacts, params: dict[str, Any]) -> list[CustomerText]:
    """The one loader: customers (in id order) with their contacts' names and phones, read with plain SQL
    and raw rows (a million in seconds, not a minute)."""
    connection = sync_session.connection()
    docs: dict[int, CustomerText] = {}
    with collector_paused():
        for cid, owner, name, short, aliases, phone in connection.execute(customers, params):
            docs[cid] = _customer_text(cid, owner, name, short, aliases, phone)
        if docs:
            if "after" in params:
                params = {"first": params["after"] + 1, "last": cid}
            for cid, person, mobile, office in connection.execute(contacts, params):
                doc = docs.get(cid)
                if doc is not None:
                    _add_contact(doc, person, mobile, office)
    return list(docs.values())


def _customer_text(cid: int, owner: int | None, name: str, short: str | None, aliases: Any,
                   phone: str | None) -> CustomerText:
    names = [name]
    if short and short != name:
        names.append(short)
    if aliases and aliases != "[]":
        extra = json.loads(aliases) if isinstance(aliases, str) else aliases
        names.extend(a for a in extra if a and a not in names)
    digits = phone_digits(phone) if phone else ""
    return CustomerText(cid, owner, names, [], [digits] if digits else [])


def _add_contact(doc: CustomerText, person: str, mobile: str | None, office: str | None) -> None:
    doc.contacts.append(person)
    numbers = []
    for number in (mobile, office):
        if number:
            digits = phone_digits(number)
            if digits:
                doc.phones.append(digits)
                numbers.append(digits)
    doc.contact_phones.append(numbers)


async def _chunks_from_database(session: AsyncSession, size: int) -> AsyncIterator[list[CustomerText]]:
    """Active customers in id order, `size` at a time, with their contacts."""
    after = 0
    while True:
        docs = await session.run_sync(_read, _NEXT_CUSTOMERS, _CONTACTS_BETWEEN, {"after": after, "size": size})
        if not docs:
            return
        after = docs[-1].customer_id
        yield docs


async def load_documents(session: AsyncSession, customer_ids: Iterable[int] | None = None) -> list[CustomerText]:
    """The searchable text of active customers (all, or these), in id order."""
    if customer_ids is None:
        return [doc async for chunk in _chunks_from_database(session, CHUNK) for doc in chunk]
    wanted = sorted(set(customer_ids))
    docs: list[CustomerText] = []
    for start in range(0, len(wanted), _ID_BATCH):
        ids = {"ids": wanted[start:start + _ID_BATCH]}
        docs += await session.run_sync(_read, _THESE_CUSTOMERS, _THESE_CONTACTS, ids)
    return docs


async def _latest_change(session: AsyncSession) -> datetime | None:
    return await session.scalar(select(func.max(Customer.updated_at)))


SYNC_LOOKBACK = timedelta(minutes=10)  # how far behind the newest change a sync looks again


async def _recent(session: AsyncSession, since: datetime | None) -> list[tuple[int, datetime]]:
    query = select(Customer.id, Customer.updated_at)
    if since is not None:
        query = query.where(Customer.updated_at >= since)
    return [tuple(row) for row in (await session.execute(query)).all()]


async def _watermark(session: AsyncSession) -> tuple[datetime | None, dict[int, datetime]]:
    """Where `sync` goes on from, read before the documents an index is made of: the newest change, and the
    customers changed within SYNC_LOOKBACK of it with their updated_at. One changed after this, while the
    documents are read, then differs from `recent` and sync reads it again (read after the documents, it
    took a change committed meanwhile as loaded). After a big import every customer is in the look-back
    window (1M rows of id and time): read with the collector paused — it ran six full passes of 57-147 ms
    over them at 1M, each holding the interpreter, so the bot's loop stalled up to 0.8 s."""
    watermark = await _latest_change(session)
    if watermark is None:
        return None, {}
    with collector_paused():
        return watermark, dict(await _recent(session, watermark - SYNC_LOOKBACK))


async def build_index(session: AsyncSession, *, workers: int | None = None, chunk: int = CHUNK,
                      collect: bool = True, to_save: bool = False, stop: threading.Event | None = None
                      ) -> LookupIndex:
    """The whole index from the database (on start): read `chunk` customers at a time, each prepared by a
    worker process (for large collections) while the next is read. `collect=False` beside a serving bot
    (no full garbage collection at the end: it would hold every thread up). `to_save`: the customers' change
    stamps are read first and kept with it, for `save_index`. `stop`: see `_build`."""
    watermark, recent = await _watermark(session)
    # Before the documents too: a customer changed while they are read has a newer stamp than this one, and
    # the next start reads it again (`open_saved`).
    stamps = await _stamps(session) if to_save else None
    _check(stop)  # (a million ids and times read: seconds at 1M)
    if workers is None:
        total = await session.scalar(select(func.count(Customer.id)).where(Customer.archived_at.is_(None)))
        workers = _workers_for(total or 0)
    index = LookupIndex(await _build(_chunks_from_database(session, chunk), workers, collect, stop))
    index.watermark = watermark
    index.stamps = stamps
    index.recent = recent
    return index


# --------------------------------------------------------------------------- the saved index (rule 7)

SAVED_FORMAT = 2
_SAVED_MAGIC = b"FieldCRM lookup index\n"


def _saved_code() -> str:
    """What a document's text and grams are made by: this module, the query parts, the text rules and their
    data (the pinyin and Traditional-character tables come with pypinyin and OpenCC: their versions)."""
    import sys
    import unicodedata
    from importlib.metadata import version

    from services import parsing, queryparts, textnorm

    # Folding is NFKC: a Python with another Unicode version may fold a name differently.
    digest = hashlib.sha256(f"{SAVED_FORMAT} {unicodedata.unidata_version} {sys.version_info[:2]}".encode())
    for path in (__file__, queryparts.__file__, textnorm.__file__, parsing.__file__,
                 queryparts.DATA / "trade_words.tsv"):
        digest.update(Path(path).read_bytes())
    for package in ("pypinyin", "opencc-python-reimplemented", "numpy"):
        try:
            digest.update(f"{package} {version(package)}".encode())
        except Exception:  # not installed under that name: its data is hashed through the modules above
            digest.update(package.encode())
    return digest.hexdigest()[:32]


_SAVED_CODE = _saved_code()
SAVED_STALE_MIN = 1_000  # changed customers read again on a start at most ...
SAVED_STALE_SHARE = 0.10  # ... or this share of them, whichever is more; beyond it the index is built anew


@dataclass(frozen=True)
class SavedIndex:
    """Where a process keeps its whole index between starts (rule 7), and the key of the database it is of."""

    path: Path
    database: str

    @classmethod
    def under(cls, data_dir: Path, url: URL) -> SavedIndex | None:
        """DATA_DIR/lookup/index-<database>.bin; None for a database only one process sees (in memory)."""
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            return None
        database = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
        return cls(data_dir / "lookup" / f"index-{database}.bin", database)


def _stamp(session: AsyncSession) -> Any:
    """A customer's updated_at as microseconds since 1970, exactly as stored (compared, never shown): SQLite
    keeps the text 2026-12-07 19:51:18.944635 (julianday would round it to the millisecond)."""
    if session.get_bind().dialect.name == "sqlite":
        return (cast(func.strftime("%s", Customer.updated_at), Integer) * 1_000_000
                + cast(func.substr(Customer.updated_at, 21, 6), Integer))
    return cast(func.extract("epoch", Customer.updated_at) * 1_000_000, BigInteger)


async def _stamps(session: AsyncSession) -> tuple[np.ndarray, np.ndarray]:
    """Every active customer's id and change stamp (`_stamp`), in id order."""
    ids, stamps = await columns(session, select(Customer.id, _stamp(session)).where(Customer.archived_at.is_(None)))
    order = np.argsort(ids, kind="stable")
    return ids[order], stamps[order]


def save_index(index: LookupIndex, path: Path, *, database: str) -> None:
    """Rule 7: write a freshly built index (`build_index(..., to_save=True)`, nothing changed in it since)
    to `path` for the next start of a process on the same `database` (a key of its URL) and code: a header
    line (what and whose it is, each part's type and size, a checksum), then the parts as raw bytes —
    nothing in it is ever run as code. Written to a file of its own and then renamed over the old one, so a
    reader never sees half of it (another process saving at the same time: the last rename wins, both whole)."""
    if index.stamps is None or index._size != index._built or index._delta or index.loading:
        raise ValueError("only an index just built with to_save=True can be saved")
    ids, stamps = index.stamps
    grams = [gram.encode() for gram in index._slot]  # in slot order: a gram's number is its place
    arrays = dict(customer=index._customer, owner=index._owner, blob_offsets=index._blob_offsets,
                  offsets=index._offsets, postings=index._postings, ids=ids, stamps=stamps,
                  gram_sizes=np.fromiter(map(len, grams), dtype=np.int32, count=len(grams)))
    parts = [memoryview(np.ascontiguousarray(array)).cast("B") for array in arrays.values()]
    parts += [memoryview(index._blob), memoryview(b"".join(grams))]
    check = 0
    for part in parts:
        check = zlib.crc32(part, check)
    meta = {"format": SAVED_FORMAT, "code": _SAVED_CODE, "database": database,
            "arrays": [[name, array.dtype.str] for name, array in arrays.items()],
            "sizes": [part.nbytes for part in parts], "crc32": check, "customers": int(ids.size),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{path.name}.*.partial"):  # left by a process killed while it saved
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 600:
                stale.unlink()
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as out:
            out.write(_SAVED_MAGIC + json.dumps(meta).encode() + b"\n")
            for part in parts:
                out.write(part)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _read_saved(path: Path, database: str) -> tuple[Built, np.ndarray, np.ndarray] | None:
    """The index saved at `path` for this database and code, or None (none, another's, or damaged)."""
    try:
        with open(path, "rb") as saved:
            if saved.readline() != _SAVED_MAGIC:
                log.warning("the saved lookup index %s cannot be read (not an index); building it", path)
                return None
            meta = json.loads(saved.readline())
            if (meta.get("format"), meta.get("code"), meta.get("database")) != (SAVED_FORMAT, _SAVED_CODE, database):
                log.info("the saved lookup index %s was made by other code or for another database; building it",
                         path)
                return None
            parts = []
            for size in meta["sizes"]:
                part = bytearray(size)  # writable: the index's arrays are numpy arrays over these
                if saved.readinto(part) != size:
                    raise EOFError("the file ends early")
                parts.append(part)
            if saved.read(1):
                raise ValueError("the file is longer than it says")
        check = 0
        for part in parts:
            check = zlib.crc32(part, check)
        if check != meta["crc32"]:
            raise ValueError("its checksum does not match")
        arrays = {name: np.frombuffer(part, dtype=np.dtype(kind))
                  for (name, kind), part in zip(meta["arrays"], parts, strict=False)}
        blob, grams = bytes(parts[-2]), bytes(parts[-1])
        ends = np.cumsum(arrays["gram_sizes"], dtype=np.int64).tolist()
        with collector_paused():
            slot = {grams[start:end].decode(): n for n, (start, end) in enumerate(zip([0, *ends], ends))}
        return (Built(arrays["customer"], arrays["owner"], blob, arrays["blob_offsets"], slot, arrays["offsets"],
                      arrays["postings"]), arrays["ids"], arrays["stamps"])
    except FileNotFoundError:
        return None
    except Exception as exc:  # damaged: cut off by a crash or a full disk, written over by hand
        log.warning("the saved lookup index %s cannot be read (%s); building it", path, exc)
        return None


def _differing(ids: np.ndarray, stamps: np.ndarray, now_ids: np.ndarray, now_stamps: np.ndarray) -> np.ndarray:
    """The customers (sorted ids) not in both, or whose stamps differ."""
    both, here, there = np.intersect1d(ids, now_ids, assume_unique=True, return_indices=True)
    moved = both[stamps[here] != now_stamps[there]]
    return np.union1d(np.setxor1d(ids, now_ids, assume_unique=True), moved)


async def open_saved(session: AsyncSession, path: Path, *, database: str) -> LookupIndex | None:
    """Rule 7: the index saved at `path` (`save_index`), brought up to date: every customer added, archived
    or changed since it was saved — by their change stamps, whatever the time now or then (a database
    restored from an older backup too) — is read again. None when there is none for this database and code,
    it is damaged, or more customers changed than SAVED_STALE_MIN / SAVED_STALE_SHARE (then it is built)."""
    saved = await asyncio.to_thread(_read_saved, path, database)
    if saved is None:
        return None
    built, ids, stamps = saved
    watermark, recent = await _watermark(session)  # before the stamps and the re-reads
    now_ids, now_stamps = await _stamps(session)
    # Also every saved document no longer active: one added while the build read its documents (after the
    # stamps) and archived since is in neither list of stamps.
    changed = np.union1d(_differing(ids, stamps, now_ids, now_stamps), np.setdiff1d(built.customer, now_ids))
    if changed.size > max(SAVED_STALE_MIN, SAVED_STALE_SHARE * max(ids.size, now_ids.size)):
        log.info("the saved lookup index is %d customers behind; building it anew", changed.size)
        return None
    index = LookupIndex(built)
    await refresh(index, session, changed.tolist())
    index.behind = int(changed.size)
    index.watermark, index.recent = watermark, recent
    log.info("lookup index opened from %s: %d customers, %d read again", path, len(index), changed.size)
    return index


_NAMES = text("SELECT id, owner_id, name, short_name, aliases, phone FROM customer WHERE archived_at IS NULL")


async def start_index(session: AsyncSession) -> LookupIndex:
    """A loading index (rule 6): every active customer's names and phone, for exact lookups while
    `build_index` runs; hand both to `finish_loading` when the build is done."""
    index = LookupIndex()
    index.loading = True

    def read(sync_session) -> None:
        with collector_paused():
            for row in sync_session.connection().execute(_NAMES):
                doc = _customer_text(*row)  # the names and phone as the whole index reads them
                index._remember(doc.customer_id, doc.owner_id, doc.names, doc.phones)
            # Frozen before the collector is on again: its first pass walked the million tuples just made
            # (268 ms at 1M customers, before the bot could answer). They are freed when the whole index
            # takes over (release_in_slices). gc.freeze takes everything the process tracks at that moment,
            # as bot.memory.settle does right after on a start (a cycle left uncollected then stays).
            gc.freeze()

    await session.run_sync(read)
    return index


async def finish_loading(index: LookupIndex, built: LookupIndex, session: AsyncSession) -> int:
    """The loading `index` becomes the whole index `built` (made by `build_index`, which may have read a
    customer before a change made during the build) and re-reads every customer changed while it was
    loading. Changes other processes made meanwhile are `sync`'s, from the build's watermark on. Returns
    how many customers were re-read."""
    loading_tables = (index._exact, index._quick)
    pending = index.adopt(built)
    # Nothing reads the loading tables once the whole index took over: freed now, in slices (also when
    # the re-read below fails).
    await release_in_slices(t for t in loading_tables if t is not index._exact and t is not index._quick)
    await refresh(index, session, pending)
    return len(pending)


RELEASE_SLICE = 20_000  # entries freed per turn of the event loop


async def release_in_slices(tables: Iterable[dict]) -> None:
    """Rule "a big table is freed in slices": the loading index's exact-name tables (3 million keys at 1M
    customers) were dropped at once when the whole index took over — freeing them is C code that holds the
    interpreter, and the bot's loop with it (issue 18, start-up bench at 1M). They are emptied
    RELEASE_SLICE entries at a time, with the loop's other work between slices."""
    for table in tables:
        while table:
            for _ in range(min(RELEASE_SLICE, len(table))):
                table.popitem()
            await asyncio.sleep(0)


async def sync(index: LookupIndex, session: AsyncSession, reloaded: set[int] | None = None) -> int:
    """Pick up changes other processes committed (a CLI import, another bot instance). Rule: every customer
    whose `updated_at` is at most SYNC_LOOKBACK older than the newest change seen is looked at, and reloaded
    only if its `updated_at` differs from the one loaded — so an import's rows sharing one time are not read
    again every sync (that froze the bot for seconds at 100k), while a transaction that committed late, or
    a database that stores whole seconds, is still caught. A change older than the look-back when it
    commits (an import running longer than SYNC_LOOKBACK) is picked up at the next start. Returns how
    many customers were reloaded (their ids are added to `reloaded` when given)."""
    latest = await _latest_change(session)
    if latest is None:
        return 0
    since = None if index.watermark is None else min(index.watermark, latest) - SYNC_LOOKBACK
    if since is not None:
        # Nothing in the window changed since the last sync: not even the ids and times are read (100k rows
        # sharing an import's time are read in no time by the database, but turning them into Python objects
        # held the bot up for a second or two every 30 s).
        fingerprint = await _window_fingerprint(session, since)
        if index.window == (since, fingerprint):
            return 0
    rows = await _recent(session, since)
    changed = {cid for cid, at in rows if index.recent.get(cid) != at}
    await refresh(index, session, changed)
    if reloaded is not None:
        reloaded |= changed
    newest = max((at for _cid, at in rows), default=latest)
    index.watermark = newest if index.watermark is None else max(index.watermark, newest)
    cutoff = index.watermark - SYNC_LOOKBACK
    index.recent = {cid: at for cid, at in rows if at >= cutoff}
    if since is not None:
        index.window = (since, fingerprint)
    return len(changed)


async def _window_fingerprint(session: AsyncSession, since: datetime) -> tuple:
    """How many customers changed at or after `since`, the sum of their ids and of their change times
    (counted from `since`, to the millisecond): any change within the window alters it, a late commit too."""
    if session.get_bind().dialect.name == "postgresql":
        offset = func.extract("epoch", Customer.updated_at - since)
    else:
        offset = (func.julianday(Customer.updated_at) - func.julianday(since)) * 86400.0
    row = (await session.execute(select(func.count(), func.sum(Customer.id), func.sum(offset))
                                 .where(Customer.updated_at >= since))).one()
    return row[0], row[1], round(float(row[2] or 0), 3)


CHANGED = "lookup_changed_customers"


def track_change(session: AsyncSession, *customer_ids: int) -> None:
    """Note that these customers' searchable text may have changed; `refresh` them after the commit."""
    session.info.setdefault(CHANGED, set()).update(customer_ids)


async def refresh(index: LookupIndex, session: AsyncSession, customer_ids: Iterable[int] | None = None) -> None:
    """Bring the index up to date for customers changed in a committed transaction."""
    ids = set(customer_ids) if customer_ids is not None else session.info.pop(CHANGED, set())
    if not ids:
        return
    docs = {doc.customer_id: doc for doc in await load_documents(session, ids)}
    for cid in ids:
        if cid in docs:
            index.upsert(docs[cid])
        else:  # archived or gone
            index.remove(cid)
