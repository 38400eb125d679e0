"""What a `--state` value names, and how to show it without its password.

Pure string handling, so the CLI, the runner and `doctor` can tell a PostgreSQL URL from
a SQLite path (and print it safely) without importing a database driver.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_PASSWORD_IN_QUERY = re.compile(r"(?i)(password=)[^&\s]*")
_USERINFO_PASSWORD = re.compile(r"://[^/@:]*:([^@/]*)@")
_QUERY_PASSWORD = re.compile(r"(?i)[?&]password=([^&\s]*)")


def is_postgres_url(spec: str) -> bool:
    return spec.startswith(POSTGRES_SCHEMES)


def redact_url(spec: str) -> str:
    """The URL with any password replaced by `***` (user, host, port and database kept)."""
    if not is_postgres_url(spec):
        return spec
    scheme, rest = spec.split("://", 1)
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        authority = f"{user}{':***' if ':' in userinfo else ''}@{host}"
    tail = _PASSWORD_IN_QUERY.sub(r"\1***", tail)
    return f"{scheme}://{authority}{slash}{tail}"


def scrub(text: str, spec: str) -> str:
    """`text` (a driver's message, say) with the password of `spec` nowhere in it."""
    for secret in _passwords(spec):
        text = text.replace(secret, "***")
    return text


def _passwords(spec: str) -> set[str]:
    """The password a URL carries, as written and decoded (either may be echoed back).

    Regular expressions rather than a URL parser: a malformed URL is exactly the one a
    driver quotes back in its error message.
    """
    if not is_postgres_url(spec):
        return set()
    found = set(_USERINFO_PASSWORD.findall(spec)) | set(_QUERY_PASSWORD.findall(spec))
    found |= {unquote(secret) for secret in found}
    return {secret for secret in found if secret}
