"""Schemathesis over every operation of the API as ``shelf.app.create_app`` serves it, with an
admin token (requirement 3): no server errors, and every response, status code and header as
the OpenAPI document says, including the error body of 4xx answers and the name patterns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from controller.config import ControllerSettings
from registry.config import Role, TokenSpec
from shelf import migrate
from shelf.app import create_app

TOKEN = "admin-token-0123456789"
# Small enough that the suite stays fast, enough to find what the schema does not say.
MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home: Path = tmp_path_factory.mktemp("schemathesis")
    shelf_settings = ControllerSettings(
        home=home, tokens=[TokenSpec(name="ops", role=Role.admin, token=TOKEN)]
    )
    migrate.upgrade(shelf_settings.resolved_database_url)
    yield create_app(shelf_settings)


# Operations whose acceptance depends on more than the shape of the request, so that a
# schema-valid request may rightly be refused; every other check still runs on them.
NOT_JUST_SHAPE = {
    "PUT /v1/blobs/{digest}": "the body must hash to the digest",
    "POST /v1/blobs": "the body must be X-Shelf-Size bytes and their sha256",
    "POST /v1/models/{name}/versions": "every file's blob must have been uploaded",
    "POST /v1/models/{name}/rollouts": "the plan must be one the reconciler can judge",
    "POST /v1/webhooks": "the URL must pass the outbound policy",
}


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_api_conforms_to_its_openapi_document(app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = _operations(schema)
    assert len(operations) >= 20  # registry and controller routes alike
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            excluded = [positive_data_acceptance] if case.operation.label in NOT_JUST_SHAPE else []
            case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"}, excluded_checks=excluded
            )

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # one run reports every failing operation
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n".join(failures)
