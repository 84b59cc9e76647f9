"""The verbs. Each is a small function over the transaction runner (`engine.runner.Runner`):
it opens a command (`rt.command(...)`: lock, load), acts, lets the runner settle and save,
and returns the response, read in the same transaction. By subject:
`instances` (start, withdraw), `tasks` (complete, claim, transfer), `timers`."""
