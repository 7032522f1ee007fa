"""A tiny dependency-free PNG bar-chart writer (zlib + struct only): grouped bars with target lines.

    python3 tools/png_chart.py figures.json out.png      # or "-" to read the JSON from stdin

The JSON holds one or more panels, drawn one under the other:

    {"title": "...",
     "panels": [{"title": "...",
                 "series": ["1 var", "100 vars", "1000 vars"],        # one colour each
                 "groups": [{"label": "get_variable", "values": [1.2, 1.3, null]}, ...],
                 "targets": [{"value": 1.5, "label": "target <= 1.5"}],
                 "height": 330}]}                                   # optional, pixels

`values[i]` belongs to `series[i]`; `null` leaves a gap. A group label may hold "\\n" for a
second line. Text is drawn with a built-in 5x7 bitmap font (upper case, digits and a little
punctuation; other characters are drawn as "?").
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib

# 5x7 glyphs: seven rows, two hex digits each, bit 4 is the leftmost pixel.
FONT_ROWS = {
    "0": "0E11131519110E",
    "1": "040C040404040E",
    "2": "0E11010204081F",
    "3": "1F02040201110E",
    "4": "02060A121F0202",
    "5": "1F101E0101110E",
    "6": "0608101E11110E",
    "7": "1F010204080808",
    "8": "0E11110E11110E",
    "9": "0E11110F01020C",
    "A": "0E1111111F1111",
    "B": "1E11111E11111E",
    "C": "0E11101010110E",
    "D": "1C12111111121C",
    "E": "1F10101E10101F",
    "F": "1F10101E101010",
    "G": "0E11101711110F",
    "H": "1111111F111111",
    "I": "0E04040404040E",
    "J": "0702020202120C",
    "K": "11121418141211",
    "L": "1010101010101F",
    "M": "111B1515111111",
    "N": "11111915131111",
    "O": "0E11111111110E",
    "P": "1E11111E101010",
    "Q": "0E11111115120D",
    "R": "1E11111E141211",
    "S": "0F10100E01011E",
    "T": "1F040404040404",
    "U": "1111111111110E",
    "V": "11111111110A04",
    "W": "1111111515150A",
    "X": "11110A040A1111",
    "Y": "1111110A040404",
    "Z": "1F01020408101F",
    " ": "00000000000000",
    ".": "00000000000C0C",
    ",": "00000000000C04",
    ":": "000C0C000C0C00",
    "/": "00010204081000",
    "(": "02040808080402",
    ")": "08040202020408",
    "-": "0000001F000000",
    "_": "0000000000001F",
    "<": "02040810080402",
    ">": "08040201020408",
    "=": "00001F001F0000",
    "%": "18190204081303",
    "*": "0004150E150400",
    "+": "0004041F040400",
    "?": "0E110102040004",
    "[": "0E08080808080E",
    "]": "0E02020202020E",
    "#": "0A0A1F0A1F0A0A",
    "'": "04040800000000",
}
GLYPHS = {ch: [int(rows[i : i + 2], 16) for i in range(0, 14, 2)] for ch, rows in FONT_ROWS.items()}

WHITE, BLACK, GREY, LIGHT, RED = (255, 255, 255), (30, 30, 30), (120, 120, 120), (225, 225, 225), (200, 30, 30)
SERIES_COLOURS = [(66, 133, 244), (52, 168, 83), (251, 188, 5), (171, 71, 188), (0, 172, 193)]

WIDTH, PANEL_HEIGHT, TITLE_HEIGHT = 1100, 330, 50
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 60, 20, 46, 44


class Canvas:
    """An RGB raster with the few drawing operations a bar chart needs."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.pixels = bytearray(WHITE * (width * height))

    def fill(self, x0: int, y0: int, x1: int, y1: int, colour: tuple) -> None:
        """Fills the rectangle [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        if x0 >= x1:
            return
        row = bytes(colour) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def hline(self, x0: int, x1: int, y: int, colour: tuple, dash: int = 0) -> None:
        """A one-pixel horizontal line, dashed when `dash` > 0."""
        if not dash:
            self.fill(x0, y, x1, y + 1, colour)
            return
        for x in range(x0, x1, 2 * dash):
            self.fill(x, y, min(x + dash, x1), y + 1, colour)

    def text(self, x: int, y: int, text: str, colour: tuple = BLACK, scale: int = 1) -> None:
        """Draws `text` with its top-left corner at (x, y)."""
        for ch in text.upper():
            rows = GLYPHS.get(ch, GLYPHS["?"])
            for dy, bits in enumerate(rows):
                for dx in range(5):
                    if bits & (0x10 >> dx):
                        self.fill(x + dx * scale, y + dy * scale, x + (dx + 1) * scale, y + (dy + 1) * scale, colour)
            x += 6 * scale

    def png(self) -> bytes:
        """The canvas encoded as a PNG (8-bit RGB, filter 0 on every row)."""
        stride = self.width * 3
        raw = b"".join(b"\x00" + self.pixels[y * stride : (y + 1) * stride] for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def text_width(text: str, scale: int = 1) -> int:
    return 6 * scale * len(text)


def nice_step(span: float) -> float:
    """A 1/2/5 x 10^k grid step giving about five lines over `span`."""
    raw = span / 5 or 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def format_value(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def draw_panel(canvas: Canvas, top: int, panel: dict, height: int = PANEL_HEIGHT) -> None:
    """Draws one panel (title, axes, grid, bars, targets, legend) in the band starting at `top`."""
    series, groups, targets = panel.get("series", []), panel.get("groups", []), panel.get("targets", [])
    canvas.text(MARGIN_LEFT, top + 8, panel.get("title", ""), BLACK, 2)
    plot_left, plot_right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    plot_top, plot_bottom = top + MARGIN_TOP, top + height - MARGIN_BOTTOM

    legend_x = plot_right
    for index in reversed(range(len(series))):
        legend_x -= text_width(series[index]) + 20
        canvas.fill(legend_x, top + 30, legend_x + 10, top + 38, SERIES_COLOURS[index % len(SERIES_COLOURS)])
        canvas.text(legend_x + 13, top + 31, series[index], BLACK)

    values = [v for g in groups for v in g.get("values", []) if v is not None]
    top_value = max(values + [t["value"] for t in targets] + [1.0]) * 1.15
    step = nice_step(top_value)

    def y_of(value: float) -> int:
        return plot_bottom - int(round((plot_bottom - plot_top) * value / top_value))

    grid = 0.0
    while grid <= top_value:
        y = y_of(grid)
        canvas.hline(plot_left, plot_right, y, LIGHT)
        label = format_value(grid)
        canvas.text(plot_left - text_width(label) - 6, y - 3, label, GREY)
        grid += step
    canvas.fill(plot_left, plot_top, plot_left + 1, plot_bottom + 1, GREY)
    canvas.hline(plot_left, plot_right, plot_bottom, GREY)

    if groups:
        group_width = (plot_right - plot_left) / len(groups)
        bar_width = max(2, min(90, int(group_width * 0.8 / max(1, len(series)))))
        for g_index, group in enumerate(groups):
            left = plot_left + (g_index + 0.5) * group_width - bar_width * len(series) / 2
            for s_index, value in enumerate(group.get("values", [])):
                if value is None:
                    continue
                x = int(left + s_index * bar_width)
                canvas.fill(x, y_of(value), x + bar_width - 1, plot_bottom, SERIES_COLOURS[s_index % len(SERIES_COLOURS)])
                label = format_value(value)
                if text_width(label) <= bar_width + 4:
                    canvas.text(x + (bar_width - text_width(label)) // 2, y_of(value) - 9, label, BLACK)
            centre = plot_left + (g_index + 0.5) * group_width
            for line_no, line in enumerate(str(group.get("label", "")).split("\n")):
                canvas.text(int(centre - text_width(line) / 2), plot_bottom + 6 + 10 * line_no, line, BLACK)

    for target in targets:
        y = y_of(target["value"])
        canvas.hline(plot_left, plot_right, y, RED, dash=6)
        label = target.get("label", "")
        canvas.text(plot_right - text_width(label) - 2, y - 10, label, RED)


def render(figures: dict) -> bytes:
    """The PNG bytes of the chart described by `figures` (see the module docstring)."""
    panels = figures.get("panels", [])
    heights = [int(panel.get("height", PANEL_HEIGHT)) for panel in panels]
    canvas = Canvas(WIDTH, TITLE_HEIGHT + sum(heights))
    canvas.text(MARGIN_LEFT, 12, figures.get("title", ""), BLACK, 2)
    top = TITLE_HEIGHT
    for panel, height in zip(panels, heights):
        draw_panel(canvas, top, panel, height)
        top += height
    return canvas.png()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: png_chart.py FIGURES.json|- OUT.png", file=sys.stderr)
        return 2
    source = sys.stdin if argv[1] == "-" else open(argv[1], encoding="utf-8")
    with source:
        figures = json.load(source)
    with open(argv[2], "wb") as out:
        out.write(render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
