"""The operations layer: what an operator can do to a cluster, whoever asks.

Every front end — the `hastack` command, the lab, the REST API and dashboard — calls these
functions and only parses and presents: the same request makes the same store change from
each of them. Reads come as one snapshot; configuration changes are typed edits
(`hastack.ops.edits`, pure) written by compare-and-swap with a bounded retry
(`hastack.ops.configure`); requests that agents act on (cleanup) and fencing by hand go
through `hastack.ops.requests`; `hastack.ops.status` collects what `hastack status` shows;
`hastack.ops.simulate` gives the DC's own view of the live cluster for what-if runs.
"""
