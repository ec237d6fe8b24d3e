"""The API against its own OpenAPI document (schemathesis): generated requests on every route,
as an admin and without a token, never get a 5xx, and every answer's status, content type and
body are the ones the document declares. Invalid requests are refused (4xx), not acted on.

The stack is this module's own (its own key prefix, data directory and agent): destructive
routes (policy, audit trim, users, library) act on it only, and it is deleted afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tasks.queues import queue_for
from tasks.signing import KeyPair
from tests.stack import Stack, new_device_id, own_prefix_stack

pytestmark = pytest.mark.integration

#: Generated requests per route and run (44 routes, two calls each): seconds when idle.
EXAMPLES_PER_ROUTE = 5
#: The token is the test's (as the admin, then none): the document's security scheme is not
#: generated. A query parameter the document does not name is ignored by the API (FastAPI),
#: so requests that add one are not generated as "invalid".
GENERATION = schemathesis.Config.from_dict(
    {"generation": {"with-security-parameters": False, "allow-extra-parameters": False}})
#: Every answer is checked for these.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
                 signing_keys: KeyPair) -> Iterator[Stack]:
    """API and one real agent with an open session, on a prefix of their own."""
    device = new_device_id("fuzz")
    base = tmp_path_factory.mktemp("api-fuzz")
    with own_prefix_stack(redis_url, [device], base, signing=signing_keys,
                          data_dir=Path(base) / "data", command_expiry_s=2.0) as st:
        st.open_session(device)
        yield st
        prefix = st.plane.keys.prefix
    # Whatever the routes did (users, policy, trims, commands), nothing is left behind.
    client = redis.Redis.from_url(redis_url)
    left = [k for pattern in (f"{prefix}:*", f"*{queue_for(device)}*")
            for k in client.scan_iter(match=pattern, count=1000)]
    assert not left, left[:10]


@pytest.fixture(scope="module")
def known_ids(fuzzed_stack: Stack) -> dict[str, str]:
    """Path parameters naming the stack's own objects, so reads get past their 404."""
    device = next(iter(fuzzed_stack.agents))
    return {"device_id": device, "session_id": fuzzed_stack.open_session(device),
            "name": "admin"}


def fuzz_operation(operation: APIOperation, stack: Stack, known: dict[str, str]) -> None:
    """Positive and negative requests to one route, as the admin and without a token; a read
    also on the stack's own objects."""
    admin = {"Authorization": f"Bearer {stack.token}"}
    strategies = [operation.as_strategy(GenerationMode.POSITIVE),
                  operation.as_strategy(GenerationMode.NEGATIVE)]
    names = re.findall(r"{(\w+)}", operation.path)
    if operation.method.upper() == "GET" and names and all(n in known for n in names):
        strategies.append(operation.as_strategy(
            GenerationMode.POSITIVE, path_parameters={n: known[n] for n in names}))
    cases = st.one_of(strategies)

    @given(cases)
    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    def requests(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=stack.url, headers=admin,
                               checks=[*CHECKS, negative_data_rejection])
        # The same request without a token: refused (401), or open, as documented.
        case.call_and_validate(base_url=stack.url, headers={"Authorization": ""},
                               checks=CHECKS)

    requests()


def test_every_route_answers_as_its_openapi_document_says_and_never_with_a_5xx(
        fuzzed_stack: Stack, known_ids: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_stack.url}/openapi.json",
                                           config=GENERATION)
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # a route the document cannot describe fails here
        try:
            fuzz_operation(operation, fuzzed_stack, known_ids)
        except BaseException as exc:  # schemathesis raises exception groups
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            failures.append(f"{operation.label}: {exc}")
        tested += 1
    assert tested >= 40, f"only {tested} routes in the document"
    assert not failures, "\n\n".join(failures)


def test_a_body_that_is_not_json_is_a_400_with_the_api_s_error_body(
        fuzzed_stack: Stack) -> None:
    with fuzzed_stack.client() as http:
        resp = http.post("/sessions", content=b"\xff{not json",
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "usage"


def test_an_unknown_route_is_a_404_with_the_api_s_error_body(fuzzed_stack: Stack) -> None:
    resp = httpx.get(f"{fuzzed_stack.url}/no/such/route")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_the_document_declares_no_422_since_a_bad_request_is_answered_400(
        fuzzed_stack: Stack) -> None:
    document = httpx.get(f"{fuzzed_stack.url}/openapi.json").json()
    statuses = {status for ops in document["paths"].values() for op in ops.values()
                for status in op["responses"]}
    assert "422" not in statuses
    assert {"400", "401", "403", "404", "503"} <= statuses
