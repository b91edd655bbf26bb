"""A laid-out scene as a PNG image, drawn with numpy alone: for when Graphviz is not installed.

A tiny rasteriser with three primitives: filled polygons (even-odd rule), anti-aliased thick
line segments (optionally dashed), and text in a built-in 5x7 bitmap font. Curves are cut into
short segments. The image is drawn at `scale` pixels per layout unit (2 by default, so the
5x7 glyphs come out 10x14) and encoded as an 8-bit RGB PNG with zlib.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from .layout import CHAR_W, LINE_H, SMALL_W
from .scene import Box, Cluster, Edge, Point, Scene, rounded_rect
from .svg import text_baseline

# ASCII 32..126, 9 rows of 5 pixels each (rows 0-6 above the baseline, 7-8 descenders); each
# row is one base-32 digit whose five bits are the pixels, left to right.
_FONT = (
    "000000000444440400AAA000000AAVAVAA004FKE5U400OP248J300CIK8LID00448000000248884200842224800"
    "04LEL4000044V4400000000C480000V0000000000CC0001248G000EHJLPHE004C4444E00EH1248V00V2421HE00"
    "26AIV2200VGU11HE0068GUHHE00V12488800EHHEHHE00EHHF12C000CC0CC0000CC0C4800248G8420000V0V0000"
    "842124800EH1240400EH1DLLE00EHHVHHH00UHHUHHU00EHGGGHE00SIHHHIS00VGGUGGV00VGGUGGG00EHGNHHF00"
    "HHHVHHH00E44444E0072222IC00HIKOKIH00GGGGGGV00HRLLHHH00HHPLJHH00EHHHHHE00UHHUGGG00EHHHLID00"
    "UHHUKIH00FGGE11U00V44444400HHHHHHE00HHHHHA400HHHLLLA00HHA4AHH00HHA444400V1248GV00E88888E00"
    "0G8421000E22222E004AH0000000000000V084200000000E1FHF00GGMPHHU0000EGGHE0011DJHHF0000EHVGE00"
    "698S8880000FHHHF1EGGMPHHH0040C444E002062222ICGGIKOKI00C44444E0000QLLHH0000MPHHH0000EHHHE00"
    "00UHHHUGG00FHHHF1100MPGGG0000EGE1U0088S88960000HHHJD0000HHHA40000HHLLA0000HA4AH0000HHHHF1E"
    "00V248V00244844200444444400844244800008L20000"
)
_UNKNOWN = "VHHHHHV00"           # a hollow box for characters outside ASCII


def glyph(ch: str) -> np.ndarray:
    """The 9x5 boolean bitmap of one character."""
    code = ord(ch) - 32
    rows = _FONT[9 * code:9 * code + 9] if 0 <= code < 95 else _UNKNOWN
    bits = [int(r, 32) for r in rows]
    return np.array([[(b >> (4 - k)) & 1 for k in range(5)] for b in bits], dtype=bool)


def hex_rgb(colour: str) -> np.ndarray:
    c = colour.lstrip("#")
    return np.array([int(c[i:i + 2], 16) for i in (0, 2, 4)], np.uint8)


class Canvas:
    """An 8-bit RGB image with the three primitives, in pixel coordinates."""

    def __init__(self, width: int, height: int):
        self.pixels = np.full((height, width, 3), 255, np.uint8)
        self._glyphs: dict[tuple[str, int], np.ndarray] = {}

    def _region(self, x0: float, y0: float, x1: float, y1: float
                ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """The pixel rows and columns a bounding box covers, with the centres of each as a
        column [n, 1] and a row [1, m] vector (broadcast against each other)."""
        h, w = self.pixels.shape[:2]
        i0, i1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, h)
        j0, j1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, w)
        if i0 >= i1 or j0 >= j1:
            return None
        ys = np.arange(i0, i1, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(j0, j1, dtype=np.float32)[None, :] + 0.5
        return slice(i0, i1), slice(j0, j1), xs, ys

    def _blend(self, rows: slice, cols: slice, alpha: np.ndarray, colour: str) -> None:
        a = alpha[..., None]
        mixed = self.pixels[rows, cols] * (1 - a) + hex_rgb(colour) * a
        self.pixels[rows, cols] = (mixed + 0.5).astype(np.uint8)

    def polygon(self, points: list[Point], colour: str) -> None:
        """Fill a convex polygon (every shape drawn is one): one span per pixel row."""
        px = np.array([p[0] for p in points], np.float32)
        py = np.array([p[1] for p in points], np.float32)
        region = self._region(px.min(), py.min(), px.max(), py.max())
        if region is None:
            return
        rows, cols, xs, ys = region
        y = ys
        x1, y1, x2, y2 = np.roll(px, 1), np.roll(py, 1), px, py
        flat = y1 == y2
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(flat, np.nan, (y - y1) / np.where(flat, 1, y2 - y1))
        hit = (t >= 0) & (t <= 1)
        at = np.where(hit, x1 + t * (x2 - x1), np.nan)
        if not hit.any():
            return
        with np.errstate(all="ignore"):
            lo, hi = np.nanmin(np.where(hit, at, np.inf), axis=1), np.nanmax(
                np.where(hit, at, -np.inf), axis=1)
        rgb, j0 = hex_rgb(colour), cols.start
        first = np.ceil(lo - 0.5 - j0).clip(0, xs.shape[1]).astype(int)   # centre >= lo
        last = np.ceil(hi - 0.5 - j0).clip(0, xs.shape[1]).astype(int)    # centre < hi
        change = np.flatnonzero((np.diff(first) != 0) | (np.diff(last) != 0)) + 1
        for lo_row, hi_row in zip([0, *change], [*change, len(first)]):   # runs of equal spans
            a, b = first[lo_row], last[lo_row]
            if a < b:
                self.pixels[rows.start + lo_row:rows.start + hi_row, j0 + a:j0 + b] = rgb

    def line(self, p: Point, q: Point, width: float, colour: str,
             dash: tuple[float, float] | None = None, phase: float = 0.0) -> float:
        """An anti-aliased segment; returns the dash phase at its end (for a polyline)."""
        (x1, y1), (x2, y2) = p, q
        r = width / 2 + 1
        length = float(np.hypot(x2 - x1, y2 - y1))
        region = self._region(min(x1, x2) - r, min(y1, y2) - r, max(x1, x2) + r, max(y1, y2) + r)
        if region is None or length < 1e-6:
            return phase + length
        rows, cols, xs, ys = region
        ux, uy = (x2 - x1) / length, (y2 - y1) / length
        t = np.clip((xs - x1) * ux + (ys - y1) * uy, 0, length)
        dist = np.hypot(xs - (x1 + t * ux), ys - (y1 + t * uy))
        alpha = np.clip(width / 2 + 0.5 - dist, 0, 1)      # coverage: anti-aliased edges
        if dash is not None:
            alpha = alpha * (((t + phase) % (dash[0] + dash[1])) < dash[0])
        self._blend(rows, cols, alpha, colour)
        return phase + length

    def polyline(self, points: list[Point], width: float, colour: str,
                 dash: tuple[float, float] | None = None) -> None:
        phase = 0.0
        for p, q in zip(points, points[1:]):
            phase = self.line(p, q, width, colour, dash, phase)

    def text(self, x: float, baseline: float, s: str, colour: str, size: int, advance: float,
             bold: bool = False) -> None:
        """Text left-aligned at x, each glyph centred in its `advance`; a glyph pixel is a
        size x size square."""
        rgb = hex_rgb(colour)
        h, w = self.pixels.shape[:2]
        top = int(round(baseline)) - 7 * size
        for k, ch in enumerate(s):
            if ch == " ":
                continue
            key = (ch, size)
            if key not in self._glyphs:
                self._glyphs[key] = np.kron(glyph(ch), np.ones((size, size), bool))
            mask = self._glyphs[key]
            left = int(round(x + k * advance + (advance - 5 * size) / 2))
            for dx in ((0, 1) if bold else (0,)):
                i0, j0 = max(top, 0), max(left + dx, 0)
                i1, j1 = min(top + mask.shape[0], h), min(left + dx + mask.shape[1], w)
                if i0 < i1 and j0 < j1:
                    m = mask[i0 - top:i1 - top, j0 - left - dx:j1 - left - dx]
                    self.pixels[i0:i1, j0:j1][m] = rgb

    def png(self) -> bytes:
        return encode_png(self.pixels)


def encode_png(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of an [H, W, 3] uint8 array (filter 0 on every row)."""
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


