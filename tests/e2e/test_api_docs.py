"""/docs as a browser loads it from a running API: every file from the API itself, and a
bearer scheme in the OpenAPI document so "Authorize" sends the token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from config import Settings
from orchestrator.api.guard import route_check
from orchestrator.api.server import ServerThread
from orchestrator.plane import ControlPlane
from orchestrator.state.identity import create_user, issue_token
from tasks.signing import KeyPair

pytestmark = pytest.mark.integration


@pytest.fixture
def api(redis_url: str, key_prefix: str, signing_keys: KeyPair,
        tmp_path: Path) -> Iterator[ServerThread]:
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, data_dir=tmp_path,
                        signing_key_file=signing_keys.private_path)
    plane = ControlPlane.from_settings(settings)
    try:
        with ServerThread(plane) as server:
            yield server
    finally:
        plane.close()


def test_the_docs_page_loads_every_file_from_the_api_itself(api: ServerThread) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as http:
        page = http.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "://" not in page.text  # no CDN, no other host: nothing needs the internet
        refs = re.findall(r"""(?:src|href)="([^"]+)"|url: '([^']+)'""", page.text)
        urls = sorted({a or b for a, b in refs})
        assert urls == ["/docs/assets/favicon.png", "/docs/assets/swagger-ui-bundle.js",
                        "/docs/assets/swagger-ui.css", "/openapi.json"]
        for url in urls:
            got = http.get(url)
            assert got.status_code == 200, url
            assert len(got.content) > 1000, url
        assert http.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith(
            "text/css")
        assert "SwaggerUIBundle" in http.get("/docs/assets/swagger-ui-bundle.js").text
        # Only the page's own files: nothing else of the package, nor of the disk.
        assert http.get("/docs/assets/redoc.standalone.js").status_code == 404
        assert http.get("/docs/assets/..%2F__init__.py").status_code == 404
        assert http.get("/redoc").status_code == 404  # a CDN page: not offered


def test_the_openapi_document_declares_the_bearer_scheme_on_every_guarded_route(
    api: ServerThread, redis_url: str,
) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as http:
        doc = http.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes == {"bearer": {"type": "http", "scheme": "bearer",
                                  "description": schemes["bearer"]["description"]}}
    routes = [r for r in api.app.routes if isinstance(r, APIRoute) and r.include_in_schema]
    assert len(routes) > 20
    for route in routes:
        check = route_check(route) or ""
        for method in route.methods:
            security = doc["paths"][route.path][method.lower()].get("security")
            if check.startswith("open:"):
                assert security is None, (method, route.path)
            else:
                assert security == [{"bearer": []}], (method, route.path)


def test_a_token_sent_as_authorize_sends_it_is_accepted(api: ServerThread) -> None:
    plane = api.app.state.plane
    user = create_user(plane.client, plane.keys, "docs-reader", ["viewer"])
    token = issue_token(plane.client, plane.keys, user)
    with httpx.Client(base_url=api.url, timeout=30) as http:
        assert http.get("/whoami").status_code == 401
        me = http.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["user"] == "docs-reader"


def test_every_route_that_serves_requests_is_in_the_openapi_document(api: ServerThread) -> None:
    """Routes served without FastAPI (the command route) are documented all the same."""
    with httpx.Client(base_url=api.url, timeout=30) as http:
        doc = http.get("/openapi.json").json()
    served = {(r.path, m.lower()) for r in api.app.routes
              if not isinstance(r, APIRoute) and getattr(r, "methods", None)
              and not r.path.startswith(("/docs", "/openapi"))
              for m in (r.methods or ()) if m != "HEAD"}
    assert ("/sessions/{session_id}/commands", "post") in served
    for path, method in served:
        assert method in doc["paths"].get(path, {}), (method, path)
    command = doc["paths"]["/sessions/{session_id}/commands"]["post"]
    assert command["security"] == [{"bearer": []}]
    assert {"200", "202", "401", "403"} <= set(command["responses"])
