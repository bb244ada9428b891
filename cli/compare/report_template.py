# ruff: noqa: E501  (an HTML template: its lines are markup, wrapped where the markup allows)
"""The Jinja2 template of the HTML report (cli/compare/report.py renders it
with autoescape on: case ids, labels and check details come from the eval set
and from model output). Kept in a module rather than a data file so a plain
`pip install` carries it with the code."""

REPORT_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
         max-width: 1100px; margin: 2rem auto; padding: 0 1rem; }
  h1 { font-size: 1.5rem; margin-bottom: .25rem; }
  h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
  .sub { color: #59636e; margin-top: 0; }
  .banner { background: #fff8c5; border: 1px solid #d4a72c; padding: .6rem .8rem; border-radius: 6px; }
  .stopped { background: #ffebe9; border: 1px solid #cf222e; padding: .6rem .8rem; border-radius: 6px; }
  .rec { background: #dafbe1; border: 1px solid #1a7f37; padding: .6rem .8rem; border-radius: 6px; }
  table { border-collapse: collapse; margin: .5rem 0; font-size: 14px; }
  th, td { border: 1px solid #d0d7de; padding: .3rem .55rem; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  th { background: #f6f8fa; }
  tr.recommended td { font-weight: 600; background: #f0fff4; }
  td.pass { color: #1a7f37; } td.fail { color: #cf222e; font-weight: 600; }
  tr.differs td:first-child { font-weight: 600; }
  img { max-width: 100%; border: 1px solid #d0d7de; border-radius: 6px; }
  details { margin: .3rem 0; } summary { cursor: pointer; }
  ul.checks { margin: .2rem 0 .6rem 1.2rem; padding: 0; font-size: 14px; }
  code { background: #f6f8fa; padding: 0 .25rem; border-radius: 4px; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="sub">{{ report.cases_scored }} of {{ report.cases_total }} case runs scored
{% if report.judge_alias %} &middot; judge model <code>{{ report.judge_alias }}</code>
(its cost, {{ judge_cost | usd }}, is not counted in any variant's cost){% endif %}</p>
{% if simulated_note %}<p class="banner"><strong>Simulated models.</strong> {{ simulated_note }}</p>{% endif %}
{% if report.stopped_reason %}<p class="stopped"><strong>Stopped early:</strong> {{ report.stopped_reason }}.
The figures below cover the cases scored before it stopped.</p>{% endif %}
<p class="rec">{% if report.recommended %}<strong>Recommended: {{ report.recommended }}</strong>{% else %}<strong>No recommendation</strong> (nothing was scored){% endif %} &mdash;
{{ report.recommendation_rule }}.</p>

<h2>Cost and pass rate</h2>
<img alt="{{ title }}: cost per case against pass rate, with 95% intervals" src="data:image/png;base64,{{ plot_b64 }}">

<h2>Variants</h2>
<table>
<tr><th>variant</th><th>cases</th><th>passed</th><th>pass rate</th><th>95% interval</th>
<th>cost</th><th>per case</th><th>latency p50</th><th>latency p95</th>
<th>asks a person</th><th>escalates</th>{% if report.judge_alias %}<th>judge cost</th>{% endif %}</tr>
{% for v in report.variants %}
<tr{% if v.variant == report.recommended %} class="recommended"{% endif %}>
<td>{{ v.variant }}{% if v.variant == report.recommended %} &#9733;{% endif %}</td>
<td>{{ v.cases }}</td><td>{{ v.passed }}</td><td>{{ v.pass_rate | pct }}</td>
<td>{{ v.ci_low | pct }} &ndash; {{ v.ci_high | pct }}</td>
<td>{{ v.cost_usd | usd }}</td><td>{{ v.cost_per_case_usd | usd }}</td>
<td>{{ v.p50_latency_s | secs }}</td><td>{{ v.p95_latency_s | secs }}</td>
<td>{{ v.approval_rate | pct }}</td><td>{{ v.escalation_rate | pct }}</td>
{% if report.judge_alias %}<td>{{ v.judge_cost_usd | usd }}</td>{% endif %}
</tr>
{% endfor %}
</table>
<p class="sub">A case passes when its run completed and every check passed. &ldquo;Asks a person&rdquo;:
runs that requested an approval; &ldquo;escalates&rdquo;: runs in which a cascade step asked the stronger model.</p>

{% if paired %}
<h2>Case by case against {{ report.recommended }}</h2>
<table>
<tr><th>variant</th><th>cases both ran</th><th>only {{ report.recommended }} passed</th>
<th>only the variant passed</th><th>McNemar p</th></tr>
{% for p in paired %}
<tr><td>{{ p.second }}</td><td>{{ p.shared_cases }}</td><td>{{ p.only_first }}</td>
<td>{{ p.only_second }}</td><td>{{ p.p_value | p }}</td></tr>
{% endfor %}
</table>
<p class="sub">Only the cases where the two disagree carry evidence. A p-value above 0.05 means the
difference could well be chance with this many cases.</p>
{% endif %}

<h2>Pass rate by category</h2>
<table>
<tr><th>category</th>{% for v in variants %}<th>{{ v }}</th>{% endfor %}</tr>
{% for c in categories %}
<tr><td>{{ c }}</td>
{% for v in report.variants %}{% set s = v.by_category.get(c) %}
<td>{% if s %}{{ s.pass_rate | pct }} ({{ s.passed }}/{{ s.cases }}){% else %}&ndash;{% endif %}</td>
{% endfor %}</tr>
{% endfor %}
</table>

{% if failures_by_kind %}
<h2>Failed checks by kind</h2>
<p class="sub">&ldquo;completed&rdquo; counts runs that did not finish (their checks were not scored).</p>
<table>
<tr><th>check</th>{% for v in variants %}<th>{{ v }}</th>{% endfor %}</tr>
{% for kind, counts in failures_by_kind %}
<tr><td>{{ kind }}</td>{% for v in variants %}<td>{{ counts[v] }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% endif %}

<h2>Every case</h2>
<details><summary>{{ matrix | length }} cases; those where the variants disagree first</summary>
<table>
<tr><th>case</th><th>category</th>{% for v in variants %}<th>{{ v }}</th>{% endfor %}</tr>
{% for case_id, category, row, differs in matrix %}
<tr{% if differs %} class="differs"{% endif %}><td>{{ case_id }}</td><td>{{ category }}</td>
{% for passed in row %}{% if passed is none %}<td>&ndash;</td>{% elif passed %}<td class="pass">pass</td>{% else %}<td class="fail">fail</td>{% endif %}{% endfor %}
</tr>
{% endfor %}
</table>
</details>

<h2>Failing cases</h2>
{% for variant, cases in failing %}
<details{% if loop.first %} open{% endif %}><summary><strong>{{ variant }}</strong>: {{ cases | length }} failing</summary>
{% for s in cases %}
<p><code>{{ s.case_id }}</code>{% for k, val in s.labels | dictsort %} &middot; {{ k }}: {{ val }}{% endfor %}
&middot; run <code>{{ s.run_id }}</code>{% if s.error_type %} &middot; error <code>{{ s.error_type }}</code>{% endif %}</p>
<ul class="checks">
{% for c in s.checks if not c.passed %}<li><strong>{{ c.kind }}</strong>: {{ c.detail }}</li>
{% endfor %}
</ul>
{% endfor %}
</details>
{% endfor %}
</body>
</html>
"""
