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


@pytest.mark.parametrize(
    "path",
    [
        "D:/evil.txt",
        "c:evil.txt",
        "a/D:/x",
        "model.bin:stream",
        "a\nb",
        "a\rb",
        "tab\there",
        "\x7f",
    ],
)
def test_paths_another_platform_reads_differently_are_rejected(path: str) -> None:
    """A drive letter would resolve outside the output folder on Windows; control characters
    break terminals, logs and URLs."""
    with pytest.raises(InvalidInput):
        check_manifest_path(path)


@pytest.mark.parametrize("selector", ["²", "٣", "99999999999", "2147483648"])
def test_version_numbers_are_ascii_and_bounded(selector: str) -> None:
    with pytest.raises(InvalidInput):
        Reference.parse(f"fraud@{selector}")
    assert Reference.parse("fraud@2147483647").version == 2**31 - 1
