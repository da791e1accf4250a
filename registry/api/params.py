"""Path and query parameters shared by every route, with their bounds and patterns stated in
the schema: the OpenAPI document then says what the API accepts, and a number too big for the
database's integer columns is a 422 at the edge, never an overflow inside the driver."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from registry.names import ALIAS_PATTERN, MAX_NUMBER, MODEL_NAME_PATTERN, REFERENCE_PATTERN

ModelName = Annotated[
    str,
    Path(
        pattern=MODEL_NAME_PATTERN,
        max_length=128,
        description="1-128 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
    ),
]
AliasName = Annotated[
    str,
    Path(
        pattern=ALIAS_PATTERN,
        max_length=128,
        description="Like a model name, but neither a number nor 'latest'",
    ),
]
VersionNumber = Annotated[int, Path(ge=1, le=MAX_NUMBER)]
VersionRef = Annotated[
    str,
    Path(
        pattern=REFERENCE_PATTERN,
        max_length=128,
        description="A version number, an alias, or 'latest'",
    ),
]
RowId = Annotated[int, Path(ge=1, le=MAX_NUMBER)]
PageToken = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{1,10}$", description="next_page_token of the previous page"),
]
ModelPageToken = Annotated[
    str | None,
    Query(pattern=MODEL_NAME_PATTERN, description="next_page_token of the previous page"),
]
