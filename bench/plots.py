"""Pictures of the peer and scale benchmarks, written to bench/results/ (git-ignored).

PNG through matplotlib when it is importable (it is not one of Arbiter's dependencies: `pip install
matplotlib` into the environment that runs the bench); otherwise the same charts as dependency-free SVG.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COLOURS = {
    "direct": "#555555",
    "arbiter": "#1f6feb",
    "arbiter-noledger": "#7ab3ff",
    "litellm-proxy": "#d9480f",
    "litellm-router": "#f59f00",
}


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return None
    return pyplot


def _plain_ticks(*axes_list) -> None:
    """Log axes labelled 20, 50, 100 rather than 2x10^1 (and no crowded minor labels)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for axes in axes_list:
        for axis in (axes.xaxis, axes.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_formatter(ScalarFormatter())
                axis.set_minor_formatter(NullFormatter())


def _cdf(values: list[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    count = len(ordered)
    return ordered, [(index + 1) / count for index in range(count)]


def peer_plots(samples: dict[str, dict[str, list[float]]], saturations: dict[str, dict]) -> list[str]:
    """Latency CDFs at concurrency 1 and 16 (log time axis) and offered-vs-achieved throughput curves."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    pyplot = _matplotlib()
    files = []
    for level, title in (("c1", "concurrency 1"), ("c16", "concurrency 16"), ("escalated", "one escalation hop")):
        series = {name: by_level[level] for name, by_level in samples.items() if by_level.get(level)}
        if not series:
            continue
        name = f"peer-latency-{level}"
        if pyplot:
            figure, axes = pyplot.subplots(figsize=(8, 4.5))
            for system, values in series.items():
                xs, ys = _cdf(values)
                axes.plot(xs, ys, label=f"{system} (n={len(values)})", color=COLOURS.get(system))
            axes.set_xscale("log")
            axes.set_xlabel("latency, ms (log)")
            axes.set_ylabel("share of requests")
            axes.set_title(f"Latency distribution, {title}")
            axes.grid(True, which="both", alpha=0.3)
            axes.legend(loc="lower right", fontsize=8)
            _plain_ticks(axes)
            figure.tight_layout()
            figure.savefig(RESULTS / f"{name}.png", dpi=110)
            pyplot.close(figure)
            files.append(f"{name}.png")
        else:
            lines = {system: list(zip(*_cdf(values), strict=True)) for system, values in series.items()}
            _svg_chart(RESULTS / f"{name}.svg", f"Latency distribution, {title}", "latency, ms (log)",
                       "share of requests", lines, log_x=True)
            files.append(f"{name}.svg")
    curves = {
        system: [(step["offered_per_s"], step["achieved_per_s"], step["p99_ms"], step["passed"])
                 for step in sorted(result["steps"], key=lambda s: s["offered_per_s"])]
        for system, result in saturations.items()
    }
    if curves:
        name = "peer-throughput"
        if pyplot:
            figure, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.5))
            for system, points in curves.items():
                offered = [p[0] for p in points]
                left.plot(offered, [p[1] for p in points], marker="o", label=system, color=COLOURS.get(system))
                right.plot(offered, [p[2] for p in points], marker="o", label=system, color=COLOURS.get(system))
                failed = [p for p in points if not p[3]]
                right.scatter([p[0] for p in failed], [p[2] for p in failed], marker="x", color="black", zorder=3)
            left.set_xscale("log")
            left.set_yscale("log")
            left.set_xlabel("offered, requests/s (log)")
            left.set_ylabel("completed, requests/s (log)")
            left.set_title("Open-loop throughput")
            right.set_xscale("log")
            right.set_yscale("log")
            right.set_xlabel("offered, requests/s (log)")
            right.set_ylabel("p99 latency, ms (log)")
            right.set_title("p99 under load (x: step failed)")
            for axes in (left, right):
                axes.grid(True, which="both", alpha=0.3)
                axes.legend(fontsize=8)
            _plain_ticks(left, right)
            figure.tight_layout()
            figure.savefig(RESULTS / f"{name}.png", dpi=110)
            pyplot.close(figure)
            files.append(f"{name}.png")
        else:
            lines = {system: [(p[0], p[1]) for p in points] for system, points in curves.items()}
            _svg_chart(RESULTS / f"{name}.svg", "Open-loop throughput", "offered, requests/s (log)",
                       "completed, requests/s", lines, log_x=True)
            files.append(f"{name}.svg")
    return files


def scale_plot(pages: list[dict], goal_ms: float, jobs: int) -> list[str]:
    """p50 and p95 server time per page against the goal."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    pyplot = _matplotlib()
    if not pyplot:
        lines = {"p95": [(index + 1, page["p95_ms"]) for index, page in enumerate(pages)]}
        _svg_chart(RESULTS / "scale-pages.svg", f"Server time at {jobs:,} jobs (p95; goal {goal_ms:g} ms)", "page #",
                   "ms", lines, log_x=False)
        return ["scale-pages.svg"]
    figure, axes = pyplot.subplots(figsize=(9, 4.5))
    names = [page["page"] for page in pages]
    positions = range(len(pages))
    axes.barh([p + 0.2 for p in positions], [page["p95_ms"] for page in pages], height=0.4, label="p95",
              color="#1f6feb")
    axes.barh([p - 0.2 for p in positions], [page["p50_ms"] for page in pages], height=0.4, label="p50",
              color="#7ab3ff")
    axes.axvline(goal_ms, color="#d9480f", linestyle="--", label=f"goal {goal_ms:g} ms")
    axes.set_yticks(list(positions), names, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("server time, ms")
    axes.set_title(f"Server time at {jobs:,} jobs")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(RESULTS / "scale-pages.png", dpi=110)
    pyplot.close(figure)
    return ["scale-pages.png"]


def _svg_chart(path: Path, title: str, x_label: str, y_label: str, lines: dict[str, list[tuple[float, float]]],
               *, log_x: bool) -> None:
    """A plain line chart as SVG: enough to read the shape without any plotting library."""
    width, height, margin = 760, 420, 60
    points = [point for line in lines.values() for point in line if point[0] > 0 or not log_x]
    if not points:
        return

    def fx(value: float) -> float:
        return math.log10(max(value, 1e-9)) if log_x else value

    xs, ys = [fx(p[0]) for p in points], [p[1] for p in points]
    x_low, x_high = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_low, y_high = 0.0, max(ys) or 1.0

    def place(x: float, y: float) -> str:
        px = margin + (fx(x) - x_low) / (x_high - x_low) * (width - 2 * margin)
        py = height - margin - (y - y_low) / (y_high - y_low) * (height - 2 * margin)
        return f"{px:.1f},{py:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="15">{html.escape(title)}</text>',
        f'<line x1="{margin}" y1="{height - margin}" x2="{width - margin}" y2="{height - margin}" stroke="black"/>',
        f'<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{height - margin}" stroke="black"/>',
        f'<text x="{width / 2}" y="{height - 20}" text-anchor="middle">{html.escape(x_label)}</text>',
        f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">'
        f"{html.escape(y_label)}</text>",
        f'<text x="{margin}" y="{height - margin + 16}" text-anchor="middle">'
        f"{(10 ** x_low if log_x else x_low):.3g}</text>",
        f'<text x="{width - margin}" y="{height - margin + 16}" text-anchor="middle">'
        f"{(10 ** x_high if log_x else x_high):.3g}</text>",
        f'<text x="{margin - 6}" y="{margin + 4}" text-anchor="end">{y_high:.3g}</text>',
    ]
    for index, (name, line) in enumerate(lines.items()):
        colour = COLOURS.get(name, "#333333")
        drawn = " ".join(place(x, y) for x, y in line if x > 0 or not log_x)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{drawn}"/>')
        parts.append(f'<text x="{width - margin - 150}" y="{margin + 16 * index}" fill="{colour}">'
                     f"{html.escape(name)}</text>")
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")
