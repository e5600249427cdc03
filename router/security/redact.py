"""Keeping secrets out of everything the router writes: logs, events, error messages, /status.

The router itself never formats a key into a message; what this guards against is text it relays or
derives: an upstream that echoes its Authorization header in an error body, a reload diff of an upstream's
headers, a base_url with a password in it. The redactor knows every secret of every table this process
served (a reload diff mentions the old value too) and replaces them wherever they appear. It only runs on
rare paths (errors, events, reloads), never on a successful request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from router.config.models import RouterConfig

MASK = "[REDACTED]"
_MIN_SECRET = 4  # shorter values would mask ordinary words and digits all over a message
_SENSITIVE_HEADER = re.compile(r"auth|key|token|secret|cookie|password|session", re.IGNORECASE)


def config_secrets(config: RouterConfig) -> set[str]:
    """The secret values a table holds: upstream keys, credential headers, URL passwords, client keys."""
    secrets: set[str] = set()
    for upstream in config.upstreams.values():
        if upstream.api_key is not None:
            secrets.add(upstream.api_key.get_secret_value())
        for name, value in upstream.headers.items():
            if _SENSITIVE_HEADER.search(name):
                secrets.add(value)
                scheme, _, credentials = value.partition(" ")
                if credentials and scheme.isalpha():  # "Bearer xyz", "Basic xyz": the credential alone too
                    secrets.add(credentials.strip())
        password = urlsplit(upstream.base_url).password
        if password:
            secrets.add(password)
    for value in config.telemetry.headers.values():  # a collector's credentials, whatever the header's name
        secrets.add(value)
        secrets.add(value.partition(" ")[2].strip())
    collector = urlsplit(config.telemetry.otlp_endpoint or "").password
    if collector:
        secrets.add(collector)
    keys = [k.key for k in config.auth.api_keys] + [k.key for k in config.auth.admin_keys]
    for key in keys:
        value = key.get_secret_value()
        if not value.startswith("sha256:"):
            secrets.add(value)
    return {secret for secret in secrets if len(secret) >= _MIN_SECRET}


def public_url(url: str) -> str:
    """A URL fit to show: any password in it masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


class Redactor:
    """Replaces known secrets in text; cheap when there are none."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Remember more secrets (kept for the life of the process)."""
        new = {secret for secret in secrets if len(secret) >= _MIN_SECRET} - self._secrets
        if not new:
            return
        self._secrets |= new
        ordered = sorted(self._secrets, key=len, reverse=True)  # longest first: no partial masks
        self._pattern = re.compile("|".join(re.escape(secret) for secret in ordered))

    def __call__(self, text: str) -> str:
        """`text` with every known secret masked."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def value(self, value: Any) -> Any:
        """Mask secrets in strings, also inside lists, tuples and dicts (event fields)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        return value
