"""The report files: a PNG plot that is a real image, and a self-contained
HTML page with the figures, the recommendation, the simulated-models label
and every failing case, escaping what came from eval sets and model output."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import matplotlib.image
import pytest

from cli.compare.report import ReportFiles, plot_title, render_plot, write_report
from core.evals.results import CaseScore, CheckResult, EvalReport
from core.evals.stats import recommend, recommendation_rule, summarise

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def score(variant: str, case: str, passed: bool, cost: float, category: str) -> CaseScore:
    checks = [CheckResult(kind="completed", passed=True, detail="the run completed")]
    if not passed:
        checks.append(
            CheckResult(kind="contains", passed=False, detail="does not say '<b>30 days</b>'")
        )
    return CaseScore(
        case_id=case,
        variant=variant,
        run_id=f"{variant}-{case}",
        passed=passed,
        checks=checks,
        cost_usd=cost,
        latency_s=1.0 + len(case) / 10,
        labels={"category": category},
    )


def scores() -> list[CaseScore]:
    out: list[CaseScore] = []
    for i in range(20):
        category = "refund" if i % 2 else "shipping"
        out.append(score("single_strong", f"t{i:02d}", i != 3, 0.02, category))
        out.append(score("routed", f"t{i:02d}", i not in (3, 5), 0.006, category))
        out.append(score("cheap_only", f"t{i:02d}", i % 3 != 0, 0.001, category))
    return out


def report(*, simulated: bool = True, stopped: str | None = None) -> EvalReport:
    summaries = summarise(scores())
    return EvalReport(
        eval_set="support_tickets",
        variants=summaries,
        recommended=recommend(summaries),
        recommendation_rule=recommendation_rule(5.0),
        simulated=simulated,
        cases_scored=60,
        cases_total=60,
        stopped_reason=stopped,
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    # IHDR is the first chunk: width and height as big-endian 32-bit integers.
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture
def written(tmp_path: Path) -> tuple[EvalReport, ReportFiles]:
    the_report = report()
    return the_report, write_report(the_report, scores(), tmp_path / "out" / "nested")


def test_the_plot_is_a_png_image_of_a_useful_size(written: tuple[EvalReport, ReportFiles]) -> None:
    _, files = written
    assert files.plot.name == "support_tickets.png"
    width, height = png_size(files.plot.read_bytes())
    assert width >= 800 and height >= 500


def test_the_plot_shows_each_variant_where_its_figures_say() -> None:
    """matplotlib reads the PNG back: the three points' colours are there."""
    the_report = report()
    assert the_report.recommended == "routed"  # 90% at $0.006 beats 95% at $0.02 within 5 points
    pixels = matplotlib.image.imread(io.BytesIO(render_plot(the_report)))
    green = (abs(pixels[..., 0] - 0x1A / 255) < 0.05) & (abs(pixels[..., 1] - 0x7F / 255) < 0.05)
    blue = (abs(pixels[..., 0] - 0x09 / 255) < 0.05) & (abs(pixels[..., 2] - 0xDA / 255) < 0.05)
    assert green.sum() > 50  # the recommended variant's star
    assert blue.sum() > 100  # the two others


def test_the_html_is_self_contained_and_inlines_the_same_plot(
    written: tuple[EvalReport, ReportFiles],
) -> None:
    _, files = written
    page = files.html.read_text(encoding="utf-8")
    assert files.html.name == "support_tickets.html"
    inlined = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert inlined is not None
    assert base64.b64decode(inlined.group(1)) == files.plot.read_bytes()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from elsewhere


def test_the_html_carries_the_figures_and_the_recommendation(
    written: tuple[EvalReport, ReportFiles],
) -> None:
    the_report, files = written
    page = files.html.read_text(encoding="utf-8")
    assert "<title>Comparison of 3 variants on support_tickets (simulated models)</title>" in page
    assert "Simulated models." in page
    assert "Recommended: routed" in page
    routed = next(v for v in the_report.variants if v.variant == "routed")
    assert f"{100 * routed.ci_low:.1f}% &ndash; {100 * routed.ci_high:.1f}%" in page
    assert "90.0%" in page and "$0.00600" in page
    # Per category, and the case-by-case comparison with the recommended variant.
    assert "refund" in page and "shipping" in page
    assert "only routed passed" in page
    assert "McNemar p" in page


def test_failing_cases_are_listed_with_their_checks_escaped(
    written: tuple[EvalReport, ReportFiles],
) -> None:
    _, files = written
    page = files.html.read_text(encoding="utf-8")
    assert "<b>30 days</b>" not in page
    assert "does not say &#39;&lt;b&gt;30 days&lt;/b&gt;&#39;" in page
    assert "<code>t05</code>" in page  # routed's second failure
    assert "routed</strong>: 2 failing" in page


def test_a_real_provider_report_does_not_say_simulated(tmp_path: Path) -> None:
    the_report = report(simulated=False, stopped="budget of $0.50 spent")
    files = write_report(the_report, scores(), tmp_path)
    page = files.html.read_text(encoding="utf-8")
    assert "simulated" not in page.lower()
    assert "Stopped early:</strong> budget of $0.50 spent" in page
    assert plot_title(the_report) == "Cost vs pass rate: support_tickets"
    assert plot_title(report()) == "Cost vs pass rate: support_tickets (simulated models)"


def test_a_report_with_nothing_scored_still_renders(tmp_path: Path) -> None:
    empty = EvalReport(
        eval_set="empty",
        variants=[],
        recommended=None,
        recommendation_rule=recommendation_rule(),
        simulated=True,
        cases_scored=0,
        cases_total=10,
        stopped_reason="cancelled",
    )
    files = write_report(empty, [], tmp_path)
    assert png_size(files.plot.read_bytes())[0] > 0
    assert "No recommendation" in files.html.read_text(encoding="utf-8")


def test_unfinished_runs_count_once_in_the_failures_by_kind(tmp_path: Path) -> None:
    failed = CaseScore(
        case_id="t99",
        variant="routed",
        run_id="r",
        passed=False,
        checks=[
            CheckResult(kind="completed", passed=False, detail="the run did not complete"),
            CheckResult(kind="no_pii", passed=False, detail="not scored: the run did not complete"),
        ],
        cost_usd=0.0,
        latency_s=1.0,
        error_type="GuardFailed",
        labels={"category": "refund"},
    )
    page = write_report(report(), [*scores(), failed], tmp_path).html.read_text(encoding="utf-8")
    assert "<tr><td>completed</td><td>0</td><td>1</td><td>0</td></tr>" in page
    assert "no_pii" not in page.split("Failed checks by kind")[1].split("Every case")[0]
    assert "error <code>GuardFailed</code>" in page
