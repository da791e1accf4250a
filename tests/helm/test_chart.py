"""Production packaging: the Helm chart in helm/shelf and the Dockerfile.

The schema and Dockerfile tests need only Python. The rendering tests use the `helm` binary
when it is on PATH, else Helm's own library through helm-python-sdk (a test extra; see
tests/helm/helm_sdk.py), so they run on every machine; without either they skip, and under
CI=true they fail. Rendered manifests are validated against the Kubernetes OpenAPI schemas with
the kubernetes-validate package (test extra).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "shelf"
CI_VALUES = CHART / "ci"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

IN_CI = os.environ.get("CI", "").lower() == "true"


def _helm_command() -> list[str] | None:
    """The helm binary, else Helm's library through tests/helm/helm_sdk.py, else None."""
    binary = shutil.which("helm")
    if binary is not None:
        return [binary]
    try:
        import helm_python  # noqa: F401
    except (ImportError, OSError):
        return None
    return [sys.executable, str(Path(__file__).with_name("helm_sdk.py"))]


HELM = _helm_command()
needs_helm = pytest.mark.skipif(
    HELM is None and not IN_CI, reason="neither helm on PATH nor helm-python-sdk installed"
)

COMPONENTS = ("api", "gateway", "reconciler")
PORTS = {"api": 8000, "gateway": 8080, "reconciler": 8090}


# --------------------------------------------------------------------------------------------
# helpers


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def default_values() -> dict[str, Any]:
    return load_yaml(CHART / "values.yaml")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def schema_errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(values)]


