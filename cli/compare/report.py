"""The files `chorus compare` leaves behind: a cost-versus-pass-rate plot (PNG)
and a self-contained HTML report that inlines it.

The HTML is what an engineer choosing models reads, so it carries more than
the console table: the recommendation and its rule, every variant's figures
with the 95% interval, pass rates per category, where failures come from
(per check kind), how each variant differs from the recommended one case by
case (with McNemar's exact test, so a two-case difference is not mistaken for
a real one), and every failing case with its check details. A report made on
simulated models says so in its title and in a banner.

matplotlib is the `compare` extra: imported here only, on first use, with the
Agg backend (no display, no GUI toolkit).
"""

from __future__ import annotations

import base64
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined

from cli.compare.report_template import REPORT_TEMPLATE
from core.evals.results import CaseScore, EvalReport, VariantSummary
from core.evals.stats import PairedComparison, paired_comparison

__all__ = ["ReportError", "ReportFiles", "plot_title", "render_html", "write_report"]

SIMULATED_NOTE = (
    "These figures come from the Chorus model simulator: its quality profiles "
    "(simulator/quality_models.yaml) decide how often each simulated model misclassifies a "
    "ticket or leaves out a fact, so they show how the comparison works, not how real models "
    "perform. Put real providers in chains/models.yaml to measure them."
)


LABEL_HANGS_ABOVE_PCT = 85.0
"""A point's label hangs below it from this pass rate up (the axes end at 102%)."""


class ReportError(RuntimeError):
    """The report could not be written; the message says why and what to do."""


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    plot: Path


def plot_title(report: EvalReport) -> str:
    title = f"Cost vs pass rate: {report.eval_set}"
    return f"{title} (simulated models)" if report.simulated else title


