"""`DELETE /sessions/{id}`: forget a server-side conversation (see `router.sessions`).

The caller is authenticated exactly as for chat; a session of another caller answers 404 like an unknown
one, so ids cannot be probed for existence.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, delete
from litestar.handlers import HTTPRouteHandler

from router.security import Access
from router.sessions import not_found
from router.state.backend import SessionBackend


def session_handlers(store: SessionBackend, access: Access) -> list[HTTPRouteHandler]:
    """The session endpoints over the runtime's one store (in memory or shared), authenticated by this
    table's policy."""

    @delete(
        "/sessions/{session_id:str}",
        operation_id="delete_session",
        tags=["sessions"],
        summary="Forget a conversation kept by the router (204; 404 if there is none for this caller)",
        status_code=204,
    )
    async def delete_session(request: Request[Any, Any, Any]) -> None:
        # Read from the request rather than injected: works the same on every supported Litestar version.
        session_id: str = request.path_params["session_id"]
        principal = access.authenticate(request.scope["headers"])
        if not await store.delete(session_id, principal):
            raise not_found(session_id)

    return [delete_session]
