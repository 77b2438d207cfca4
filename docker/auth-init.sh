#!/bin/sh
# Credentials and secured nats-server configs for the compose cluster, made on the first
# `docker compose up` and kept after (every step keeps what is already there).
#
# Everything lands in $AUTH (docker/auth on the host, git-ignored: it holds the operator's
# and users' seeds and the route secret; files 0600). The same commands set up real
# machines: run them on one trusted machine, then copy to each machine only what it needs
# (its server config and certificate, or its node's creds, and the CA).
set -eu
AUTH=${AUTH:-/auth}
BA=${BA:-broker-agents}

[ -f "$AUTH/operator.nk" ] || $BA auth init --dir "$AUTH"
# three servers, each dialled by its compose host name (and localhost, for the published
# ports); TLS for clients and routes, route auth, fsync on every write (nats >= 2.10)
$BA auth server-config --dir "$AUTH" --servers 3 \
    --host nats-1 --host nats-2 --host nats-3 \
    --store-dir /data/jetstream --sync-interval always --out-dir "$AUTH/servers"
for node in node-1 node-2 node-3; do
  [ -f "$AUTH/creds/$node.creds" ] || $BA auth issue node "$node" --dir "$AUTH"
done
for user in client observer; do
  [ -f "$AUTH/creds/$user.creds" ] || $BA auth issue "$user" "$user" --dir "$AUTH"
done
# inside the compose network; on the host, write your own with --server tls://localhost:4222
$BA auth context --dir "$AUTH" --user client \
    --server tls://nats-1:4222 --server tls://nats-2:4222 --server tls://nats-3:4222