def write_report(report: EvalReport, scores: Sequence[CaseScore], out_dir: Path) -> ReportFiles:
    """Write `<eval set>.png` and `<eval set>.html` into `out_dir` (created if
    missing) and return their paths. Raises ReportError when matplotlib is
    missing or the directory cannot be written."""
    stem = _safe_stem(report.eval_set)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        plot = out_dir / f"{stem}.png"
        png = render_plot(report)
        plot.write_bytes(png)
        page = out_dir / f"{stem}.html"
        page.write_text(render_html(report, scores, png), encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write the report into {out_dir}: {exc}") from exc
    return ReportFiles(html=page, plot=plot)


def render_plot(report: EvalReport) -> bytes:
    """The cost-versus-pass-rate plot as PNG bytes: one point per variant at
    its cost per case and pass rate, the 95% interval as an error bar, the
    recommended variant marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError as exc:
        raise ReportError(
            "the report's plot needs matplotlib: pip install 'chorus[compare]'"
        ) from exc
    import io

    variants = [v for v in report.variants if v.cases > 0]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    try:
        ax.set_title(plot_title(report), fontsize=12)
        ax.set_xlabel("cost per case (USD)")
        ax.set_ylabel("pass rate (%), 95% interval")
        ax.grid(True, alpha=0.3)
        if not variants:
            ax.text(0.5, 0.5, "no case scored", ha="center", va="center", transform=ax.transAxes)
        for v in variants:
            recommended = v.variant == report.recommended
            y = 100 * v.pass_rate
            ax.errorbar(
                [v.cost_per_case_usd],
                [y],
                yerr=[[y - 100 * v.ci_low], [100 * v.ci_high - y]],
                fmt="*" if recommended else "o",
                markersize=16 if recommended else 9,
                color="#1a7f37" if recommended else "#0969da",
                ecolor="#8c959f",
                capsize=5,
                zorder=3,
            )
            label = f"{v.variant}\n{v.pass_rate:.0%}, {_usd(v.cost_per_case_usd)}/case"
            if recommended:
                label += "\n(recommended)"
            # Centred on its point, or hanging below it near the top, so a
            # label never runs into the title above the axes.
            ax.annotate(
                label,
                (v.cost_per_case_usd, y),
                textcoords="offset points",
                xytext=(10, 0),
                va="top" if y >= LABEL_HANGS_ABOVE_PCT else "center",
                fontsize=9,
                fontweight="bold" if recommended else "normal",
            )
        _scale_axes(ax, variants)
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def _scale_axes(ax: Any, variants: Sequence[VariantSummary]) -> None:
    costs = [v.cost_per_case_usd for v in variants]
    low = min((v.ci_low for v in variants), default=0.0)
    ax.set_ylim(max(0.0, math.floor(100 * low / 10) * 10 - 5), 102)
    positive = [c for c in costs if c > 0]
    if positive and len(positive) == len(costs) and max(positive) / min(positive) > 20:
        ax.set_xscale("log")
        ax.set_xlim(min(positive) / 2, max(positive) * 4)
    elif costs:
        ax.set_xlim(0, max(costs) * 1.6 or 1.0)


def render_html(report: EvalReport, scores: Sequence[CaseScore], png: bytes) -> str:
    """The self-contained HTML report (the plot inlined as base64)."""
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True)
    env.filters["pct"] = lambda x: f"{100 * x:.1f}%"
    env.filters["usd"] = _usd
    env.filters["secs"] = lambda x: f"{x:.2f} s"
    env.filters["p"] = lambda x: "< 0.001" if x < 0.001 else f"{x:.3f}"
    template = env.from_string(REPORT_TEMPLATE)
    variants = [v.variant for v in report.variants]
    categories = sorted({c for v in report.variants for c in v.by_category})
    return template.render(
        report=report,
        title=_title(report),
        simulated_note=SIMULATED_NOTE if report.simulated else None,
        plot_b64=base64.b64encode(png).decode("ascii"),
        variants=variants,
        categories=categories,
        failures_by_kind=_failures_by_kind(scores, variants),
        paired=_paired(scores, report),
        matrix=_matrix(scores, variants),
        failing=_failing(scores, variants),
        judge_cost=math.fsum(v.judge_cost_usd for v in report.variants),
    )


def _title(report: EvalReport) -> str:
    title = f"Comparison of {len(report.variants)} variants on {report.eval_set}"
    return f"{title} (simulated models)" if report.simulated else title


def _usd(x: float) -> str:
    return f"${x:.4f}" if x >= 0.01 else f"${x:.5f}"


def _failures_by_kind(
    scores: Sequence[CaseScore], variants: Sequence[str]
) -> list[tuple[str, dict[str, int]]]:
    """Failed checks per check kind and variant: where failures come from."""
    counts: dict[str, Counter[str]] = {v: Counter() for v in variants}
    for score in scores:
        if score.variant not in counts:
            continue
        # A run that did not complete fails its checks unscored: count the run, not them.
        unscored = [c for c in score.checks if c.kind == "completed" and not c.passed]
        for check in unscored or score.checks:
            if not check.passed:
                counts[score.variant][check.kind] += 1
    kinds = sorted({k for c in counts.values() for k in c})
    return [(kind, {v: counts[v][kind] for v in variants}) for kind in kinds]


def _paired(scores: Sequence[CaseScore], report: EvalReport) -> list[PairedComparison]:
    if report.recommended is None:
        return []
    return [
        paired_comparison(scores, report.recommended, v.variant)
        for v in report.variants
        if v.variant != report.recommended
    ]


def _matrix(
    scores: Sequence[CaseScore], variants: Sequence[str]
) -> list[tuple[str, str, list[bool | None], bool]]:
    """(case id, category, verdict per variant, variants disagree) per case,
    disagreements first: they are where the variants differ."""
    by_case: dict[str, dict[str, bool]] = {}
    category: dict[str, str] = {}
    for score in scores:
        by_case.setdefault(score.case_id, {})[score.variant] = score.passed
        category.setdefault(score.case_id, score.labels.get("category", ""))
    rows = []
    for case_id, verdicts in by_case.items():
        row = [verdicts.get(v) for v in variants]
        seen = {x for x in row if x is not None}
        rows.append((case_id, category[case_id], row, len(seen) > 1))
    return sorted(rows, key=lambda r: (not r[3], r[0]))


def _failing(scores: Sequence[CaseScore], variants: Sequence[str]) -> list[tuple[str, list[Any]]]:
    order = {v: i for i, v in enumerate(variants)}
    failing = sorted(
        (s for s in scores if not s.passed), key=lambda s: (order.get(s.variant, 99), s.case_id)
    )
    return [(v, [s for s in failing if s.variant == v]) for v in variants]


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "report"
    return stem[:100]
