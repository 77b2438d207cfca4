"""``python -m chaos.next_node node run``: the node CLI as the N+1 build
(``chaos.builds``) runs it; the rolling-upgrade test starts upgraded daemons this way."""

from chaos.builds import install

install()

from node.cli import main  # noqa: E402  (the build is installed before the node loads)

main()
