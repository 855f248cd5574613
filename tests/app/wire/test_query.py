"""app.wire.query parses a query string as FastAPI's ``Annotated[Model, Query()]`` does, answer for
answer, and documents it as FastAPI does: each query below goes to two routes of one app, one
parsed by FastAPI and one by ``parse_query``, and the two answers must be equal."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Query, Request
from pydantic import BaseModel

from app.wire.query import parse_query, query_openapi
from app.wire.schemas import ForwardRequest, SampleRequest

QUERIES = [
    "",
    "n=5",
    "n=5&n=7",  # the last one wins
    "n=abc",
    "n=",
    "n=1.5",
    "n=0&seed=-1&sampler=euler",  # several errors, in field order
    "seed=3&n=x",
    "bogus=1",
    "bogus=1&bogus=2&n=3",
    "sampler=ddim&steps=3&eta=0.5&space=data&model=swiss-roll",
    "eta=nan",
    "eta=true",
    "trajectory_every=0",
    "model=" + "m" * 500,
    "t=10",
    "t=",
    "t=10&n=3&seed=1",
    "n=%F0%9F%8C%80",  # not a number, in UTF-8
]


def scratch_app() -> FastAPI:
    app = FastAPI()

    def routes(model: type[BaseModel], name: str) -> None:
        async def by_fastapi(params: BaseModel) -> dict[str, object]:
            return params.model_dump()

        by_fastapi.__annotations__ = {"params": Annotated[model, Query()], "return": dict[str, object]}
        app.get(f"/fastapi/{name}")(by_fastapi)

        @app.get(f"/ours/{name}", openapi_extra=query_openapi(model))
        async def by_parse_query(request: Request) -> dict[str, object]:
            return parse_query(model, request).model_dump()

    routes(SampleRequest, "sample")
    routes(ForwardRequest, "forward")
    return app


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("name", ["sample", "forward"])
async def test_parse_query_answers_as_fastapi_does(query: str, name: str) -> None:
    transport = httpx.ASGITransport(app=scratch_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        theirs = await client.get(f"/fastapi/{name}?{query}")
        ours = await client.get(f"/ours/{name}?{query}")
    assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())


def test_the_openapi_parameters_are_fastapis() -> None:
    paths = scratch_app().openapi()["paths"]
    for name in ("sample", "forward"):
        theirs, ours = paths[f"/fastapi/{name}"]["get"]["parameters"], paths[f"/ours/{name}"]["get"]["parameters"]
        assert ours == theirs
        assert [p["name"] for p in ours] == list((SampleRequest if name == "sample" else ForwardRequest).model_fields)
