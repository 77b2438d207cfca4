"""What may become a subject token or a KV key: letters, digits, ``_`` and ``-``.

One pattern for every name that is ever spliced into a subject (agent ids, capabilities,
auction ids, barrier and lock names, roles): no dots, wildcards or whitespace, so a request
can never address more than it names.
"""

from __future__ import annotations

import re

TOKEN_PATTERN = r"^[A-Za-z0-9_\-]+$"
TOKEN = re.compile(TOKEN_PATTERN)


def is_token(value: str) -> bool:
    return bool(TOKEN.match(value))
