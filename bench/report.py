"""The benchmark's outputs: JSON (dated and latest), a Markdown table and a latency-against-load plot."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson

from bench import timeline

# headline key -> (label, target, "min" when higher is better, "max" when lower is better)
TARGETS: dict[str, tuple[str, float, str]] = {
    "sustained_decisions_per_s": ("Sustained decisions/s (flat lag)", 1000, "min"),
    "sustained_within_slo_per_s": (
        "Sustained decisions/s within the SLO (POST p99 ≤ 50 ms, decision p99 ≤ 500 ms)",
        1000,
        "min",
    ),
    "hold_seconds_over_250ms_p99": ("Seconds of the hold with POST p99 > 250 ms", 0, "max"),
    "decision_p50_ms_at_500": ("Submission→decision p50 at 500/s (ms)", 30, "max"),
    "decision_p99_ms_at_500": ("Submission→decision p99 at 500/s (ms)", 150, "max"),
    "post_p99_ms_at_500": ("POST accept p99 at 500/s (ms)", 25, "max"),
    "get_rps": ("GET by id throughput (req/s)", 3000, "min"),
    "get_p99_ms": ("GET by id p99 at the target rate (ms)", 20, "max"),
    "post_to_noop_ratio": ("POST / no-op throughput", 0.40, "min"),
    "max_rss_mb": ("Largest service process RSS (MB)", 250, "max"),
    "overload_failed": ("Overload: answers neither 202 nor 503", 0, "max"),
    "lost": ("Lost applications", 0, "max"),
    "duplicates": ("Duplicate decisions", 0, "max"),
}


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each headline figure against its target: met or not, and by how much it is missed."""
    out = {}
    for key, (label, target, sense) in TARGETS.items():
        value = results.get(key)
        if value is None:
            out[key] = {"label": label, "target": target, "value": None, "met": False, "miss": "not measured"}
            continue
        met = value >= target if sense == "min" else value <= target
        if met:
            miss = ""
        elif target == 0:
            miss = f"{value} over"
        elif sense == "min":
            miss = f"{100 * (target - value) / target:.0f}% short"
        else:
            miss = f"{100 * (value - target) / target:.0f}% over"
        out[key] = {"label": label, "target": target, "value": value, "met": met, "miss": miss}
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _durability(durable: bool | None) -> str:
    return "as configured" if durable is None else ("on" if durable else "off")


