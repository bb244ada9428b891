"""The HTML report of `chorus compare` in a real browser: a small evaluation
(the tiny set through both test variants, on the test's Temporal server,
worker and simulator) writes it, and headless Debian Chromium (driven by
Playwright, never downloaded: `chromium` from PATH) opens it from disk. The
variants table and the inline plot must show, and the page must ask for
nothing beyond its own file: the report is mailed and archived, so it has to
be self-contained. A screenshot goes to tests/artifacts/compare/report.png.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from playwright.async_api import Request, async_playwright
from sqlalchemy import Engine

from tests.cli_runner import ROOT, invoke
from tests.evals.conftest import DATA, EvalBench
from tests.evals.test_cli import VARIANTS, cli_env

ARTIFACTS = ROOT / "tests" / "artifacts" / "compare"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
SELF_CONTAINED = ("file:", "data:")
"""The only schemes the report may load from: its own file and the plot inlined in it."""


async def small_evaluation_report(
    bench: EvalBench, temporal_env: Any, task_queue: str, store_engine: Engine, tmp_path: Path
) -> Path:
    """`chorus compare` on the tiny set (3 cases x 2 variants); the HTML it wrote."""
    eval_set = tmp_path / "set.yaml"
    eval_set.write_text((DATA / "tiny_set.yaml").read_text().replace("MARK", bench.marker))
    env = cli_env(
        tmp_path,
        CHORUS_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        CHORUS_TASK_QUEUE=task_queue,
        CHORUS_DATABASE_URL=str(store_engine.url),
    )
    argv = ["compare", str(eval_set), "--variants", VARIANTS, "--no-stack", "--json"]
    # The CLI runs its own event loop: on a thread, so this test's worker keeps running.
    result = await asyncio.to_thread(invoke, [*argv, "--out", str(tmp_path / "report")], env)
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout.strip().splitlines()[-1])["report"])


async def test_the_report_shows_its_table_and_plot_and_loads_nothing_from_outside(
    bench: EvalBench, temporal_env: Any, task_queue: str, store_engine: Engine, tmp_path: Path
) -> None:
    html = await small_evaluation_report(bench, temporal_env, task_queue, store_engine, tmp_path)
    executable = shutil.which("chromium")
    assert executable is not None, "chromium is not installed: `apt-get install chromium`"

    requested: list[str] = []
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)

            def on_request(request: Request) -> None:
                requested.append(request.url)

            page.on("request", on_request)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            await page.goto(html.as_uri(), wait_until="load")

            title = await page.locator("h1").inner_text()
            recommendation = await page.locator("p.rec").inner_text()
            table = page.locator("table").first
            await table.wait_for(state="visible")
            rows = await table.locator("tr").all_inner_texts()
            plot = page.locator("img[src^='data:image/png;base64,']")
            await plot.wait_for(state="visible")
            # Decoded and drawn at a real size, not a broken-image icon.
            drawn = await plot.evaluate(
                "img => img.complete && img.naturalWidth > 0 ? "
                "[img.naturalWidth, img.getBoundingClientRect().width] : null"
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            await browser.close()

    assert not problems, problems
    assert "simulated models" in title
    assert recommendation.startswith("Recommended: qa_careful — the cheapest"), recommendation
    assert rows[0].split("\t")[:4] == ["variant", "cases", "passed", "pass rate"]
    shown = {row.split("\t")[0].rstrip(" ★") for row in rows[1:]}
    assert shown == {"qa_quick", "qa_careful"}
    assert drawn is not None and drawn[0] > 0 and drawn[1] > 300, drawn
    # Recording works (the page itself was requested) and nothing left the file.
    assert requested and requested[0] == html.as_uri()
    assert [url for url in requested if not url.startswith(SELF_CONTAINED)] == []
