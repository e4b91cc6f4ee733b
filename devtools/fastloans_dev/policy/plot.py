"""The simulation chart: score histograms and approval rates of both policies."""

from __future__ import annotations

import os

from fastloans_dev.policy.replay import ReplayReport


def write_simulation_chart(report: ReplayReport, path: str | os.PathLike[str]) -> None:
    """Draw the report's score histograms and approval rates into a PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    histogram, rates = figure.subplots(1, 2, width_ratios=[3, 1])
    series = (
        ("active", report.active, report.active_tally, "tab:blue"),
        ("candidate", report.candidate, report.candidate_tally, "tab:orange"),
    )
    for (role, policy, tally, colour), style in zip(series, ("-", "--"), strict=True):
        scores = sorted(tally.scores)
        histogram.step(
            scores,
            [tally.scores[value] for value in scores],
            where="mid",
            color=colour,
            linestyle=style,
            linewidth=2.5 if style == "-" else 1.5,
            label=f"{role}: {policy.name} {policy.version} ({policy.content_hash[:8]})",
        )
    histogram.set_xlabel("risk score")
    histogram.set_ylabel("applications")
    histogram.set_title(f"Risk scores of {report.count} applications")
    histogram.legend()
    labels, values = [], []
    for role, _, tally, _ in series:
        rate = tally.approval_rate()
        labels.append(role)
        values.append(float(rate) * 100 if rate is not None else 0.0)  # float only for drawing
    bars = rates.bar(labels, values, color=[colour for *_, colour in series])
    rates.bar_label(bars, fmt="%.1f%%")
    rates.set_ylim(0, 100)
    rates.set_ylabel("approval rate (%)")
    rates.set_title("Approval rate")
    figure.savefig(path, format="png", dpi=100, metadata={"Software": None})
