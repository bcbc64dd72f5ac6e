"""Keep secrets out of everything kdtune writes: study folders, logs, W&B configs, results metadata."""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from urllib.parse import urlunsplit


REDACTED = "***"
_SECRET_QUERY = re.compile(r"(?i)((?:password|secret|token|access_key|secret_key|session_token|api_key)=)[^&]+")


def redact_url(url: str) -> str:
    """``postgresql://user:pw@host/db`` -> ``postgresql://user:***@host/db``; secret query values too."""
    parts = urlsplit(url)
    if not parts.password and not _SECRET_QUERY.search(parts.query):
        return url  # nothing to hide; also keeps sqlite:////abs/path intact
    netloc = parts.netloc
    if parts.password:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}:{REDACTED}@{host}"
    query = _SECRET_QUERY.sub(rf"\g<1>{REDACTED}", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
