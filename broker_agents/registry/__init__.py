"""Registry IO: KV store, local view, liveness, request service, facade, CLI bench.

Import from the submodules (store, view, liveness, service, client, bench, metrics).
"""