def with_value(path: str, value: Any) -> dict[str, Any]:
    """The default values with one dotted path set."""
    values = default_values()
    node = values
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return values


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    if HELM is None:
        pytest.fail("CI=true but neither helm nor helm-python-sdk is available")
    return subprocess.run(
        [*HELM, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def values_args(name: str | None) -> list[str]:
    return ["-f", str(CI_VALUES / f"{name}-values.yaml")] if name else []


def render(values_file: str | None, *extra: str) -> list[dict[str, Any]]:
    result = helm(
        "template", "shelf", str(CHART), "--namespace", "ml", *values_args(values_file), *extra
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(*extra: str) -> str:
    result = helm("template", "shelf", str(CHART), "--namespace", "ml", *extra)
    assert result.returncode != 0, "rendering should have failed"
    return result.stderr


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc, doc["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# --------------------------------------------------------------------------------------------
# values.schema.json


def test_schema_is_valid_draft07() -> None:
    spec = schema()
    assert spec["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(spec)


def test_default_values_validate() -> None:
    assert schema_errors(default_values()) == []


@pytest.mark.parametrize("name", ["default", "full", "existing-secret"])
def test_ci_values_validate(name: str) -> None:
    values = deep_merge(default_values(), load_yaml(CI_VALUES / f"{name}-values.yaml"))
    assert schema_errors(values) == []


def _objects(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{where}/{i}")


def test_schema_is_strict() -> None:
    """Every object with declared properties rejects unknown keys, so typos fail loudly."""
    loose = [
        where for where, node in _objects(schema()) if node.get("additionalProperties") is not False
    ]
    assert loose == []


def test_every_default_value_is_declared() -> None:
    """The schema declares each key of values.yaml (additionalProperties false would reject it
    otherwise), and requires the top-level sections."""
    spec = schema()
    assert set(default_values()) <= set(spec["properties"])
    assert set(spec["required"]) == set(default_values())


INVALID = [
    pytest.param("api.replicaCount", "two", "is not of type 'integer'", id="wrong-type"),
    pytest.param("gateway.replicaCount", -1, "less than the minimum", id="negative-replicas"),
    pytest.param("image.pullPolicy", "Sometimes", "is not one of", id="bad-enum"),
    pytest.param("serviceAccount.create", "yes", "is not of type 'boolean'", id="string-bool"),
    pytest.param("api.service.port", 70000, "greater than the maximum", id="port-range"),
    pytest.param("api.service.type", "ExternalName", "is not one of", id="service-type"),
    pytest.param("config.artifactUri", "file:///var/lib/shelf", "does not match", id="not-s3"),
    pytest.param("secrets.databaseUrl", "mysql://x@y/z", "does not match", id="not-postgres"),
    pytest.param("api.podAntiAffinityPreset", "sometimes", "is not one of", id="preset"),
    pytest.param("gateway.livenessProbe.periodSeconds", 0, "less than the minimum", id="probe"),
    pytest.param("config.extraEnv", {"BAD-NAME": "1"}, "does not match", id="env-name"),
    pytest.param("config.reconcilerIntervalS", 0, "less than or equal to the minimum", id="zero"),
    pytest.param(
        "secrets.tokens",
        [{"name": "ci", "role": "root", "token": "x" * 20}],
        "is not one of",
        id="token-role",
    ),
    pytest.param(
        "secrets.tokens",
        [{"name": "ci", "role": "read", "token": "short"}],
        "is too short",
        id="token-length",
    ),
    pytest.param(
        "secrets.tokens",
        [{"name": "ci", "role": "read"}],
        "'token' is a required property",
        id="token-missing",
    ),
    pytest.param("metrics.serviceMonitor.interval", "often", "does not match", id="duration"),
]


@pytest.mark.parametrize(("path", "value", "message"), INVALID)
def test_schema_rejects_invalid_values(path: str, value: Any, message: str) -> None:
    errors = schema_errors(with_value(path, value))
    assert errors, f"{path}={value!r} was accepted"
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize(
    "path", ["replicas", "api.replicas", "gateway.autoscaling.enable", "config.s3.bucket"]
)
def test_schema_rejects_unknown_keys(path: str) -> None:
    errors = schema_errors(with_value(path, 1))
    assert any("Additional properties are not allowed" in e for e in errors), errors


def test_schema_rejects_missing_section() -> None:
    values = default_values()
    del values["secrets"]
    assert any("'secrets' is a required property" in e for e in schema_errors(values))


# --------------------------------------------------------------------------------------------
# Chart.yaml and the chart's files


def test_chart_yaml_is_well_formed() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "shelf" == CHART.name
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", chart["version"])
    assert isinstance(chart["appVersion"], str)
    assert chart["description"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


def test_chart_has_expected_templates() -> None:
    templates = {p.name for p in (CHART / "templates").iterdir()}
    expected = {
        "_helpers.tpl",
        "NOTES.txt",
        "api-deployment.yaml",
        "api-service.yaml",
        "api-ingress.yaml",
        "gateway-deployment.yaml",
        "gateway-service.yaml",
        "gateway-hpa.yaml",
        "gateway-ingress.yaml",
        "reconciler-deployment.yaml",
        "migration-job.yaml",
        "configmap.yaml",
        "secret.yaml",
        "serviceaccount.yaml",
        "servicemonitor.yaml",
    }
    assert expected <= templates


# --------------------------------------------------------------------------------------------
# helm lint / helm template


@needs_helm
@pytest.mark.parametrize("name", ["default", "full", "existing-secret"])
def test_helm_lint(name: str) -> None:
    result = helm("lint", str(CHART), "--strict", *values_args(name))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_helm
def test_render_fails_without_tokens_or_existing_secret() -> None:
    error = render_error(
        "--set", "config.artifactUri=s3://bucket/shelf",
        "--set", "secrets.databaseUrl=postgresql://u:p@db:5432/shelf",
    )  # fmt: skip
    assert "API tokens are required" in error
    assert "secrets.existingSecret" in error


@needs_helm
def test_render_fails_without_artifact_store() -> None:
    error = render_error("--set", "secrets.existingSecret=shelf-credentials")
    assert "config.artifactUri" in error


@needs_helm
def test_render_fails_without_database() -> None:
    error = render_error(
        "--set", "config.artifactUri=s3://bucket/shelf",
        "--set-json", 'secrets.tokens=[{"name":"a","role":"admin","token":"0123456789abcdef"}]',
    )  # fmt: skip
    assert "secrets.databaseUrl" in error


@needs_helm
def test_render_rejects_values_against_schema() -> None:
    error = render_error(*values_args("default"), "--set", "api.replicaCount=two")
    assert "replicaCount" in error
    error = render_error(*values_args("default"), "--set", "api.bogus=1")
    assert "bogus" in error


@needs_helm
def test_default_render_resources() -> None:
    docs = render("default")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("Deployment") == 3
    assert kinds.count("Service") == 3
    assert kinds.count("PodDisruptionBudget") == 3
    assert {"ConfigMap", "Secret", "Job", "ServiceAccount"} <= set(kinds)
    for absent in ("HorizontalPodAutoscaler", "Ingress", "ServiceMonitor"):
        assert absent not in kinds
    for component in COMPONENTS:
        deployment = named(docs, "Deployment", f"shelf-{component}")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][0] == component
        assert container["ports"] == [
            {"name": "http", "containerPort": PORTS[component], "protocol": "TCP"}
        ]
    assert named(docs, "Deployment", "shelf-reconciler")["spec"]["replicas"] == 2
    assert all(d["metadata"]["namespace"] == "ml" for d in docs)


@needs_helm
def test_config_and_secret() -> None:
    docs = render("default")
    config = named(docs, "ConfigMap", "shelf-config")["data"]
    assert config["SHELF_ARTIFACT_URI"] == "s3://shelf-models/prod"
    for key in ("SHELF_HOST", "SHELF_GATEWAY_HOST", "SHELF_RECONCILER_HOST"):
        assert config[key] == "0.0.0.0"
    assert config["SHELF_HOME"] == "/var/lib/shelf"
    assert "SHELF_S3_ENDPOINT_URL" not in config  # empty settings are left out, not ""
    assert all(isinstance(v, str) for v in config.values())
    secrets = [
        s
        for s in of_kind(docs, "Secret")
        if "helm.sh/hook" not in s["metadata"].get("annotations", {})
    ]
    assert len(secrets) == 1
    data = {k: base64.b64decode(v).decode() for k, v in secrets[0]["data"].items()}
    ci = load_yaml(CI_VALUES / "default-values.yaml")["secrets"]
    assert json.loads(data["tokens.json"]) == ci["tokens"]
    assert data["database-url"] == ci["databaseUrl"]
    assert len(data["secret-key"]) >= 32
    for doc in docs:  # secrets live in Secrets only, never in a ConfigMap, env value or label
        if doc["kind"] != "Secret":
            assert "not-a-real-password" not in json.dumps(doc), doc["kind"]
            assert "ci-token-0123456789abcdef" not in json.dumps(doc), doc["kind"]


@needs_helm
def test_api_gets_tokens_file_and_every_role_gets_secrets() -> None:
    docs = render("default")
    for component in COMPONENTS:
        spec = named(docs, "Deployment", f"shelf-{component}")["spec"]["template"]["spec"]
        env = env_of(spec["containers"][0])
        assert env["SHELF_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["SHELF_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "shelf"
        assert env["SHELF_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "secret-key"
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["optional"] is True
        assert spec["containers"][0]["envFrom"] == [{"configMapRef": {"name": "shelf-config"}}]
    api = named(docs, "Deployment", "shelf-api")["spec"]["template"]["spec"]
    env = env_of(api["containers"][0])
    assert env["SHELF_TOKENS_FILE"]["value"] == "/etc/shelf/tokens/tokens.json"
    tokens = next(v for v in api["volumes"] if v["name"] == "tokens")
    assert tokens["secret"] == {
        "secretName": "shelf",
        "defaultMode": 0o440,
        "items": [{"key": "tokens.json", "path": "tokens.json"}],
    }


@needs_helm
@pytest.mark.parametrize("name", ["default", "full", "existing-secret"])
def test_pods_are_hardened(name: str) -> None:
    docs = render(name)
    specs = list(pod_specs(docs))
    assert len(specs) == 4  # three roles and the migration Job
    for doc, spec in specs:
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, what
        assert pod["runAsUser"] == 10001, what
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, what
        assert spec["automountServiceAccountToken"] is False, what
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, what
            assert sc["runAsUser"] == 10001, what
            assert sc["readOnlyRootFilesystem"] is True, what
            assert sc["allowPrivilegeEscalation"] is False, what
            assert sc["capabilities"]["drop"] == ["ALL"], what
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, what
            assert "limits" in container["resources"] and "requests" in container["resources"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            for path in ("/tmp", "/var/lib/shelf"):
                assert "emptyDir" in volumes[mounts[path]], f"{what}: {path}"


@needs_helm
@pytest.mark.parametrize("name", ["default", "full"])
def test_probes(name: str) -> None:
    docs = render(name)
    for component in COMPONENTS:
        container = named(docs, "Deployment", f"shelf-{component}")["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


@needs_helm
@pytest.mark.parametrize("name", ["default", "full", "existing-secret"])
def test_labels_and_selectors(name: str) -> None:
    docs = render(name)
    for doc in docs:
        labels = doc["metadata"]["labels"]
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        assert labels["app.kubernetes.io/name"] == "shelf", what
        assert labels["app.kubernetes.io/instance"] == "shelf", what
        assert labels["app.kubernetes.io/managed-by"] == "Helm", what
        assert labels["app.kubernetes.io/version"], what
        assert labels["helm.sh/chart"] == "shelf-0.1.0", what
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for deployment in of_kind(docs, "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert selector["app.kubernetes.io/component"] == component
        assert "helm.sh/chart" not in selector and "app.kubernetes.io/version" not in selector
        service = services[deployment["metadata"]["name"]]
        assert service["spec"]["selector"] == selector
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert "checksum/config" in annotations
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(
            selector == d["spec"]["selector"]["matchLabels"] for d in of_kind(docs, "Deployment")
        )


@needs_helm
def test_migration_job_is_a_pre_install_and_pre_upgrade_hook() -> None:
    docs = render("default")
    (job,) = of_kind(docs, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Its Secret is a hook too, created before it: the release's Secret does not exist yet.
    ref = env_of(container)["SHELF_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    hook_secret = named(docs, "Secret", ref["name"])
    hook = hook_secret["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    assert ref["key"] in hook_secret["data"]


@needs_helm
def test_gateway_drains_on_shutdown() -> None:
    docs = render("default")
    values = default_values()["gateway"]
    spec = named(docs, "Deployment", "shelf-gateway")["spec"]["template"]["spec"]
    sleep = int(spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert sleep == values["preStopSleepSeconds"]
    upstream_timeout = default_values()["config"]["gateway"]["upstreamTimeoutS"]
    assert spec["terminationGracePeriodSeconds"] > sleep + upstream_timeout


@needs_helm
def test_full_render_hpa_ingress_service_monitor() -> None:
    docs = render("full")
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "shelf-gateway",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert "replicas" not in named(docs, "Deployment", "shelf-gateway")["spec"]

    ingresses = {i["metadata"]["name"]: i for i in of_kind(docs, "Ingress")}
    assert set(ingresses) == {"shelf-api", "shelf-gateway"}
    for name, ingress in ingresses.items():
        assert ingress["apiVersion"] == "networking.k8s.io/v1"
        assert ingress["spec"]["ingressClassName"] == "nginx"
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == name
    assert ingresses["shelf-api"]["spec"]["tls"] == [
        {"hosts": ["shelf.example.com"], "secretName": "shelf-tls"}
    ]

    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    for service in of_kind(docs, "Service"):  # every role's Service is scraped
        assert selector.items() <= service["metadata"]["labels"].items()

    config = named(docs, "ConfigMap", "shelf-config")["data"]
    assert config["SHELF_S3_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
    assert config["SHELF_FEEDBACK_TTL_HOURS"] == "48"
    secret = named(docs, "Secret", "shelf")["data"]
    assert base64.b64decode(secret["secret-key"]).decode() == "a-fixed-hmac-key-for-all-gateways"
    assert base64.b64decode(secret["aws-access-key-id"]).decode() == "minio"
    sa = named(docs, "ServiceAccount", "shelf")
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]


@needs_helm
def test_existing_secret() -> None:
    docs = render("existing-secret")
    assert of_kind(docs, "Secret") == []  # neither the release's nor the migration hook's
    keys = load_yaml(CI_VALUES / "existing-secret-values.yaml")["secrets"]["existingSecretKeys"]
    for _, spec in pod_specs(docs):
        env = env_of(spec["containers"][0])
        ref = env["SHELF_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "shelf-credentials", "key": keys["databaseUrl"]}
    api = named(docs, "Deployment", "shelf-api")["spec"]["template"]["spec"]
    env = env_of(api["containers"][0])
    assert env["SHELF_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["key"] == keys["secretKey"]
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    tokens = next(v for v in api["volumes"] if v["name"] == "tokens")["secret"]
    assert tokens["secretName"] == "shelf-credentials"
    assert tokens["items"] == [{"key": keys["tokens"], "path": "tokens.json"}]
    assert "affinity" not in api  # podAntiAffinityPreset: none
    reconciler = named(docs, "Deployment", "shelf-reconciler")["spec"]["template"]["spec"]
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution"
        in reconciler["affinity"]["podAntiAffinity"]
    )
    # One API replica: a PodDisruptionBudget of minAvailable 1 would block every node drain.
    assert "shelf-api" not in {p["metadata"]["name"] for p in of_kind(docs, "PodDisruptionBudget")}


KUBE_VERSIONS = ["1.25.0", "latest"]


@needs_helm
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", ["default", "full", "existing-secret"])
def test_manifests_validate_against_kubernetes_schemas(name: str, kube_version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version() if kube_version == "latest" else kube_version
    validated = 0
    for doc in render(name):
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: its shape is checked in test_full_render_hpa_ingress_service_monitor
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc.message}")
        validated += 1
    assert validated >= 10


# --------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued instruction"
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def image_of(stage: list[tuple[str, str]]) -> str:
    """The FROM image of a stage, with ARG defaults declared before the first FROM substituted."""
    args = {}
    for keyword, rest in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
    image = stage[0][1].split()[0]
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        assert image_of(stage) == "python:3.11-slim"
    builder_name = stages[0][0][1].split()[-1]
    final = stages[-1]
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert any(f"--from={builder_name}" in c for c in copies), copies


def test_dockerfile_final_stage_runs_shelf_as_non_root() -> None:
    final = dockerfile_stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user == "10001"  # numeric, so that runAsNonRoot can verify it
    (entrypoint,) = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["shelf"]
    (cmd,) = [rest for keyword, rest in final if keyword == "CMD"]
    assert json.loads(cmd)[0] in ("server", "api")
    exposed = {int(p) for keyword, rest in final if keyword == "EXPOSE" for p in rest.split()}
    assert exposed == {8000, 8080, 8090}


def test_dockerfile_final_stage_has_no_build_tools() -> None:
    final = dockerfile_stages()[-1]
    text = " ".join(rest for keyword, rest in final if keyword == "RUN").lower()
    for tool in ("gcc", "g++", "build-essential", "make ", "clang", "python3-dev", "pip install"):
        assert tool not in text, tool


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**"  # ignore everything, then allow what the build copies
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for stage in dockerfile_stages():
        for keyword, rest in stage:
            if keyword == "COPY" and "--from" not in rest:
                copied.update(p.rstrip("/").removeprefix("./") for p in rest.split()[:-1])
    assert copied and copied <= allowed, copied - allowed
    for ignored in ("**/__pycache__", "**/*.py[cod]"):
        assert ignored in lines


@needs_helm
def test_gateway_workers_reach_the_command_line() -> None:
    default = named(render("default"), "Deployment", "shelf-gateway")
    assert default["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "gateway", "--workers", str(default_values()["gateway"]["workers"]),
    ]  # fmt: skip
    docs = render("default", "--set", "gateway.workers=3")
    container = named(docs, "Deployment", "shelf-gateway")["spec"]["template"]["spec"]
    assert container["containers"][0]["args"] == ["gateway", "--workers", "3"]
    assert "workers" in render_error("--set", "gateway.workers=0")
