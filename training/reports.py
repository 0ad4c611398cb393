"""Reports of an evaluation: the one markdown table, the verdict (which of the models that
were run each neural model beats, metric by metric), the JSON written next to them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

NEURAL = ("LSTM", "GRU")  # and every LSTM-BTYD* / GRU-BTYD* row (see is_neural)


CLASSIC = ("exp-decay", "arima", "BG/NBD", "Pareto/NBD")


# metric -> (key in the row, higher is better); |bias| is compared by its absolute value
VERDICT_METRICS: dict[str, tuple[str, bool]] = {
    "corr": ("corr", True),
    "abs_bias": ("bias_pct", False),
    "auc": ("auc", True),
    "brier": ("brier", False),
    "ece": ("ece", False),
}


def is_neural(name: str) -> bool:
    return name in NEURAL or name.split("+")[0].split("-")[0] in NEURAL


def verdict(rows: dict[str, dict[str, float]]) -> dict[str, dict[str, dict[str, list[str]]]]:
    """For each neural model and metric: which of the classic models THAT WERE RUN it beats,
    and which it does not (``{"LSTM-BTYD": {"corr": {"beats": [...], "not": [...]}}}``)."""
    refs = [k for k in CLASSIC if k in rows]
    out: dict[str, dict[str, dict[str, list[str]]]] = {}
    for name in rows:
        if not is_neural(name) or not refs:
            continue
        m = rows[name]
        per: dict[str, dict[str, list[str]]] = {}
        for metric, (key, higher) in VERDICT_METRICS.items():

            def value(row: dict[str, float], key: str = key) -> float:
                return abs(row[key]) if key == "bias_pct" else row[key]

            beats = [
                r for r in refs
                if (value(m) > value(rows[r]) if higher else value(m) < value(rows[r]))
            ]  # fmt: skip
            per[metric] = {"beats": beats, "not": [r for r in refs if r not in beats]}
        out[name] = per
    return out


def verdict_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, per in report.get("verdict", {}).items():
        parts = []
        for metric, v in per.items():
            text = f"{metric}: beats {', '.join(v['beats']) or 'none'}"
            if v["not"]:
                text += f" (not {', '.join(v['not'])})"
            parts.append(text)
        lines.append(f"{name} vs the classic models run: " + "; ".join(parts))
    return lines


def markdown_table(report: dict[str, Any]) -> str:
    lines = [
        "| model | corr | holdout total (bias) | AUC | Brier | ECE | C-index |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in report["models"].items():
        lines.append(
            f"| {name} | {m['corr']:.3f} | {m['total']:,.0f} ({m['bias_pct']:+.1f}%) | "
            f"{m['auc']:.3f} | {m['brier']:.3f} | {m['ece']:.3f} | {m['c_index']:.3f} |"
        )
    lines.append(f"\nactual holdout total: {report['actual_holdout_total']:,.0f}")
    if "bgnbd_matches_fhl" in report:
        params = report["info"].get("BG/NBD", {})
        lines.append(
            f"BG/NBD parameters {params}: "
            + ("match" if report["bgnbd_matches_fhl"] else "DO NOT match")
            + " FHL 2005 (r=0.243, alpha=4.414, a=0.793, b=2.426)"
        )
    lines.extend(verdict_lines(report))
    if "alerts" in report:
        lines.append(
            alerts_table(
                report["alerts"],
                "dormancy alerts (P(active in the holdout) < theta) vs no event in the holdout",
            )
        )
    if "alerts_vs_truth" in report:
        lines.append(
            alerts_table(
                report["alerts_vs_truth"],
                "dormancy alerts vs the simulator's truth (churned for good before the "
                f"end of the holdout; {report['churned_share']:.1%} of users, "
                f"{report['churned_before_cut_share']:.1%} already before the cut)",
            )
        )
    if "cv" in report:
        lines.append(folds_table(report["cv"]))
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2, default=float) + "\n")


def alerts_table(alerts: dict[str, dict[str, dict[str, float]]], title: str) -> str:
    """One row per model and theta: precision, recall, share flagged."""
    lines = [
        f"\n{title}",
        "",
        "| model | theta | precision | recall | flagged |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, per in alerts.items():
        for theta, m in per.items():
            lines.append(
                f"| {name} | {theta} | {m['precision']:.3f} | {m['recall']:.3f} | "
                f"{m['flagged']:.3f} |"
            )
    return "\n".join(lines)


def iso_time(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()


def folds_table(cv: dict[str, Any]) -> str:
    lines = [
        "\nrolling-origin folds",
        "",
        "| fold | cut | model | corr | bias | AUC | Brier | ECE | C-index |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [(str(i + 1), f["cut"][:10], f["models"]) for i, f in enumerate(cv["folds"])]
    rows.append(("mean", "", cv["mean"]))
    for fold, cut, models in rows:
        for name, m in models.items():
            lines.append(
                f"| {fold} | {cut} | {name} | {m['corr']:.3f} | {m['bias_pct']:+.1f}% | "
                f"{m['auc']:.3f} | {m['brier']:.3f} | {m['ece']:.3f} | {m['c_index']:.3f} |"
            )
    if cv["alerts_mean"]:
        lines.append(alerts_table(cv["alerts_mean"], "dormancy alerts, mean over the folds"))
    return "\n".join(lines)
