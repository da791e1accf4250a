"""``shelf import mlflow`` against a real MLflow tracking server (``mlflow server`` on
loopback, SQLite and a local artifact root), populated through MLflow's own REST API."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from controller.config import ControllerSettings
from registry.cli import exit_codes
from tests.conftest import IN_CI, free_port
from tests.e2e.conftest import ShelfServer, make_server

pytestmark = pytest.mark.e2e
MLFLOW_BIN = Path(sys.executable).with_name("mlflow")
FILES = {"model/weights.bin": b"w" * 300_000, "model/conf/labels json": b'["0", "1"]'}


@dataclass
class Mlflow:
    url: str

    @property
    def api(self) -> str:
        return f"{self.url}/api/2.0"

    def post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        response = httpx.post(f"{self.api}/mlflow/{path}", json=body, timeout=30)
        response.raise_for_status()
        result: dict[str, object] = response.json()
        return result

    def logged_model_version(self, name: str, alias: str) -> str:
        """A run with a parameter, a metric and a git commit, its artifacts uploaded through the
        artifact proxy, registered as a model version of ``name`` under ``alias``."""
        run = self.post("runs/create", {"experiment_id": "0"})["run"]
        run_id = str(run["info"]["run_id"])  # type: ignore[index]
        self.post("runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.05"})
        self.post(
            "runs/log-metric",
            {"run_id": run_id, "key": "auc", "value": 0.93, "timestamp": 0, "step": 0},
        )
        self.post(
            "runs/set-tag",
            {"run_id": run_id, "key": "mlflow.source.git.commit", "value": "4f2c9d1"},
        )
        root = f"0/{run_id}/artifacts"
        for path, content in FILES.items():
            url = f"{self.api}/mlflow-artifacts/artifacts/{quote(f'{root}/{path}')}"
            httpx.put(url, content=content, timeout=30).raise_for_status()
        self.post("registered-models/create", {"name": name})
        created = self.post(
            "model-versions/create",
            {"name": name, "source": f"mlflow-artifacts:/{root}/model", "run_id": run_id},
        )
        version = str(created["model_version"]["version"])  # type: ignore[index]
        self.post("registered-models/alias", {"name": name, "alias": alias, "version": version})
        return run_id


@pytest.fixture
def mlflow(tmp_path: Path) -> Iterator[Mlflow]:
    if not MLFLOW_BIN.exists():
        reason = f"mlflow not installed at {MLFLOW_BIN} (it is a test dependency)"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    port = free_port()
    log = (tmp_path / "mlflow.log").open("wb")
    process = subprocess.Popen(
        [
            str(MLFLOW_BIN),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--artifacts-destination",
            str(tmp_path / "mlflow-artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(
                    f"mlflow server exited: {(tmp_path / 'mlflow.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("mlflow server did not start within 90 s")
        yield Mlflow(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def shelf(tmp_path: Path) -> Iterator[ShelfServer]:
    home = tmp_path / "home"
    home.mkdir()
    server = make_server(ControllerSettings(home=home), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_import_registers_artifacts_and_lineage_and_skips_what_is_stored(
    mlflow: Mlflow, shelf: ShelfServer, tmp_path: Path
) -> None:
    run_id = mlflow.logged_model_version("Fraud Detector", "champion")
    env = {"MLFLOW_TRACKING_URI": mlflow.url}

    bad_name = shelf.cli("import", "mlflow", "models:/Fraud Detector/1", check=False, env=env)
    assert bad_name.returncode == exit_codes.ERROR and "--name" in bad_name.stderr

    first = shelf.cli(
        "import", "mlflow", "models:/Fraud Detector/1", "--name", "fraud", "--json", env=env
    )
    version = json.loads(first.stdout)
    assert (version["version"], version["run_id"], version["git_commit"]) == (1, run_id, "4f2c9d1")
    assert version["source_uri"] == f"mlflow-artifacts:/0/{run_id}/artifacts/model"
    assert version["tags"] == {
        "mlflow.tracking_uri": mlflow.url,
        "mlflow.model": "Fraud Detector",
        "mlflow.version": "1",
        "param.lr": "0.05",
        "metric.auc": "0.93",
    }
    by_path = {f["path"]: f for f in version["files"]}
    for path, content in FILES.items():
        entry = by_path[path.removeprefix("model/")]
        assert (entry["size"], entry["digest"]) == (
            len(content),
            hashlib.sha256(content).hexdigest(),
        )

    # The same model again, by alias: a new version, and nothing uploaded twice.
    again = shelf.cli(
        "import", "mlflow", "models:/Fraud Detector@champion", "--name", "fraud", env=env
    )
    assert "fraud@2" in again.stdout and "(0 B uploaded)" in again.stdout

    shelf.cli("download", "fraud@2", "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "weights.bin").read_bytes() == FILES["model/weights.bin"]

    missing = shelf.cli("import", "mlflow", "models:/Fraud Detector/9", check=False, env=env)
    assert missing.returncode == exit_codes.NOT_FOUND
    assert missing.stderr.strip().splitlines() == [
        "error: MLflow: Model Version (name=Fraud Detector, version=9) not found"
    ]
    malformed = shelf.cli("import", "mlflow", "runs:/abc/model", check=False, env=env)
    assert malformed.returncode == exit_codes.ERROR and "models:/NAME/VERSION" in malformed.stderr
    unreachable = shelf.cli(
        "import", "mlflow", "models:/x/1", check=False,
        env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"},
    )  # fmt: skip
    assert unreachable.returncode != 0 and "cannot reach MLflow" in unreachable.stderr
