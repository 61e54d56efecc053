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
    assert image.size == (640, 480)
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
    assert _image(charts.pie("分布", parts, other="其他", top=3)).size == (640, 480)
    assert _image(charts.pie("空", [])).size == (640, 480)


PHONE_WIDTH = 360  # px: how wide Telegram shows a photo on a phone


@pytest.mark.parametrize("draw", [
    lambda: charts.pie("按地区的销售额", [("华南", 40), ("华东", 30), ("华北", 20), ("西南", 10), ("东北", 5)]),
    lambda: charts.bars("RFM 分群：现在（之前）", [("重要价值客户 (10)", 12), ("流失风险 (3)", 7), ("新客户 (0)", 3)]),
    lambda: charts.lines("每月销售额", [f"2026-{m:02d}" for m in range(1, 13)],
                         [("今年", [3.2e6 * m for m in range(12)]), ("去年", [2.9e6 * m for m in range(12)])],
                         y_format=lambda v: __import__("bot.formatting").formatting.short_amount(v, "zh_Hans"),
                         partial_last=True, note="虚线：2026-12 截至 2026-12-03，本月未结束"),
])
def test_every_text_of_a_chart_stays_readable_at_phone_width(draw, monkeypatch):
    drawn = []
    real = charts._png
    monkeypatch.setattr(charts, "_png", lambda figure: drawn.append(figure) or real(figure))
    draw()
    [figure] = drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    scale = PHONE_WIDTH / (figure.get_figwidth() * figure.dpi)
    texts = [t for t in figure.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_window_extent"))
             if t.get_text().strip() and t.get_visible()]
    assert texts
    small = [(t.get_text(), round(t.get_window_extent(renderer).height * scale, 1)) for t in texts
             if t.get_window_extent(renderer).height * scale < 9]
    assert small == []


def test_big_amounts_on_an_axis_read_as_people_say_them():
    from bot.formatting import short_amount

    assert [short_amount(v, "zh_Hans") for v in (950, 35_000, 1_200_000, 120_000_000, 0)] == \
        ["950", "3.5万", "120万", "1.2亿", "0"]
    assert [short_amount(v, "en") for v in (950, 35_000, 1_200_000, 120_000_000)] == ["950", "35k", "1.2M", "120M"]
