"""An admin maintains the system dictionaries; values match in any language, retired ones still import."""

import pytest

from models import DictionaryKind
from services.dictionaries import add_entry, entries, load_vocabulary, rename_entry, retire_entry
from services.messages import DomainError


async def test_an_added_region_is_offered_and_matches_in_every_language(session):
    entry = await add_entry(session, DictionaryKind.region, "hk_macao", ("港澳", "港澳", "Hong Kong & Macao"))
    assert entry.id in [e.id for e in await entries(session, "region")]
    vocabulary = await load_vocabulary(session)
    for text in ("港澳", "hong kong & macao", " Hong Kong & Macao ", "hk_macao"):
        assert vocabulary.match("region", text) == entry.id
    assert vocabulary.match("industry", "港澳") is None  # only within its own dictionary


async def test_a_retired_entry_is_no_longer_offered_but_old_files_still_match_it(session):
    south = next(e for e in await entries(session, "region") if e.code == "south")
    await retire_entry(session, south.id)
    assert south.id not in [e.id for e in await entries(session, "region")]
    assert (await load_vocabulary(session)).match("region", "华南") == south.id


async def test_renaming_changes_every_label(session):
    retail = next(e for e in await entries(session, "industry") if e.code == "retail")
    await rename_entry(session, retail.id, ("零售批发", "零售批發", "Retail & wholesale"))
    assert retail.label("zh_Hant") == "零售批發" and retail.label("en") == "Retail & wholesale"
    assert (await load_vocabulary(session)).match("industry", "零售批发") == retail.id


@pytest.mark.parametrize("kind, code, labels", [
    ("planet", "mars", ("火星", "火星", "Mars")),
    ("region", "south", ("华南", "華南", "South")),  # the code exists already
    ("region", "new", ("新区", "", "New")),  # a language without a label
])
async def test_bad_entries_are_refused(session, kind, code, labels):
    with pytest.raises(DomainError):
        await add_entry(session, kind, code, labels)


async def test_strategies_offered_are_the_active_ones_shortest_cycle_first(session):
    from models import ContactStrategy
    from services.dictionaries import strategies

    offered = await strategies(session, ContactStrategy)
    assert offered and [s.cycle_days for s in offered] == sorted(s.cycle_days for s in offered)
    offered[0].active = False
    await session.flush()
    assert offered[0].id not in {s.id for s in await strategies(session, ContactStrategy)}