MAX_PIXELS = 16_000_000


def scene_png(scene: Scene, scale: int | None = None) -> bytes:
    """The PNG of a scene that `layout` has placed; `scale` pixels per unit, by default 2
    (1 for pictures that would pass MAX_PIXELS at 2)."""
    if scale is None:
        scale = 2 if scene.width * scene.height * 4 <= MAX_PIXELS else 1
    canvas = Canvas(int(np.ceil(scene.width * scale)), int(np.ceil(scene.height * scale)))
    s = float(scale)

    def pts(points: list[Point]) -> list[Point]:
        return [(x * s, y * s) for x, y in points]
    for i, line in enumerate(scene.caption):
        y = scene.root.y - 8 - (len(scene.caption) - 1 - i) * LINE_H
        canvas.text(scene.root.x * s, y * s, line, scene.caption_color, scale, CHAR_W * s)
    for c in scene.root.walk()[1:]:
        _cluster(canvas, c, s, pts)
    for e in scene.edges:
        _edge(canvas, e, s, pts)
    for b in scene.boxes.values():
        _box(canvas, b, s, pts)
    for e in scene.edges:
        if e.label and e.points:
            x, y = e.label_at
            canvas.polygon(pts(rounded_rect(x, y - 10, len(e.label) * SMALL_W + 4, 13, 0)),
                           "#ffffff")
            canvas.text((x + 2) * s, y * s, e.label, e.color, scale, SMALL_W * s)
    return canvas.png()


