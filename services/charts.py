"""Charts for digests and reports: matplotlib (Agg) PNGs sized for a phone screen, drawing Chinese with
Noto Sans CJK SC, a font that installs with the project (the mplfonts package) — nothing by hand.

Each function takes plain labelled numbers and returns PNG bytes; titles and labels come in already
translated (services never pick a language)."""

from __future__ import annotations

import importlib.util
import io
import threading
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager
from matplotlib.figure import Figure

WIDTH, HEIGHT, DPI = 8.0, 5.0, 100  # 800 × 500 px: readable on a phone, small to send
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


def cjk_font(size: float = 11) -> font_manager.FontProperties:
    return font_manager.FontProperties(fname=str(font_path()), size=size)


def _figure(title: str) -> tuple[Figure, object]:
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    axes = figure.add_subplot()
    axes.set_title(title, fontproperties=cjk_font(16))
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
                axes.text(value, y, " " + value_format.format(value), va="center", fontproperties=cjk_font(10))
        else:
            axes.bar(range(len(bars_)), values, color=PALETTE[0])
            axes.set_xticks(range(len(bars_)), labels, rotation=30, ha="right")
        _style(axes)
        return _png(figure)


def lines(title: str, x_labels: list[str], series: list[tuple[str, list[float]]]) -> bytes:
    """One line per series over the same x labels (e.g. months), with a legend."""
    with _lock:
        figure, axes = _figure(title)
        for n, (name, values) in enumerate(series):
            axes.plot(range(len(values)), values, marker="o", color=PALETTE[n % len(PALETTE)], label=name)
        axes.set_xticks(range(len(x_labels)), x_labels, rotation=30, ha="right")
        if series:
            axes.legend(prop=cjk_font())
        axes.grid(axis="y", alpha=0.3)
        _style(axes)
        return _png(figure)
