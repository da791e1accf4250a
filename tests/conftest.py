"""Shared fixtures: the two backends every storage and database test runs on.

``sqlite+local``: an SQLite file and a local artifact folder under tmp_path.
``postgresql+s3``: a fresh PostgreSQL database on 127.0.0.1:5432 and a bucket on a real
S3-speaking HTTP server (moto's ThreadedMotoServer) on loopback, reached by boto3 over HTTP.
Without PostgreSQL those tests skip, except under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.config import ControllerSettings

PG_ADMIN_URL = os.environ.get("SHELF_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_available() -> str | None:
    """None if PostgreSQL answers, else the reason it does not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}".splitlines()[0]


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    reason = _postgres_available()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return PG_ADMIN_URL


@dataclass
class PostgresFactory:
    admin_url: str
    created: list[str]

    def new_database(self) -> str:
        import psycopg

        name = f"shelf_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@pytest.fixture
def postgres_factory(postgres_admin_url: str) -> Iterator[PostgresFactory]:
    factory = PostgresFactory(postgres_admin_url, [])
    yield factory
    factory.drop_all()


@pytest.fixture
def postgres_url(postgres_factory: PostgresFactory) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres_factory.new_database()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-speaking HTTP server (moto server mode) on a loopback port."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh bucket on the loopback S3 server; returns its name."""
    import boto3

    name = f"shelf-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


BACKENDS = ["sqlite+local", "postgresql+s3"]


@pytest.fixture(params=BACKENDS)
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> ControllerSettings:
    """ControllerSettings for one backend, its database migrated to head."""
    from shelf import migrate

    home = tmp_path / "shelf-home"
    home.mkdir()
    if request.param == "sqlite+local":
        settings = ControllerSettings(home=home)
    else:
        database_url = request.getfixturevalue("postgres_url")
        bucket = request.getfixturevalue("s3_bucket")
        endpoint = request.getfixturevalue("s3_endpoint")
        settings = ControllerSettings(
            home=home,
            database_url=database_url,
            artifact_uri=f"s3://{bucket}/shelf",
            s3_endpoint_url=endpoint,
            s3_region="us-east-1",
        )
    migrate.upgrade(settings.resolved_database_url)
    return settings
