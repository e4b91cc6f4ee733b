"""The benchmark's verdicts: each headline figure against its target, and by how much it is missed."""

from __future__ import annotations

from bench.report import TARGETS, markdown, verdicts


def test_met_missed_and_unmeasured() -> None:
    results = {
        "sustained_decisions_per_s": 750,
        "decision_p99_ms_at_500": 120.0,
        "post_p99_ms_at_500": 50.0,
        "lost": 0,
        "duplicates": 2,
    }
    checked = verdicts(results)
    assert set(checked) == set(TARGETS)
    assert checked["sustained_decisions_per_s"] == {
        **checked["sustained_decisions_per_s"],
        "met": False,
        "miss": "25% short",
    }
    assert checked["decision_p99_ms_at_500"]["met"] is True and checked["decision_p99_ms_at_500"]["miss"] == ""
    assert checked["post_p99_ms_at_500"]["miss"] == "100% over"
    assert checked["lost"]["met"] is True
    assert checked["duplicates"] == {**checked["duplicates"], "met": False, "miss": "2 over"}
    assert checked["get_rps"]["miss"] == "not measured"


def test_markdown_names_every_target_and_phase() -> None:
    figures = {"sustained_decisions_per_s": 1200, "lost": 0, "duplicates": 0}
    results = {
        **figures,
        "date": "2026-11-25",
        "commit": "abc1234",
        "quick": False,
        "targets": verdicts(figures),
        "machine": {"cpus": 2, "load_before": 0.1},
        "generator_ceiling_rps": 30000.0,
        "stack": {"reused": False, "durable": True, "web_concurrency": 1},
        "phases": [
            {
                "name": "post@500",
                "mode": "open",
                "sent": 30000,
                "ok": 30000,
                "achieved_rps": 500.0,
                "latency_ms": {"p50": 2.0, "p99": 9.0, "p99.9": 20.0},
                "decision_ms": {"p50": 25.0, "p99": 90.0},
                "backlog": {"end": 0, "decided_per_s": 500.0},
            }
        ],
        "usage": {
            "gateway": {
                "cpu_seconds": 30.0,
                "cpu_percent_avg": 50.0,
                "peak_rss_mb": 90.0,
                "peak_process_rss_mb": 90.0,
                "processes_max": 1,
            }
        },
    }
    text = markdown(results)
    for label, _, _ in TARGETS.values():
        assert label in text
    assert "| post@500 | open | 30,000 | 30,000 | 500.0 |" in text
    assert "| Sustained decisions/s (flat lag) | 1,200 | 1,000 | yes |" in text


def test_markdown_lists_unanswered_and_retried_requests_by_cause_only_where_there_were_some() -> None:
    phase = {"name": "quiet", "mode": "open", "sent": 1, "ok": 1, "achieved_rps": 1.0, "latency_ms": {}}
    results = {
        "date": "2026-12-03",
        "commit": "abc1234",
        "targets": {},
        "machine": {"cpus": 2, "load_before": 0.1},
        "generator_ceiling_rps": 30000.0,
        "stack": {"reused": False, "durable": True, "web_concurrency": 1},
        "phases": [
            phase,
            {
                **phase,
                "name": "busy",
                "no_answer_causes": {"GaveUpWaiting": 3},
                "retried": {"ConnectionResetError (reused, idle < 6 s)": 1200},
            },
        ],
        "usage": {},
    }
    text = markdown(results)
    assert "| busy | GaveUpWaiting: 3 | ConnectionResetError (reused, idle < 6 s): 1,200 |" in text
    assert "| quiet |" in text and "| quiet | none" not in text
