"""Image galleries (matplotlib, Agg): labeled image grids, Grad-CAM overlays, perturbed examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.report.plots import FIGURE_DPI, plt, save_figure

OK_COLOR = "#1a7f37"
BAD_COLOR = "#cf222e"


@dataclass
class Tile:
    """One image of a gallery with its caption; `ok` colours the caption (None: neutral)."""

    image: np.ndarray  # uint8 or float, [C,H,W] or [H,W]
    caption: str
    ok: bool | None = None
    heat: np.ndarray | None = None  # [H,W] in [0,1], drawn over the image


def to_display(image: np.ndarray, max_side: int | None = None) -> np.ndarray:
    """[C,H,W] or [H,W] (uint8 or float in [0,1]) -> [H,W] or [H,W,3] floats in [0,1], shrunk
    (antialiased, on 8-bit pixels) to at most `max_side` pixels a side when given."""
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))
    if max_side and max(a.shape[:2]) > max_side:
        from PIL import Image

        h, w = a.shape[:2]
        scale = max_side / max(h, w)
        u8 = a if a.dtype == np.uint8 else np.rint(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)
        a = np.asarray(Image.fromarray(np.ascontiguousarray(u8)).resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR,
            reducing_gap=None))
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return np.clip(a, 0.0, 1.0)


def image_grid(rows: Sequence[tuple[str, Sequence[Tile]]], path: Path, title: str,
               max_cols: int = 10, heat_label: str | None = None, alpha: float = 0.45,
               note: str | None = None, tile_in: float = 1.0) -> Path:
    """Save a grid: one labeled block of tiles per (row label, tiles), wrapped at max_cols.

    Drawn on one full-figure axes laid out in inches: dozens of small subplots would cost
    seconds in matplotlib, and the report must stay fast.
    """
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    blocks = [(label, list(tiles)) for label, tiles in rows]
    cols = max(1, min(max_cols, max((len(t) for _, t in blocks), default=1)))
    lines = [(label if i == 0 else "", tiles[i:i + cols])
             for label, tiles in blocks for i in range(0, max(len(tiles), 1), cols)]
    cap_lines = max((t.caption.count("\n") + 1 for _, ts in lines for t in ts), default=1)
    cap_h = 0.05 + 0.15 * cap_lines
    gap, left = 0.1, (0.36 if any(label for label, _ in lines) else 0.1)
    top, bottom = 0.45, (0.3 if note else 0.1)
    right = 0.95 if heat_label else 0.1
    width = left + cols * tile_in + (cols - 1) * gap + right
    height = top + len(lines) * (cap_h + tile_in + gap) + bottom
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.text(width / 2, 0.12, title, ha="center", va="top", fontsize=12)
    heat_used = False
    captions = []
    y = top
    for label, tiles in lines:
        y_img = y + cap_h
        if label:
            ax.text(left * 0.45, y_img + tile_in / 2, label, ha="center", va="center",
                    rotation=90, fontsize=10, color="#24292f")
        if not tiles:
            ax.text(left + tile_in / 2, y_img + tile_in / 2, "none", ha="center", va="center",
                    fontsize=9, color="#57606a")
        for c, tile in enumerate(tiles):
            x = left + c * (tile_in + gap)
            ext = (x, x + tile_in, y_img + tile_in, y_img)
            # Photos shrunk to the tile's pixels first: matplotlib's own antialiasing of
            # a 224-px image costs more than the rest of the figure.
            img = to_display(tile.image, round(tile_in * FIGURE_DPI))
            small = max(img.shape[:2]) < 48
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, extent=ext,
                      interpolation="nearest" if small else "antialiased")
            if tile.heat is not None:
                ax.imshow(tile.heat, cmap="jet", vmin=0, vmax=1, alpha=alpha, extent=ext,
                          interpolation="bilinear")
                heat_used = True
            color = "#24292f" if tile.ok is None else OK_COLOR if tile.ok else BAD_COLOR
            ax.add_patch(Rectangle((x, y_img), tile_in, tile_in, fill=False,
                                   edgecolor=color if tile.ok is not None else "#d0d7de",
                                   linewidth=2 if tile.ok is not None else 0.8))
            captions.append(ax.text(x + tile_in / 2, y_img - 0.03, tile.caption, ha="center",
                                    va="bottom", fontsize=8.5, color=color, linespacing=1.1))
        y += cap_h + tile_in + gap
    fit_captions(fig, captions, tile_in + 0.5 * gap)  # half the gap stays clear
    if note:
        ax.text(width / 2, height - 0.08, note, ha="center", va="bottom", fontsize=9,
                color="#57606a")
    if heat_used and heat_label:
        cax = fig.add_axes((1 - 0.55 / width, (bottom + 0.1) / height, 0.14 / width,
                            (height - top - bottom - 0.2) / height))
        sm = plt.cm.ScalarMappable(norm=Normalize(0, 1), cmap="jet")
        cbar = fig.colorbar(sm, cax=cax)
        cbar.set_label(heat_label, fontsize=8)
        cbar.ax.tick_params(labelsize=7)
    return save_figure(fig, path, tight=False)


def fit_captions(fig: plt.Figure, texts: list, max_width_in: float, min_size: float = 6.5
                 ) -> None:
    """Shrink each caption wider than its tile until it fits, so neighbours never overlap."""
    if not texts:
        return
    renderer = fig.canvas.get_renderer()
    for t in texts:
        width = t.get_window_extent(renderer).width / fig.dpi
        if width > max_width_in:
            t.set_fontsize(max(min_size, t.get_fontsize() * max_width_in / width * 0.97))


def short(name: str, width: int = 14) -> str:
    """A class name shortened to fit under a thumbnail."""
    return name if len(name) <= width else name[: width - 1] + "\u2026"
