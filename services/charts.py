"""Charts for digests and reports: matplotlib (Agg) PNGs sized for a phone screen, drawing Chinese with
Noto Sans CJK SC, a font that installs with the project (the mplfonts package) — nothing by hand.

Each function takes plain labelled numbers and returns PNG bytes; titles and labels come in already
translated (services never pick a language)."""

from __future__ import annotations

import importlib.util
import io
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager
from matplotlib.figure import Figure

# Labels are names and words people typed ("Cash $$ Store", "50%$ off"): never TeX-like mathematics.
matplotlib.rcParams["text.parse_math"] = False

# 640 × 480 px at 100 dpi: Telegram shows a photo about 360 px wide on a phone, so every text is drawn at
# least 17 px high here to stay ≥ 9 px there (tests/test_charts.py measures it).
WIDTH, HEIGHT, DPI = 6.4, 4.8, 100
TEXT, TITLE = 13, 15  # points
PALETTE = ["#2481cc", "#f39c12", "#27ae60", "#e74c3c", "#8e44ad", "#16a085", "#d35400", "#7f8c8d", "#c0392b",
           "#2c3e50"]
_lock = threading.Lock()  # matplotlib's font cache is not thread-safe


@lru_cache(maxsize=1)
def font_path() -> Path:
    """The bundled CJK font file (used by file, so a system font of the same name never stands in)."""
    spec = importlib.util.find_spec("mplfonts")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the mplfonts package (a CJK font for charts) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "fonts" / "NotoSansCJKsc-Regular.otf"


def cjk_font(size: float = TEXT) -> font_manager.FontProperties:
    return font_manager.FontProperties(fname=str(font_path()), size=size)


def _figure(title: str) -> tuple[Figure, object]:
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    axes = figure.add_subplot()
    axes.set_title(title, fontproperties=cjk_font(TITLE))
    return figure, axes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def _style(axes) -> None:
    for label in (*axes.get_xticklabels(), *axes.get_yticklabels()):
        label.set_fontproperties(cjk_font())
    axes.spines[["top", "right"]].set_visible(False)


def pie(title: str, parts: list[tuple[str, float]], *, other: str = "other", top: int = 7) -> bytes:
    """Shares of a whole; beyond the `top` largest, the rest is one slice called `other`."""
    parts = sorted(((label, value) for label, value in parts if value > 0), key=lambda p: -p[1])
    if len(parts) > top:
        parts = parts[:top] + [(other, sum(v for _, v in parts[top:]))]
    with _lock:
        figure, axes = _figure(title)
        if parts:
            _wedges, texts, autotexts = axes.pie([v for _, v in parts], labels=[p for p, _ in parts],
                                                 colors=PALETTE[:len(parts)], autopct="%1.0f%%", startangle=90,
                                                 counterclock=False, pctdistance=0.75)
            for text in (*texts, *autotexts):
                text.set_fontproperties(cjk_font())
            axes.axis("equal")
        return _png(figure)


def bars(title: str, bars_: list[tuple[str, float]], *, horizontal: bool = True, value_format: str = "{:,.0f}") -> bytes:
    with _lock:
        figure, axes = _figure(title)
        labels, values = [b[0] for b in bars_], [b[1] for b in bars_]
        if horizontal:
            positions = list(range(len(bars_)))[::-1]
            axes.barh(positions, values, color=PALETTE[0])
            axes.set_yticks(positions, labels)
            for y, value in zip(positions, values):
                axes.text(value, y, " " + value_format.format(value), va="center", fontproperties=cjk_font())
        else:
            axes.bar(range(len(bars_)), values, color=PALETTE[0])
            axes.set_xticks(range(len(bars_)), labels, rotation=30, ha="right")
        _style(axes)
        return _png(figure)


def lines(title: str, x_labels: list[str], series: list[tuple[str, list[float]]], *,
          y_format: Callable[[float], str] | None = None, partial_last: bool = False, note: str = "") -> bytes:
    """One line per series over the same x labels (e.g. months), with a legend. `y_format` writes the axis'
    numbers (万 / 亿, k / M — never 1e8); `partial_last`: the first series' last point is a period not over
    yet, drawn dashed and hollow so it does not read as a cliff; `note` is printed under the chart."""
    from matplotlib.ticker import FuncFormatter

    with _lock:
        figure, axes = _figure(title)
        for n, (name, values) in enumerate(series):
            color = PALETTE[n % len(PALETTE)]
            partial = partial_last and n == 0 and len(values) > 1  # the current series only
            whole = values[:-1] if partial else values
            axes.plot(range(len(whole)), whole, marker="o", color=color, label=name)
            if partial:
                axes.plot([len(values) - 2, len(values) - 1], values[-2:], linestyle="--", color=color)
                axes.plot([len(values) - 1], values[-1:], marker="o", markerfacecolor="white", color=color)
        step = max(1, -(-len(x_labels) // 6))  # at most 6 labels: they stay readable at phone width
        axes.set_xticks(range(0, len(x_labels), step), x_labels[::step], rotation=30, ha="right")
        if y_format is not None:
            axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: y_format(value)))
        if series:
            axes.legend(prop=cjk_font())
        axes.grid(axis="y", alpha=0.3)
        if note:
            axes.set_xlabel(note, fontproperties=cjk_font())
        _style(axes)
        return _png(figure)
