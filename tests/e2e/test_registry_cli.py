"""The registry end to end: a real server process, driven by the `shelf` CLI, on both backends."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import httpx
import pytest

from controller.config import ControllerSettings
from registry.storage.base import blob_key
from tests.e2e.conftest import ShelfServer, make_server
from tests.registry.api_helpers import sha

pytestmark = pytest.mark.e2e


def make_model_dir(root: Path, seed: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "weights").mkdir(exist_ok=True)
    (root / "weights" / "layer1.bin").write_bytes(os.urandom(300_000))
    (root / "config.json").write_text(json.dumps({"seed": seed}))
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_register_list_show_download_alias_history(
    shelf_server: ShelfServer, tmp_path: Path
) -> None:
    model_dir = make_model_dir(tmp_path / "model", seed=1)
    out = shelf_server.cli(
        "register",
        "fraud",
        str(model_dir),
        "--source",
        "git+https://example/repo@abc1234",
        "--data-window",
        "2026-01-01..2026-06-30",
        "--serving-url",
        "http://127.0.0.1:9001",
        "--tag",
        "team=risk",
        "--json",
    )
    first = json.loads(out.stdout)
    assert first["version"] == 1 and first["git_commit"] == "abc1234"
    assert first["tags"] == {"team": "risk"}
    assert first["data_window_end"].startswith("2026-06-30")

    (model_dir / "config.json").write_text(json.dumps({"seed": 2}))
    second = shelf_server.cli("register", "fraud", str(model_dir))
    assert "registered fraud@2" in second.stdout
    assert "already stored" in second.stdout  # the unchanged weights were not uploaded again

    listed = json.loads(shelf_server.cli("versions", "fraud", "--json").stdout)
    assert [v["version"] for v in listed["items"]] == [2, 1]
    assert "fraud" in shelf_server.cli("versions", "fraud").stdout

    shelf_server.cli("alias", "set", "fraud", "champion", "1")
    champion = json.loads(shelf_server.cli("show", "fraud@champion", "--json").stdout)
    latest = json.loads(shelf_server.cli("show", "fraud", "--json").stdout)
    assert champion["version"] == 1 and latest["version"] == 2
    assert "champion" in shelf_server.cli("show", "fraud@1").stdout

    shelf_server.cli("download", "fraud@1", "-o", str(tmp_path / "out"))
    expected = tree(model_dir)
    expected["config.json"] = json.dumps({"seed": 1}).encode()
    assert tree(tmp_path / "out") == expected

    events = json.loads(shelf_server.cli("history", "fraud", "--json").stdout)["items"]
    assert [e["kind"] for e in events] == [
        "alias.set",
        "version.registered",
        "version.registered",
        "model.created",
    ]
    assert all(e["actor"] for e in events)


def test_single_file_model_round_trip(shelf_server: ShelfServer, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(os.urandom(2_500_000))
    shelf_server.cli("register", "tiny", str(model))
    shelf_server.cli("download", "tiny@1", "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "model.onnx").read_bytes() == model.read_bytes()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "Bad@1"], 1, "invalid model name"),
        (["show", "nope@1"], 6, "not found"),
        (["register", "fraud", "/does/not/exist"], 1, "does not exist"),
        (["alias", "set", "nope", "champion", "1"], 6, "not found"),
        (["register", "fraud", ".", "--data-window", "2026-01-01"], 1, "START..END"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    shelf_server: ShelfServer, args: list[str], code: int, message: str
) -> None:
    result = shelf_server.cli(*args, check=False)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreachable_server_is_exit_10(shelf_server: ShelfServer) -> None:
    result = shelf_server.cli(
        "versions", "fraud", check=False, env={"SHELF_URL": "http://127.0.0.1:9"}
    )
    assert result.returncode == 10 and "cannot reach" in result.stderr


def _corrupt(settings: ControllerSettings, digest: str) -> None:
    uri = settings.resolved_artifact_uri
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://")) / blob_key(digest)
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")
    key = f"{prefix.rstrip('/')}/{blob_key(digest)}" if prefix else blob_key(digest)
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))


def test_corruption_in_the_store_fails_the_download_loudly(
    shelf_server: ShelfServer, tmp_path: Path
) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(os.urandom(3_000_000))
    shelf_server.cli("register", "fraud", str(model))
    _corrupt(shelf_server.settings, sha(model.read_bytes()))
    result = shelf_server.cli("download", "fraud@1", "-o", str(tmp_path / "out"), check=False)
    assert result.returncode == 9, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "m.bin").exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_the_server_cuts_a_corrupt_file_short_unless_the_client_checks_it_itself(
    shelf_server: ShelfServer, tmp_path: Path
) -> None:
    """A plain HTTP client (curl) relies on the server: it never gets every byte of a corrupt
    blob. ``shelf download`` checks size and sha256 itself and says so (``X-Shelf-Verify:
    client``): the server then sends the stored bytes unhashed, and the client refuses them."""
    model = tmp_path / "m.bin"
    model.write_bytes(os.urandom(3_000_000))
    shelf_server.cli("register", "fraud", str(model))
    _corrupt(shelf_server.settings, sha(model.read_bytes()))
    url = f"{shelf_server.url}/v1/models/fraud/versions/1/files/m.bin"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url, timeout=60)
    unhashed = httpx.get(url, headers={"X-Shelf-Verify": "client"}, timeout=60)
    assert len(unhashed.content) == 3_000_000
    assert sha(unhashed.content) != sha(model.read_bytes())


def test_tokens_gate_the_cli(backend_settings: ControllerSettings, tmp_path: Path) -> None:
    tokens = [
        {"name": "ci", "role": "publish", "token": "p" * 32},
        {"name": "oncall", "role": "deploy", "token": "d" * 32},
    ]
    server = make_server(backend_settings, tmp_path, SHELF_TOKENS=json.dumps(tokens))
    server.start()
    try:
        model = tmp_path / "m.bin"
        model.write_bytes(b"weights")
        denied = server.cli("register", "fraud", str(model), check=False)
        assert denied.returncode == 8 and "token" in denied.stderr
        server.cli("register", "fraud", str(model), env={"SHELF_TOKEN": "p" * 32})
        refused = server.cli(
            "alias", "set", "fraud", "champion", "1", check=False, env={"SHELF_TOKEN": "p" * 32}
        )
        assert refused.returncode == 8 and "deploy" in refused.stderr
        server.cli("alias", "set", "fraud", "champion", "1", env={"SHELF_TOKEN": "d" * 32})
        events = json.loads(
            server.cli("history", "fraud", "--json", env={"SHELF_TOKEN": "d" * 32}).stdout
        )["items"]
        assert [e["actor"] for e in events[:2]] == ["oncall", "ci"]
    finally:
        server.stop()


def test_big_file_is_sent_while_hashed_and_never_twice(
    shelf_server: ShelfServer, tmp_path: Path
) -> None:
    model_dir = tmp_path / "big"
    model_dir.mkdir()
    weights = os.urandom(9 * 1024 * 1024)  # above the size that is sent while hashed
    (model_dir / "weights.bin").write_bytes(weights)
    first = shelf_server.cli("register", "llm", str(model_dir))
    assert "9.0 MiB uploaded" in first.stdout, first.stdout
    second = shelf_server.cli("register", "llm", str(model_dir))
    assert "0 B uploaded" in second.stdout and "already stored" in second.stdout, second.stdout
    out = tmp_path / "out"
    shelf_server.cli("download", "llm@2", "-o", str(out))
    assert (out / "weights.bin").read_bytes() == weights
