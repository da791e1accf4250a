"""The registry API in-process, on both backends (sqlite+local and postgresql+s3)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from registry.config import Settings
from shelf.app import create_app
from tests.registry.api_helpers import register, sha, upload


@pytest.fixture
def api(backend_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(backend_settings), raise_server_exceptions=False) as client:
        yield client


def blob_count(api: TestClient) -> int:
    store = api.app.state.shelf.store  # type: ignore[attr-defined]
    return sum(1 for _ in store.list_blobs())


def test_register_show_and_download_bit_exact(api: TestClient) -> None:
    files = {"model.bin": bytes(range(256)) * 1000, "conf/params.json": b'{"depth": 3}'}
    created = register(
        api,
        "fraud",
        files,
        source_uri="git+https://example/repo@abc1234",
        data_window_start="2026-01-01",
        data_window_end="2026-06-30",
        serving_url="http://127.0.0.1:9001",
        tags={"team": "risk"},
    )
    assert created["version"] == 1
    assert created["data_window_start"].startswith("2026-01-01T00:00:00")
    shown = api.get("/v1/models/fraud/versions/1").json()
    assert {f["path"]: f["digest"] for f in shown["files"]} == {p: sha(d) for p, d in files.items()}
    assert shown["tags"] == {"team": "risk"} and shown["serving_url"] == "http://127.0.0.1:9001"
    for path, data in files.items():
        response = api.get(f"/v1/models/fraud/versions/1/files/{path}")
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["x-shelf-digest"] == f"sha256:{sha(data)}"


def test_unchanged_files_are_stored_once(api: TestClient) -> None:
    files = {"a.bin": b"a" * 5000, "b.bin": b"b" * 7000}
    register(api, "fraud", files)
    before = blob_count(api)
    missing = api.post("/v1/blobs/missing", json={"digests": [sha(d) for d in files.values()]})
    assert missing.json()["missing"] == []
    second = register(api, "fraud", files)
    assert second["version"] == 2
    assert blob_count(api) == before == 2
    third = register(api, "fraud", {**files, "c.bin": b"new"})
    assert third["version"] == 3 and blob_count(api) == 3
    assert (
        second["manifest_digest"]
        == api.get("/v1/models/fraud/versions/1").json()["manifest_digest"]
    )


def test_the_store_says_whether_to_send_the_digest_first(
    api: TestClient, backend_settings: Settings
) -> None:
    """S3 has no rename: a digest-last upload would be staged and copied, so clients of an S3
    registry hash first; a local folder renames either kind into place."""
    answer = api.post("/v1/blobs/missing", json={"digests": []}).json()
    on_s3 = backend_settings.resolved_artifact_uri.startswith("s3://")
    assert answer == {"missing": [], "send_digest_first": on_s3}


def test_mismatched_upload_leaves_no_blob_and_no_version(api: TestClient) -> None:
    data = b"the real bytes"
    wrong = sha(b"something else")
    response = api.put(f"/v1/blobs/{wrong}", content=data)
    assert response.status_code == 422
    assert response.json()["error"] == "integrity_error"
    assert api.post("/v1/blobs/missing", json={"digests": [wrong]}).json()["missing"] == [wrong]
    assert blob_count(api) == 0
    manifest = [{"path": "m.bin", "size": len(data), "digest": wrong}]
    refused = api.post("/v1/models/fraud/versions", json={"files": manifest})
    assert refused.status_code == 409
    assert "not been uploaded" in refused.json()["message"]
    assert api.get("/v1/models/fraud").status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/models/Fraud/versions/1", None, 422),
        ("/v1/models/nope/versions/1", None, 404),
        ("/v1/models/nope", None, 404),
        ("/v1/blobs/not-a-digest", b"x", 422),
    ],
)
def test_errors_are_json_with_the_right_code(
    api: TestClient, path: str, body: bytes | None, status: int
) -> None:
    response = api.get(path) if body is None else api.put(path, content=body)
    assert response.status_code == status
    assert response.json()["error"] and response.json()["message"]


@pytest.mark.parametrize("bad_path", ["../escape", "/abs/path", "a/../../b", "a\\b"])
def test_manifest_paths_cannot_escape_the_version(api: TestClient, bad_path: str) -> None:
    digest = upload(api, b"x")
    response = api.post(
        "/v1/models/fraud/versions",
        json={"files": [{"path": bad_path, "size": 1, "digest": digest}]},
    )
    assert response.status_code == 422, response.text
    assert "path" in response.json()["message"]


def test_size_must_match_the_blob_and_bodies_are_validated(api: TestClient) -> None:
    digest = upload(api, b"four")
    wrong_size = api.post(
        "/v1/models/fraud/versions", json={"files": [{"path": "x", "size": 5, "digest": digest}]}
    )
    assert wrong_size.status_code == 422
    no_files = api.post("/v1/models/fraud/versions", json={"files": []})
    assert no_files.status_code == 422 and "files" in no_files.json()["message"]
    backwards = api.post(
        "/v1/models/fraud/versions",
        json={
            "files": [{"path": "x", "size": 4, "digest": digest}],
            "data_window_start": "2026-06-01",
            "data_window_end": "2026-01-01",
        },
    )
    assert backwards.status_code == 422 and "window" in backwards.json()["message"]


def test_versions_paginate_newest_first_and_filter_by_tag(api: TestClient) -> None:
    for i in range(5):
        register(
            api, "fraud", {"m.bin": f"v{i}".encode()}, tags={"parity": "even" if i % 2 else "odd"}
        )
    first = api.get("/v1/models/fraud/versions", params={"limit": 2}).json()
    assert [v["version"] for v in first["items"]] == [5, 4] and first["total"] == 5
    second = api.get(
        "/v1/models/fraud/versions", params={"limit": 2, "page_token": first["next_page_token"]}
    ).json()
    assert [v["version"] for v in second["items"]] == [3, 2]
    odd = api.get("/v1/models/fraud/versions", params={"tag": "parity=odd"}).json()
    assert [v["version"] for v in odd["items"]] == [5, 3, 1] and odd["total"] == 3


def test_aliases_move_resolve_and_are_audited(api: TestClient) -> None:
    register(api, "fraud", {"m": b"1"})
    register(api, "fraud", {"m": b"2"})
    assert api.put("/v1/models/fraud/aliases/champion", json={"version": 1}).status_code == 200
    assert api.get("/v1/models/fraud/versions/champion").json()["version"] == 1
    moved = api.put(
        "/v1/models/fraud/aliases/champion", json={"version": 2}, headers={"X-Shelf-Actor": "bob"}
    )
    assert moved.json()["version"] == 2 and moved.json()["updated_by"] == "bob"
    assert api.get("/v1/models/fraud/versions/champion").json()["aliases"] == ["champion"]
    assert api.put("/v1/models/fraud/aliases/champion", json={"version": 9}).status_code == 404
    events = api.get("/v1/models/fraud/events").json()["items"]
    kinds = [e["kind"] for e in events]
    assert kinds[:2] == ["alias.set", "alias.set"] and kinds.count("version.registered") == 2
    assert events[0]["payload"] == {
        "alias": "champion",
        "version": 2,
        "previous_version": 1,
        "reason": "",
    }
    assert events[0]["actor"] == "bob"
    assert api.delete("/v1/models/fraud/aliases/champion").status_code == 204
    assert api.get("/v1/models/fraud/versions/champion").status_code == 404


def test_only_tags_description_and_status_change(api: TestClient) -> None:
    register(api, "fraud", {"m": b"1"}, tags={"a": "1"})
    register(api, "fraud", {"m": b"2"})
    patched = api.patch(
        "/v1/models/fraud/versions/2",
        json={"status": "archived", "description": "bad calibration", "tags": {"b": "2"}},
    )
    assert patched.status_code == 200 and patched.json()["status"] == "archived"
    assert api.get("/v1/models/fraud/versions/latest").json()["version"] == 1
    immutable = api.patch("/v1/models/fraud/versions/1", json={"files": []})
    assert immutable.status_code == 422
    assert api.put("/v1/models/fraud/aliases/champion", json={"version": 2}).status_code == 422
    untagged = api.patch("/v1/models/fraud/versions/1", json={"remove_tags": ["a"]}).json()
    assert untagged["tags"] == {}


def test_concurrent_registrations_get_distinct_numbers(api: TestClient) -> None:
    digest = upload(api, b"shared")
    results: list[int] = []

    def one() -> None:
        response = api.post(
            "/v1/models/race/versions", json={"files": [{"path": "m", "size": 6, "digest": digest}]}
        )
        assert response.status_code == 201, response.text
        results.append(response.json()["version"])

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 9))


def test_healthz_and_readyz(api: TestClient) -> None:
    assert api.get("/healthz").json()["status"] == "ok"
    ready = api.get("/readyz").json()
    assert ready == {"ready": True, "checks": {"database": "ok", "artifact_store": "ok"}}


def test_digest_last_upload_is_verified_and_atomic(api: TestClient) -> None:
    data = bytes(range(256)) * 40_000  # ~10 MB: spans many chunks and write batches
    digest = sha(data)
    sent = api.post(
        "/v1/blobs", content=data + digest.encode(), headers={"X-Shelf-Size": str(len(data))}
    )
    assert sent.status_code == 201, sent.text
    assert sent.json() == {"digest": digest, "size": len(data), "created": True}
    assert api.post("/v1/blobs/missing", json={"digests": [digest]}).json()["missing"] == []
    assert api.get("/v1/blobs/missing").status_code == 405

    wrong = sha(b"something else")
    rejected = [
        api.post(
            "/v1/blobs", content=b"abc" + wrong.encode(), headers={"X-Shelf-Size": "3"}
        ),  # digest does not match
        api.post("/v1/blobs", content=b"abc" + b"x" * 64, headers={"X-Shelf-Size": "3"}),
        api.post("/v1/blobs", content=b"abc" + sha(b"abc").encode() + b"!"),  # no size
        api.post(
            "/v1/blobs", content=b"abc" + sha(b"abc").encode() + b"!", headers={"X-Shelf-Size": "3"}
        ),  # too long
        api.post("/v1/blobs", content=b"ab", headers={"X-Shelf-Size": "3"}),  # too short
    ]
    assert [r.status_code for r in rejected] == [422] * 5, [r.text for r in rejected]
    assert all(r.json()["message"] for r in rejected)
    assert blob_count(api) == 1


def test_reference_profile_is_validated_at_registration(api: TestClient) -> None:
    digest = upload(api, b"weights")
    files = [{"path": "m.bin", "size": 7, "digest": digest}]
    bad = {"samples": 10, "class_frequencies": {"a": 0.9}}
    response = api.post("/v1/models/prof/versions", json={"files": files, "reference_profile": bad})
    assert response.status_code == 422
    assert "sum to 1" in response.text
    good = {"samples": 10, "class_frequencies": {"a": 0.9, "b": 0.1}, "accuracy": 0.8}
    version = register(api, "prof", {"m.bin": b"weights"}, reference_profile=good)
    assert version["reference_profile"]["format"] == "shelf.reference_profile/1"
    assert version["reference_profile"]["accuracy"] == 0.8
