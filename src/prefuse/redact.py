"""Credentials never reach a message, a log line or a written file.

A storage URL such as ``postgresql://user:password@host/db`` is shown as
``postgresql://user:***@host/db``; a ``password=...`` query or keyword argument is masked
the same way. Errors from the database layers (Optuna, SQLAlchemy, the drivers) quote the
URL they were given, so their text goes through ``mask`` too, with the URL's password
masked wherever else it appears.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

HIDDEN = "***"
# scheme://user:password@ - the password runs to the last "@" before the host, so an
# unescaped "@" inside it is hidden too.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)[^\s/]*@")
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:([^\s/]*)@")
_KEYWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*[=:]\s*['\"]?)[^&'\"\s,;)]+",
                      re.IGNORECASE)


def _passwords(url: str) -> set[str]:
    found = _URL_PASSWORD.match(url or "")
    return {found.group(1), unquote(found.group(1))} - {""} if found else set()


def mask(text: str, *urls: str) -> str:
    """``text`` with every URL password and ``password=`` value replaced by ``***``, and
    the passwords of ``urls`` (as written and URL-decoded) masked wherever else they
    appear."""
    text = _USERINFO.sub(lambda m: f"{m['head']}{HIDDEN}@", text)
    text = _KEYWORD.sub(lambda m: f"{m['head']}{HIDDEN}", text)
    for url in urls:
        for secret in _passwords(url):
            text = text.replace(secret, HIDDEN)
    return text
