"""Keep secrets out of everything kdtune writes: study folders, logs, W&B configs, results metadata, and what
it hands Ray (whose runtime env and task arguments end up in Ray's logs and in Tune's saved state).

Two tools: :func:`redact_url` for anything shown or recorded, and :func:`split_credentials`, which takes the
credentials out of an S3 URI so that the URI can be recorded and passed on as it is while the credentials
travel through the process environment (``AWS_ACCESS_KEY_ID`` ...), where pyarrow looks for them anyway.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl
from urllib.parse import unquote
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from kdtune.errors import UsageError


REDACTED = "***"
_SECRET_QUERY = re.compile(r"(?i)((?:password|secret|token|access_key|secret_key|session_token|api_key)=)[^&]+")
#: pyarrow's S3 URI options that are credentials, and the environment variable each one becomes.
_S3_CREDENTIALS = {"access_key": "AWS_ACCESS_KEY_ID", "secret_key": "AWS_SECRET_ACCESS_KEY",
                   "session_token": "AWS_SESSION_TOKEN"}


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


def split_credentials(uri: str, flag: str) -> tuple[str, dict[str, str]]:
    """``s3://KEY:SECRET@bucket/p?region=r`` or ``s3://bucket/p?access_key=KEY&secret_key=SECRET`` ->
    (``s3://bucket/p?region=r``, ``{"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}``).

    A URI of another scheme that still carries a secret is refused (:class:`UsageError` naming ``flag``):
    kdtune would have to record it, or hand it to Ray, to use it.
    """
    if "://" not in uri:
        return uri, {}
    parts = urlsplit(uri)
    env: dict[str, str] = {}
    if parts.scheme == "s3":
        query = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _S3_CREDENTIALS:
                env[_S3_CREDENTIALS[key]] = value
            else:
                query.append((key, value))
        netloc = parts.netloc
        if "@" in netloc:
            user, _, netloc = netloc.rpartition("@")
            key, _, secret = user.partition(":")  # percent-encoded in a URI (a "/" in a secret key is %2F)
            env["AWS_ACCESS_KEY_ID"] = unquote(key)
            if secret:
                env["AWS_SECRET_ACCESS_KEY"] = unquote(secret)
        uri = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe=":/"), parts.fragment))
    if redact_url(uri) != uri:
        raise UsageError(f"{flag} {redact_url(uri)}: carries credentials that kdtune would have to write down; "
                         "give them in the environment instead (see docs/security.md)")
    return uri, env
