"""The operator's dashboard (issue 17): a live model of the cluster fed from NATS as an
observer, a JSON API and server-sent events over it, and static pages.

- ``model``: what the dashboard has seen (plain state); ``docs``: the API documents;
- ``collector``: bucket mirrors and event subscriptions feeding the model;
- ``alerts``: conditions the dashboard evaluates itself, and Prometheus' firing alerts;
- ``app``: the aiohttp routes (GET only) and the SSE hub;
- ``server``: ``DashboardSettings``, ``serve``/``run`` (standalone) and ``Embedded``;
- ``innode``: the same inside a node (``[dashboard] enabled``: ``/ui`` and ``/api/``);
- ``cost``: what it costs the cluster, measured (``python -m node.dashboard.cost``).
The node side is ``node.status``: each node's status event, which the model reads.
"""
