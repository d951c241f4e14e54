"""The autoscaler: a pure policy (`policy`), the loop that applies it (`loop`), the
deployment's chores (`housekeeping`), and the process that runs them (`main`)."""
