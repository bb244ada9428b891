"""The EvalWorkflow (`chorus compare`): every case of an eval set through every
chain variant as child chain runs, scored, within a concurrency limit and a budget."""
