"""Importing a model version from an MLflow tracking server, over its REST API (no ``mlflow``
package at run time): resolve ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``, read the run
behind it for lineage (run id, source commit, parameters and metrics), and download its
artifacts through the tracking server's artifact proxy (``mlflow-artifacts:/``, which
``mlflow server`` serves by default).

REST endpoints used (MLflow 2.x and 3.x): ``model-versions/get``,
``registered-models/alias``, ``model-versions/get-download-uri``, ``runs/get`` and
``mlflow-artifacts/artifacts`` (list and download)."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from registry.errors import IntegrityError, InvalidInput, NotFound, UpstreamError
from registry.names import TAG_KEY_RE, check_manifest_path

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/@]+))$")
_PROXIED = "mlflow-artifacts:"
CHUNK = 1024 * 1024
MAX_TAG = 1024


@dataclass(frozen=True)
class MlflowModelVersion:
    """What Shelf keeps of an MLflow model version and its run."""

    name: str
    version: int
    description: str
    source: str
    artifact_uri: str
    run_id: str | None
    git_commit: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def tags(self, tracking_uri: str) -> dict[str, str]:
        """Lineage as Shelf tags: where it came from, then ``param.*`` and ``metric.*``."""
        tags = {
            "mlflow.tracking_uri": tracking_uri,
            "mlflow.model": self.name,
            "mlflow.version": str(self.version),
        }
        tags.update({f"param.{k}": v for k, v in self.params.items()})
        tags.update({f"metric.{k}": repr(v) for k, v in self.metrics.items()})
        return {k: v[:MAX_TAG] for k, v in tags.items() if TAG_KEY_RE.match(k)}


def parse_model_uri(uri: str) -> tuple[str, int | None, str | None]:
    """``models:/fraud/3`` -> (fraud, 3, None); ``models:/fraud@champion`` -> (fraud, None,
    champion)."""
    match = _MODEL_URI.match(uri.strip())
    if match is None:
        raise InvalidInput(
            f"invalid MLflow model URI {uri!r}: use models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    version = match.group("version")
    return match.group("name"), int(version) if version else None, match.group("alias")


class MlflowSource:
    """A tracking server reached at ``tracking_uri`` (``MLFLOW_TRACKING_URI``), with a bearer
    ``token`` or basic ``username``/``password`` when it needs one."""

    def __init__(
        self,
        tracking_uri: str,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if not tracking_uri.startswith(("http://", "https://")):
            raise InvalidInput(
                f"MLflow tracking URI {tracking_uri!r} is not http(s): Shelf imports through "
                "a tracking server's REST API (set --tracking-uri or MLFLOW_TRACKING_URI)"
            )
        self.tracking_uri = tracking_uri.rstrip("/")
        auth = httpx.BasicAuth(username, password or "") if username else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=f"{self.tracking_uri}/api/2.0",
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
        )

    def close(self) -> None:
        self._http.close()

    def _get(self, endpoint: str, **params: str) -> dict[str, Any]:
        try:
            response = self._http.get(endpoint, params=params)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"cannot reach MLflow at {self.tracking_uri} ({exc})") from None
        if response.status_code == 404 or (
            response.status_code == 400 and "DOES_NOT_EXIST" in response.text
        ):
            raise NotFound(f"MLflow: {_message(response)}")
        if not response.is_success:
            raise UpstreamError(f"MLflow answered {response.status_code}: {_message(response)}")
        result: dict[str, Any] = response.json()
        return result

    def model_version(self, uri: str) -> MlflowModelVersion:
        name, version, alias = parse_model_uri(uri)
        if alias is not None:
            found = self._get("/mlflow/registered-models/alias", name=name, alias=alias)
        else:
            found = self._get("/mlflow/model-versions/get", name=name, version=str(version))
        row = found["model_version"]
        number = str(row["version"])
        location = self._get("/mlflow/model-versions/get-download-uri", name=name, version=number)
        run_id = row.get("run_id") or None
        params: dict[str, str] = {}
        metrics: dict[str, float] = {}
        commit = None
        if run_id:
            data = self._get("/mlflow/runs/get", run_id=run_id)["run"].get("data", {})
            params = {p["key"]: str(p["value"]) for p in data.get("params", [])}
            metrics = {m["key"]: float(m["value"]) for m in data.get("metrics", [])}
            run_tags = {t["key"]: t["value"] for t in data.get("tags", [])}
            commit = run_tags.get("mlflow.source.git.commit")
        return MlflowModelVersion(
            name=name,
            version=int(number),
            description=row.get("description") or "",
            source=row.get("source") or location["artifact_uri"],
            artifact_uri=location["artifact_uri"],
            run_id=run_id,
            git_commit=commit,
            params=params,
            metrics=metrics,
        )

    def _files(self, path: str, prefix: str = "") -> Iterator[tuple[str, str, int]]:
        """(path inside the model, path on the proxy, size) of every file below ``path``."""
        listing = self._get("/mlflow-artifacts/artifacts", path=path)
        for item in listing.get("files", []):
            name = item["path"].rsplit("/", 1)[-1]
            relative = f"{prefix}{name}"
            if item.get("is_dir"):
                yield from self._files(f"{path}/{name}", f"{relative}/")
            else:
                yield relative, f"{path}/{name}", int(item.get("file_size") or 0)

    @contextmanager
    def downloaded(self, version: MlflowModelVersion) -> Iterator[Path]:
        """The version's artifacts in a temporary folder, removed afterwards. Each file is
        streamed to disk and must have the size the listing announced."""
        if not version.artifact_uri.startswith(_PROXIED):
            raise InvalidInput(
                f"the artifacts of {version.name} v{version.version} are at "
                f"{version.artifact_uri}, which the tracking server does not serve: run "
                "'mlflow server' with artifact proxying (the default, --serve-artifacts)"
            )
        root = version.artifact_uri[len(_PROXIED) :].lstrip("/")
        folder = Path(tempfile.mkdtemp(prefix="shelf-mlflow-"))
        try:
            count = 0
            for relative, remote, size in self._files(root):
                target = folder.joinpath(*check_manifest_path(relative).split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                self._download(remote, target, size)
                count += 1
            if count == 0:
                raise InvalidInput(f"MLflow {version.name} v{version.version} has no artifacts")
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _download(self, remote: str, target: Path, size: int) -> None:
        url = f"/mlflow-artifacts/artifacts/{quote(remote)}"
        written = 0
        try:
            with self._http.stream("GET", url) as response, target.open("wb") as handle:
                if not response.is_success:
                    response.read()
                    raise UpstreamError(
                        f"MLflow answered {response.status_code} for {remote}: {_message(response)}"
                    )
                for chunk in response.iter_bytes(CHUNK):
                    written += len(chunk)
                    if written > size:
                        break
                    handle.write(chunk)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"download of {remote} from MLflow failed ({exc})") from None
        if written != size:
            raise IntegrityError(
                f"MLflow sent {written} bytes for {remote}, its listing says {size}"
            )


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message") or response.text[:200])
    except ValueError:
        return response.text[:200]