def _cluster(canvas: Canvas, c: Cluster, s: float, pts) -> None:
    outline = pts(rounded_rect(c.x, c.y, c.w, c.h, 10))
    canvas.polygon(outline, c.fill)
    canvas.polyline(outline + outline[:1], 1.2 * s, c.stroke, (6 * s, 4 * s) if c.dash else None)
    for i, line in enumerate(c.label):
        canvas.text((c.x + 10) * s, (c.y + 16 + i * LINE_H) * s, line,
                    "#1a1a1a" if i == 0 else "#555555", int(s), (CHAR_W if i == 0 else SMALL_W) * s,
                    bold=i == 0)


def _edge(canvas: Canvas, e: Edge, s: float, pts) -> None:
    if len(e.points) < 2:
        return
    dash = {"dashed": (6 * s, 4 * s), "dotted": (2 * s, 3 * s)}.get(e.dash)
    width = (1.6 if "carry" in e.classes.split() else 1.1) * s
    canvas.polyline(pts(e.polyline()), width, e.color, dash)
    canvas.polygon(pts(e.arrowhead()), e.color)


def _box(canvas: Canvas, b: Box, s: float, pts) -> None:
    outline = pts(b.outline())
    if b.double:
        ring = pts(b.outline(3))
        canvas.polyline(ring + ring[:1], b.stroke_width * s, b.stroke)
    canvas.polygon(outline, b.fill)
    canvas.polyline(outline + outline[:1], b.stroke_width * s, b.stroke)
    for i, line in enumerate(b.lines):
        x = b.x + b.w / 2 - len(line) * CHAR_W / 2
        canvas.text(x * s, text_baseline(b, i) * s, line, "#1a1a1a", int(s), CHAR_W * s,
                    bold=i == 0)
    if b.note:
        canvas.text(b.note_at[0] * s, b.note_at[1] * s, b.note, "#555555", int(s), SMALL_W * s)


__all__ = ["scene_png", "encode_png", "Canvas", "glyph"]
