"""The embedded dev stack: Temporal dev server, simulator, a worker and the
HTTP API as child processes of one command, with nothing downloaded at run time.

`DevStack(settings).start()` (stack.py) brings up whatever is not already
answering on the configured addresses and leaves running services alone, so
`chorus demo` reuses a stack that `chorus dev` started in another terminal.
`stop()` stops only what this instance started, newest first, with SIGTERM
and then SIGKILL after a grace period.

One stack owns a state directory at a time: it holds an exclusive lock on
STATE_DIR/dev.lock (state_lock.py, naming its pid) from `start()` to `stop()`.
Another stack on the same state directory either refuses to start
(`exclusive=True`, as `chorus dev` does: two of them would each take the
other's services for their own) or waits for the owner's services and reuses
them (the demo).

`supervise()` is the development supervisor of `chorus dev` (supervisor.py):
it restarts a crashed simulator, worker or API and reports it, and gives up
(stopping the stack) when a service crashes in a loop or Temporal itself exits.

Temporal keeps its state in STATE_DIR/temporal.db (SQLite), so runs survive a
restart of the stack; the children's output goes to STATE_DIR/logs/<name>.log
and a service that does not come up is reported with the tail of its log
(processes.py). Readiness probes are in probes.py; the dev server's command
line, which tests and benchmarks use on their own, in temporal_server.py.

Everything here is async and never blocks the event loop: the same loop may
run a Temporal worker (a blocked loop stalls workflow tasks).
"""
