"""HTTP routes of the library: list (view), add and remove (admin).

`PUT /library/{name}` takes the file's raw bytes as the request body, streamed into Redis and
hashed on the way (memory stays at one chunk); a declared Content-Length over the limit is
refused before any byte is read. Additions, removals and refusals are audited with name,
sha256 and size, never content.
"""

# No `from __future__ import annotations`: FastAPI must resolve the dependency objects.

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi import Request as HttpRequest
from starlette.concurrency import run_in_threadpool

from orchestrator.api.guard import Guards
from orchestrator.api.responses import errors
from orchestrator.files.library import MAX_DESCRIPTION_CHARS, LibraryUpload, library_of
from orchestrator.plane import ControlPlane
from orchestrator.policies.model import PERM_ADMIN, PERM_VIEW
from orchestrator.policies.pipeline import Request
from orchestrator.state.identity import User
from tasks.errors import LiveResponseError, UsageError


def add_library_routes(app: FastAPI, plane: ControlPlane, guards: Guards) -> None:
    """Register GET /library, PUT /library/{name} and DELETE /library/{name} on `app`."""
    store = library_of(plane)
    admin = guards.requires(PERM_ADMIN, audited=False)

    def refused(user: User, action: str, name: str, exc: LiveResponseError,
                **details: Any) -> None:
        plane.audit.append(user.name, f"library.{action}.refused", name, "denied", name=name,
                           reason=exc.code, message=exc.message, **details)

    def begin(user: User, name: str, declared: str | None) -> LibraryUpload:
        declared_bytes: int | None = None
        try:
            try:
                declared_bytes = int(declared) if declared is not None else None
            except ValueError:
                raise UsageError(f"bad Content-Length {declared!r}") from None
            return store.upload(name, declared_bytes)
        except LiveResponseError as exc:
            refused(user, "add", name, exc, size_bytes=declared_bytes)
            raise

    def finish(user: User, upload: LibraryUpload, description: str,
               replace: bool) -> dict[str, Any]:
        item, previous = upload.commit(user.name, description=description, replace=replace)
        plane.audit.append(user.name, "library.added", item.name, "allowed", name=item.name,
                           sha256=item.sha256, size_bytes=item.size_bytes,
                           description=item.description,
                           replaced_sha256=previous.sha256 if previous else None)
        return {**item.model_dump(mode="json"),
                "replaced_sha256": previous.sha256 if previous else None}

    def give_up(user: User, upload: LibraryUpload, exc: BaseException) -> None:
        upload.abort()
        if isinstance(exc, LiveResponseError):
            refused(user, "add", upload.name, exc, size_bytes=upload.size_bytes)

    @app.get("/library")
    def library_list(req: Annotated[Request, Depends(guards.requires(PERM_VIEW))]
                     ) -> list[dict[str, Any]]:
        """View: names, sizes and hashes of what put and runscript may use."""
        return [item.model_dump(mode="json") for item in store.list()]

    @app.put("/library/{name}", status_code=201, responses=errors(409, 413))
    async def library_add(
        name: str, request: HttpRequest, req: Annotated[Request, Depends(admin)],
        description: Annotated[str, Query(max_length=MAX_DESCRIPTION_CHARS)] = "",
        replace: bool = False,
    ) -> dict[str, Any]:
        """Admin. The body is the file; a taken name needs `replace=true`."""
        user = req.need_user()
        upload = await run_in_threadpool(begin, user, name,
                                         request.headers.get("content-length"))
        try:
            async for data in request.stream():
                if data:
                    await run_in_threadpool(upload.write, data)
            return await run_in_threadpool(finish, user, upload, description, replace)
        except BaseException as exc:  # refused, or the client went away: keep nothing
            await run_in_threadpool(give_up, user, upload, exc)
            raise

    @app.delete("/library/{name}")
    def library_remove(name: str, req: Annotated[Request, Depends(admin)]) -> dict[str, Any]:
        """Admin. The content goes too when no other name uses it."""
        user = req.need_user()
        try:
            item, content_deleted = store.remove(name)
        except LiveResponseError as exc:
            refused(user, "remove", name, exc)
            raise
        plane.audit.append(user.name, "library.removed", item.name, "allowed", name=item.name,
                           sha256=item.sha256, size_bytes=item.size_bytes,
                           content_deleted=content_deleted)
        return {**item.model_dump(mode="json"), "content_deleted": content_deleted}
