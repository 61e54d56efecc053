"""Charts are real PNGs of phone size with visible content, and Chinese is drawn with the bundled CJK font
(no missing-glyph fallback)."""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import pytest
from matplotlib import font_manager
from PIL import Image

from services import charts


def _image(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(png)).convert("RGB")


def _non_white_share(image: Image.Image) -> float:
    pixels = np.asarray(image, dtype=np.int32)
    return float((pixels.sum(axis=2) < 720).mean())


@pytest.mark.parametrize("draw", [
    lambda: charts.pie("客户地区分布", [("华南", 40), ("华东", 30), ("华北", 20), ("西南", 10)]),
    lambda: charts.bars("RFM 分群变化", [("重要价值客户", 12), ("流失风险", 7), ("新客户", 3)]),
    lambda: charts.lines("月度销售额（元）", ["2026-01", "2026-02", "2026-03"], [("今年", [1, 3, 2]), ("去年", [2, 2, 1])]),
])
def test_a_chart_is_a_phone_sized_png_with_content_and_no_missing_glyphs(draw, caplog):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        image = _image(draw())
    missing = [w for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]
    assert not missing, [str(w.message) for w in missing]
    assert not [r for r in caplog.records if "findfont" in r.getMessage()]
    assert image.size == (800, 500)
    assert 0.03 < _non_white_share(image) < 0.9


def test_the_cjk_font_is_the_bundled_noto_sans_cjk():
    font = charts.cjk_font()
    assert font.get_file().endswith("mplfonts/fonts/NotoSansCJKsc-Regular.otf")
    assert "CJK" in font_manager.get_font(font.get_file()).family_name


def test_chinese_text_really_draws_glyphs():
    """The same title drawn with the CJK font covers more pixels than empty boxes would (tofu check)."""
    with_text = _non_white_share(_image(charts.bars("销售业绩排名前五的客户", [])))
    without = _non_white_share(_image(charts.bars("", [])))
    assert with_text > without


def test_a_pie_folds_small_slices_into_other():
    parts = [(f"地区{i}", 10 - i) for i in range(10)]
    assert _image(charts.pie("分布", parts, other="其他", top=3)).size == (800, 500)
    assert _image(charts.pie("空", [])).size == (800, 500)
