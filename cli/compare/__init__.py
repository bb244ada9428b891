"""`chorus compare`: chain variants side by side on an eval set (command.py),
the driver that runs the evaluation on the dev stack or a deployment (run.py),
its progress display (progress.py) and the report files (report.py)."""
