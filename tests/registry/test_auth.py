import pytest

from registry.auth import Authenticator
from registry.config import Role, TokenSpec
from registry.errors import Forbidden, Unauthorized

TOKENS = [
    TokenSpec(name="reader", role=Role.read, token="r" * 32),
    TokenSpec(name="ci", role="publish", token="p" * 32),  # type: ignore[arg-type]
]


def test_open_mode_names_the_actor_and_allows_everything() -> None:
    principal = Authenticator([]).authenticate(None, "alice")
    assert principal.name == "alice"
    assert principal.require(Role.admin) is principal


def test_tokens_map_to_roles_in_order() -> None:
    auth = Authenticator(TOKENS)
    ci = auth.authenticate("Bearer " + "p" * 32, "spoofed")
    assert ci.name == "ci"
    assert ci.require(Role.read) and ci.require(Role.publish)
    with pytest.raises(Forbidden):
        ci.require(Role.deploy)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer " + "x" * 32])
def test_missing_or_unknown_tokens_are_rejected(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        Authenticator(TOKENS).authenticate(header)


def test_token_spec_rejects_unknown_roles_and_short_tokens() -> None:
    with pytest.raises(ValueError):
        TokenSpec(name="x", role="root", token="t" * 32)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TokenSpec(name="x", role=Role.read, token="short")
