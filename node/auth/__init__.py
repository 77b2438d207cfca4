"""NATS decentralized auth for broker-agents: identities, roles, creds, TLS, server configs.

One module per job:

- ``jwt``: nkeys and NATS JWTs (operator -> account -> user);
- ``roles``: the node, client, admin and observer roles as subject permissions;
- ``creds``: the standard ``.creds`` file;
- ``tls``: a local CA and server certificates;
- ``authority``: an auth directory (keys, users, CA, route secret), created idempotently;
- ``server_config``: nats-server configs for one server or a routed cluster;
- ``context``: the client context file, how commands find it, nats-py connect kwargs;
- ``local``: the secure defaults of a node's data dir (all of the above on first start);
- ``private``: writing secrets (0600 files in 0700 directories).
"""
