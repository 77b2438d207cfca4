"""Registry IO: KV store, local view, liveness, request service, facade.

Import from the submodules (store, view, liveness, service, client, metrics).
"""
