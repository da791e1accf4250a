"""Aliases such as champion: list, move, delete; every move is an audit event."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from registry.api.deps import AppContext, caller, context, requires
from registry.api.params import AliasName, ModelName
from registry.api.schemas import (
    AliasOut,
    AliasSet,
)
from registry.auth import Principal
from registry.config import Role
from registry.db.tables import Alias
from registry.services import aliases
from registry.services.lookup import get_model

router = APIRouter(prefix="/v1", tags=["aliases"])


@router.get("/models/{name}/aliases", response_model=list[AliasOut])
def get_aliases(
    name: ModelName, ctx: AppContext = Depends(context), _: Principal = Depends(caller)
) -> list[AliasOut]:
    with ctx.database.session() as session:
        model = get_model(session, name)
        return [AliasOut.of(model, a) for a in aliases.list_aliases(session, model)]


@router.put("/models/{name}/aliases/{alias}", response_model=AliasOut)
def put_alias(
    name: ModelName,
    alias: AliasName,
    body: AliasSet,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.deploy)),
) -> AliasOut:
    with ctx.database.session() as session:
        row: Alias = aliases.set_alias(session, name, alias, body.version, who.name, body.reason)
        return AliasOut.of(get_model(session, name), row)


@router.delete("/models/{name}/aliases/{alias}", status_code=204)
def delete_alias(
    name: ModelName,
    alias: AliasName,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.deploy)),
) -> None:
    with ctx.database.session() as session:
        aliases.delete_alias(session, name, alias, who.name)
