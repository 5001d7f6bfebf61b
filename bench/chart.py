"""A small line chart as SVG text, for a benchmark's curve in the README (no plotting library needed)."""

from __future__ import annotations

from html import escape

COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700")


def line_chart(xs: list[float], series: dict[str, list[float]], *, title: str, x_label: str, y_label: str,
               y_range: tuple[float, float] = (0.0, 1.0), guide: tuple[float, str] | None = None,
               width: int = 640, height: int = 360) -> str:
    """Each series a line over ``xs`` (values in ``y_range``, shown as percentages); a series whose name ends in
    "random" is dashed and shares the colour of the one before it; ``guide`` draws a labelled horizontal line."""
    left, right, top, bottom = 56, 190, 34, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range

    def px(x: float) -> float:
        return left + plot_w * (x - x0) / ((x1 - x0) or 1)

    def py(y: float) -> float:
        return top + plot_h * (1 - (y - y0) / ((y1 - y0) or 1))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{100 * y:.0f} %</text>')
    for x in xs:
        parts.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{x:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
                 f'{escape(y_label)}</text>')
    if guide is not None:
        value, label = guide
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(value):.1f}" y2="{py(value):.1f}" '
                     'stroke="#555" stroke-dasharray="2 3"/>')
        parts.append(f'<text x="{left + 4}" y="{py(value) - 5:.1f}" fill="#555">{escape(label)}</text>')
    solid = 0  # solid series drawn so far: each takes the next colour, and the dashed ones after it share it
    for n, (name, values) in enumerate(series.items()):
        dashed = name.endswith("random")
        if not dashed:
            colour, solid = COLOURS[solid % len(COLOURS)], solid + 1
        points = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in zip(xs, values))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"'
                     + (' stroke-dasharray="6 4"' if dashed else "") + "/>")
        ly = top + 14 + 18 * n
        parts.append(f'<line x1="{left + plot_w + 10}" x2="{left + plot_w + 34}" y1="{ly - 4}" y2="{ly - 4}" '
                     f'stroke="{colour}" stroke-width="2"' + (' stroke-dasharray="6 4"' if dashed else "") + "/>")
        parts.append(f'<text x="{left + plot_w + 40}" y="{ly}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
