"""The operator's view of a cluster: the REST API, the dashboard and the metrics, served by
an agent in a thread of its own (docs/api.md).

`hastack.api.server` (aiohttp) is imported only by an agent that serves the API; the agent
itself only fills `hastack.api.counters` and a `LocalView`, which import nothing heavy.
"""