def _causes(counts: dict[str, int] | None) -> str:
    return ", ".join(f"{name}: {count:,}" for name, count in sorted((counts or {}).items())) or "none"


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    lines = [
        f"# Benchmark {results['date']}{' (quick run)' if results.get('quick') else ''}",
        "",
        f"Commit `{results['commit']}`; {results['machine']['cpus']} CPUs; load average before the run "
        f"{results['machine']['load_before']}; stack "
        f"{'reused (make up)' if results['stack']['reused'] else 'started by the benchmark'}"
        f", PostgreSQL fsync {_durability(results['stack']['durable'])}, "
        f"gateway workers {results['stack']['web_concurrency'] or 'as configured'}; "
        f"generator ceiling {_fmt(results['generator_ceiling_rps'])} req/s.",
        "",
        "| Figure | Measured | Target | Met |",
        "| --- | ---: | ---: | --- |",
    ]
    for item in results["targets"].values():
        met = "yes" if item["met"] else f"no ({item['miss']})"
        lines.append(f"| {item['label']} | {_fmt(item['value'])} | {_fmt(item['target'])} | {met} |")
    lines += [
        "",
        "## Load phases",
        "",
        "| Phase | Mode | Sent | OK | req/s | p50 ms | p99 ms | p99.9 ms | decision p50 ms | decision p99 ms |"
        " backlog end | decided/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for phase in results["phases"]:
        lat, dec, backlog = phase["latency_ms"], phase.get("decision_ms") or {}, phase.get("backlog") or {}
        lines.append(
            f"| {phase['name']} | {phase['mode']} | {phase['sent']:,} | {phase['ok']:,} | "
            f"{_fmt(phase['achieved_rps'])} | {_fmt(lat.get('p50'))} | {_fmt(lat.get('p99'))} | "
            f"{_fmt(lat.get('p99.9'))} | {_fmt(dec.get('p50'))} | {_fmt(dec.get('p99'))} | "
            f"{_fmt(backlog.get('end'))} | {_fmt(backlog.get('decided_per_s'))} |"
        )
    unanswered = [p for p in results["phases"] if p.get("no_answer_causes") or p.get("retried")]
    if unanswered:
        lines += [
            "",
            "## Requests without an answer, and requests sent again (by cause; a retry is one request sent again on a "
            "new connection after no answer on a reused one)",
            "",
            "| Phase | No answer | Sent again, then answered or not |",
            "| --- | --- | --- |",
        ]
        for phase in unanswered:
            lines.append(
                f"| {phase['name']} | {_causes(phase.get('no_answer_causes'))} | {_causes(phase.get('retried'))} |"
            )
    held = (results.get("sustained") or {}).get("held") or {}
    if held.get("worst_seconds"):
        lines += [
            "",
            f"## The hold at {held['rate']}/s: its five slowest seconds (latest-hold.png plots every second)",
            "",
            "| Second | Requests | p50 ms | p99 ms | max ms | checkpoints | autovacuum | WAL MB | loop lag ms |"
            " in flight | backlog |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in held["worst_seconds"]:
            lines.append(
                f"| {row['second']} | {row['requests']} | {_fmt(row['p50_ms'])} | {_fmt(row['p99_ms'])} | "
                f"{_fmt(row['max_ms'])} | {_fmt(row.get('checkpoints'))} | {_fmt(row.get('autovacuum'))} | "
                f"{_fmt((row.get('wal_bytes') or 0) / 2**20)} | {_fmt(row.get('loop_lag_max_ms'))} | "
                f"{_fmt(row.get('in_flight'))} | {_fmt(row.get('backlog'))} |"
            )
    lines += [
        "",
        "## Processes",
        "",
        "| Component | CPU s | CPU % avg | Peak RSS MB (tree) | Largest process MB | Processes |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, usage in sorted(results["usage"].items()):
        lines.append(
            f"| {name} | {_fmt(usage['cpu_seconds'])} | {_fmt(usage['cpu_percent_avg'])} | "
            f"{_fmt(usage['peak_rss_mb'])} | {_fmt(usage['peak_process_rss_mb'])} | "
            f"{usage['processes_max']} |"
        )
    cost = results.get("counteroffer")
    if cost:
        lines += [
            "",
            "## The counteroffer in the approval service (CPU time, median of runs; `python -m bench.counteroffer`)",
            "",
            f"{_fmt(cost['counteroffer_us_per_decision'])} µs per decision "
            f"({_fmt(cost['counteroffer_us_per_adverse_decision'])} µs per adverse one, "
            f"{cost['adverse']:,} of {cost['decisions']:,}) of {_fmt(cost['approval_us_per_decision'])} µs the "
            f"approval service spends per decision: {100 * cost['counteroffer_share_of_approval']:.0f}%.",
        ]
    if results.get("profiles"):
        lines += ["", "## Where the time goes (py-spy: the functions most often on top of the stack)", ""]
        for name, profile in results["profiles"].items():
            top = ", ".join(f"{frame} {pct}%" for frame, pct in profile.get("self_percent", [])[:6])
            lines.append(f"- **{name}** ({profile.get('samples', 0)} samples): {top}")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """POST accept and submission-to-decision latency against the offered rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fixed = sorted((p for p in results["phases"] if p["name"].startswith("post@")), key=lambda p: p["target_rate"])
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for key, style in (("p50", "o-"), ("p99", "s-"), ("p99.9", "^-")):
        points = [(p["target_rate"], p["latency_ms"][key]) for p in fixed if p["latency_ms"].get(key)]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=f"POST accept {key}")
    for key, style in (("p50", "o--"), ("p99", "s--")):
        points = [(p["target_rate"], p["decision_ms"][key]) for p in fixed if (p.get("decision_ms") or {}).get(key)]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=f"submission→decision {key}")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (applications per second, open loop)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(f"Fast Loans latency against load ({results['date']}{', quick' if results.get('quick') else ''})")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(results: dict[str, Any], folder: Path) -> Path:
    """Write `<date>.json` and the `latest.{json,md,png}` copies; returns the dated file."""
    folder.mkdir(parents=True, exist_ok=True)
    dated = folder / f"{results['date']}.json"
    dated.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")
    shutil.copyfile(dated, folder / "latest.json")
    (folder / "latest.md").write_text(markdown(results))
    plot(results, folder / "latest.png")
    held = (results.get("sustained") or {}).get("held") or {}
    for phase in results.get("phases", []):
        if phase.get("timeline") and phase["name"] == f"sustain@{held.get('rate')}/s":
            timeline.plot(phase["timeline"], folder / "latest-hold.png", f"The hold at {held['rate']}/s, per second")
    return dated
