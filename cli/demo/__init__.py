"""`chorus demo`: the flagship chain, support_triage, on sample tickets.

Five tickets of the fictional store Larkspur Outfitters (tickets.py) run at
once on the embedded stack (started here when none runs, and stopped again:
run.py): the cheap model answers simple questions, the strong model answers
complex ones from the Help Center with citations, the writer model puts the
answer in the brand voice, guards check citations and personal data, and
refunds and uncertain tickets wait for a person, whom the demo stands in for
(driver.py).

The models are the built-in SIMULATOR, which cannot judge a ticket: the
classifier's verdict for each ticket is scripted (one single-use simulator
rule per ticket: simulator_script.py). Everything after that verdict runs for
real, and the output says so.

The cost comparison (analysis.py) re-prices the tokens every model call
actually used at the `strong` alias's prices: what the same work would have
cost had every call gone to the strong model. It does not pretend the strong
model would have used the same number of calls or tokens more wisely; it is
the usual "route versus one big model" yardstick, and the demo prints how it
is built (summary.py, report.py).
"""
