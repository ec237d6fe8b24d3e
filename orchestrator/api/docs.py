"""The API's interactive documentation (Swagger UI at /docs), served whole by the API itself.

FastAPI's own /docs loads Swagger UI from a CDN, so an orchestrator without internet showed a
blank page. Here the page and its script, stylesheet and icon all come from this server: the
files ship in the `fastapi-offline` package (Swagger UI 5, which reads OpenAPI 3.1).
"""

# No `from __future__ import annotations`: FastAPI must see the routes' real types.

from importlib import resources

from fastapi import Depends, FastAPI
from fastapi import Request as HttpRequest
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from orchestrator.api.guard import Guards
from tasks.errors import NotFoundError

#: Where the page is.
DOCS_URL = "/docs"
#: Where its files are.
ASSETS_URL = "/docs/assets"
#: The files the page loads, with their media types (nothing else is served from there).
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
#: Swagger UI settings: no call to the online validator; the token survives a reload.
UI_PARAMETERS = {"validatorUrl": None, "persistAuthorization": True}


def add_docs_routes(app: FastAPI, guards: Guards) -> None:
    """GET /docs and its files; the app must be made with `docs_url=None, redoc_url=None`."""
    why = "the API's documentation, the same for everyone; no data behind it"
    static = resources.files("fastapi_offline") / "static"

    @app.get(DOCS_URL, include_in_schema=False, dependencies=[Depends(guards.open(why))])
    def docs(request: HttpRequest) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} — API",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=UI_PARAMETERS,
        )

    @app.get(f"{ASSETS_URL}/{{name}}", include_in_schema=False,
             dependencies=[Depends(guards.open(why))])
    def docs_asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFoundError(f"no documentation file {name!r}",
                                hint=f"the page is {DOCS_URL}")
        return Response((static / name).read_bytes(), media_type=media_type,
                        headers={"Cache-Control": "public, max-age=86400"})
