"""Hostile input, generated: property-based upload handling and schemathesis on the API."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from images import chelsea, encode
from imgrec.lab.harness import ServiceProcess


def against_service(examples: int) -> settings:
    """Each example is a real HTTP request: no per-example deadline, fixtures shared."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_dir):
    svc = ServiceProcess(tmp_path_factory.mktemp("hostile"), model_dir, "--max-workers", "1", "--scale-in-delay", "30")
    yield svc
    assert svc.stop() == 0, svc.log.read_text()


@against_service(60)
@given(
    data=st.one_of(
        st.binary(max_size=4096),
        st.sampled_from([encode(chelsea().resize((50, 40)), f) for f in ("PNG", "JPEG", "GIF")]).map(lambda b: b[: len(b) // 2]),
    ),
    name=st.text(max_size=300),
    field=st.sampled_from(["myfile", "inputFile", "file", "other"]),
    endpoint=st.sampled_from(["/", "/api/v1/classify", "/api/v1/jobs"]),
)
def test_random_uploads_never_get_a_5xx(service, data, name, field, endpoint):
    r = httpx.post(service.url + endpoint, files={field: (name, data, "application/octet-stream")}, timeout=60)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.text.strip(), "an error says what is wrong"


def test_api_schema_finds_no_5xx(service):
    """Every operation in the service's own OpenAPI schema, with generated input.

    (The operations are walked here rather than with schemathesis' pytest plugin,
    which does not run on pytest 9 yet.)"""
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/", "/api/v1/classify", "/api/v1/jobs", "/api/v1/jobs/{job_id}"}
    for op in operations:

        @against_service(30)
        @given(case=op.as_strategy())
        def no_server_error(case):
            response = case.call(base_url=service.url, timeout=60)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text)

        no_server_error()
