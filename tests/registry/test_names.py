import pytest

from registry.errors import InvalidInput
from registry.names import Reference, check_alias, check_manifest_path, check_model_name


@pytest.mark.parametrize("name", ["fraud", "a", "fraud-v2.1_x", "0model", "a" * 128])
def test_valid_model_names(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", "Fraud", "-x", ".x", "a b", "a/b", "a" * 129, "ü"])
def test_invalid_model_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_model_name(name)


@pytest.mark.parametrize("path", ["model.pkl", "weights/layer1.bin", "a/b/c.txt", ".hidden"])
def test_valid_manifest_paths(path: str) -> None:
    assert check_manifest_path(path) == path


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "x/..", "a/"]
)
def test_paths_that_escape_or_are_ambiguous_are_rejected(path: str) -> None:
    with pytest.raises(InvalidInput):
        check_manifest_path(path)


def test_reference_syntax() -> None:
    assert Reference.parse("fraud") == Reference("fraud")
    assert Reference.parse("fraud@latest") == Reference("fraud")
    assert Reference.parse("fraud@2") == Reference("fraud", version=2)
    assert Reference.parse("fraud@champion") == Reference("fraud", alias="champion")
    assert str(Reference.parse("fraud@champion")) == "fraud@champion"
    for bad in ["fraud@", "Fraud@1", "fraud@Champion", "@2"]:
        with pytest.raises(InvalidInput):
            Reference.parse(bad)


def test_aliases_cannot_look_like_versions() -> None:
    for bad in ["12", "latest", "Champion"]:
        with pytest.raises(InvalidInput):
            check_alias(bad)
