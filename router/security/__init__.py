"""Who may call what. The request path asks an `Access` policy; the table's `auth` section decides which."""

from router.config import RouterConfig
from router.security.access import Access, OpenAccess

__all__ = ["Access", "OpenAccess", "build_access"]


def build_access(config: RouterConfig) -> Access:
    """The access policy for a table (no keys configured: open)."""
    return OpenAccess()
