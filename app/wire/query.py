"""Query-string models, validated in one pydantic call and documented as FastAPI documents them.

FastAPI parses an ``Annotated[Model, Query()]`` parameter field by field on every request,
resolving each field's aliases and inspecting its annotation each time: about a third of the
event loop's work on a ``GET /sample`` (``benchmarks/RESULTS.md``, the serving engine). ``parse_query`` gives the
same result in one ``model_validate``:

- a known field takes its last value (``?n=1&n=2`` is n = 2), as FastAPI's ``QueryParams.get``;
- an unknown key goes to the model's ``extra`` policy (a repeated one as a list), as FastAPI's;
- errors are FastAPI's ``RequestValidationError`` with ``("query", field)`` locations, so a bad
  query gets the same 422 (``app.errors``).

A route that parses its own query documents it with ``openapi_extra=query_openapi(Model)``:
the parameters FastAPI itself renders for ``Annotated[Model, Query()]``, computed once.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_query(model: type[M], request: Request) -> M:
    """``request``'s query string as ``model``; ``RequestValidationError`` (422) naming each bad field."""
    known = model.model_fields
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in known:
            values[key] = value  # the last one wins
        elif key in extra:
            previous = extra[key]
            extra[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            extra[key] = value
    ordered = {name: values[name] for name in known if name in values}  # errors in field order, as FastAPI's
    ordered.update(extra)
    try:
        return model.model_validate(ordered)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("query", *error["loc"])} for error in exc.errors(include_url=False)]) from None


@functools.cache
def query_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model``'s fields as query parameters, as FastAPI renders them."""
    scratch = FastAPI()

    async def route(params: BaseModel) -> None:
        """Never served: FastAPI renders its parameters."""

    route.__annotations__ = {"params": Annotated[model, Query()], "return": None}  # resolved, not postponed
    scratch.get("/")(route)
    parameters = scratch.openapi()["paths"]["/"]["get"]["parameters"]
    if "$ref" in repr(parameters):  # a component would have to be copied into the app's schema too
        raise TypeError(f"{model.__name__}: query parameters that refer to schema components are not supported")
    return {"parameters": parameters}
