"""``GET /sample/stream``: the reverse chain as server-sent events, frame by frame as the engine makes them.

The engine calls the job's ``on_frame`` on its own thread once per trajectory frame (x_T, every
k-th step, x_0); ``loop.call_soon_threadsafe`` hands each frame to this request's queue on the
event loop, and the future's completion follows the last frame through the same queue, so
events leave in the engine's order. The queue holds at most the request's frames, whose total
SWIRL_MAX_RESPONSE_POINTS already bounds. A client that disconnects (or a stream past
SWIRL_REQUEST_TIMEOUT_S) cancels the job: its rows leave the engine at the next tick.

Events: ``frame`` ``{"index", "t", "points"}`` per frame, then ``done`` with the answer's
metadata and its timings, or ``error`` ``{"error", "status"}`` when the chain fails midway.
Errors found before the first frame (422, 406, 503, 504) are ordinary JSON answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from app.edge.rate_limit import charge
from app.errors import RequestTimeout
from app.routes.sampling import ENCODE_OFF_LOOP_POINTS, ERRORS, SERVER_TIMING_HEADER, ClientGone, evaluations, sample_job, sample_metadata, submit
from app.serving.service import Service, ServiceDep
from app.serving.worker import SampleJob, SampleResult
from app.wire import encoding
from app.wire.encoding import EVENT_STREAM
from app.wire.negotiation import negotiate
from app.wire.query import parse_query, query_openapi
from app.wire.schemas import ErrorResponse, SampleRequest
from model.engine import DeadlineExceeded, NonFiniteError, frame_count

log = logging.getLogger("swirl.stream")
router = APIRouter(tags=["sampling"])

DEFAULT_EVERY = 1  # without trajectory_every, every step is a frame

Item = tuple[int, np.ndarray] | None  # a frame, or None once the job's future is done

STREAM_EXAMPLE = (
    'event: frame\ndata: {"index":0,"t":50,"points":[[0.12,-1.3],[0.9,0.4]]}\n\n'
    'event: frame\ndata: {"index":1,"t":49,"points":[[0.11,-1.29],[0.88,0.41]]}\n\n'
    "…\n\n"
    'event: done\ndata: {"n":2,"seed":7,"sampler":"ddpm","steps":50,"eta":0.0,"model":"3f1c…","space":"model",'
    '"frames":51,"trajectory_t":[50,49,…,0],"server_timing":{"queue_ms":0.4,"compute_ms":35.1,"encode_ms":2.0}}\n\n'
)
EVENT_SCHEMA = {  # each event (OpenAPI before 3.2: `schema` describes one event of the stream)
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["frame", "done", "error"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "description": "frame: {index, t, points}; done: the metadata, frames, trajectory_t, server_timing; error: {error, status}",
            },
        },
    },
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "text/event-stream: one `frame` event per trajectory frame, x_T … x_0, then `done` (or `error`)",
        "content": {EVENT_STREAM: {"schema": EVENT_SCHEMA, "example": STREAM_EXAMPLE}},
        "headers": {"Server-Timing": {**SERVER_TIMING_HEADER, "description": "queue wait only (the stream starts with the first frame); `done` has all three"}},
    },
    **ERRORS,
    406: {"model": ErrorResponse, "description": "the Accept header does not allow text/event-stream"},
}


class FrameQueue:
    """Frames from the engine thread to the event loop, in order, then the end of the job."""

    def __init__(self, loop: asyncio.AbstractEventLoop, frames: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=frames + 1)  # every frame, and the end

    def on_frame(self, t: int, points: np.ndarray) -> None:  # engine thread
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (t, points))

    def on_done(self, _: object) -> None:  # engine thread (or wherever the future ends)
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


class JobStream(StreamingResponse):
    """A stream that cancels its job however it ends early: disconnect, error, or never iterated."""

    def __init__(self, job: SampleJob, content: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.job.future.done():
                self.job.cancel()


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _first(frames: FrameQueue, request: Request, timeout: float) -> Item:
    """The first item, unless the client leaves (ClientGone) or the timeout passes (RequestTimeout) first."""
    first = asyncio.ensure_future(frames.queue.get())
    gone = asyncio.ensure_future(_until_disconnect(request))
    try:
        done, _ = await asyncio.wait({first, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if first in done:
        return first.result()
    first.cancel()
    if gone in done:
        raise ClientGone
    raise RequestTimeout(f"the request took longer than {timeout:g} s (SWIRL_REQUEST_TIMEOUT_S)")


def _failure(job: SampleJob) -> dict[str, Any]:
    """The error event for a job whose future ended without points."""
    if job.future.cancelled():
        return {"error": "cancelled", "status": 499}
    error = job.future.exception()
    if isinstance(error, DeadlineExceeded):
        return {"error": f"the deadline passed mid-chain: {error}", "status": 504}
    if isinstance(error, NonFiniteError):
        return {"error": f"the model produced non-finite values (NaN or inf); no more points: {error}", "status": 500}
    log.error("stream failed: %r", error)
    return {"error": f"internal error: {type(error).__name__}", "status": 500}


async def _events(
    service: Service, job: SampleJob, frames: FrameQueue, first: Item, metadata: dict[str, Any], deadline: float, submitted: float
) -> AsyncIterator[bytes]:
    space, normalisation = metadata["space"], service.models.get(metadata.get("model_name")).checkpoint.normalisation
    encode_s, item, finished = 0.0, first, False
    ts: list[int] = []

    def encode(index: int, t: int, points: np.ndarray) -> tuple[bytes, float]:
        started = time.perf_counter()
        event = encoding.sse_event("frame", {"index": index, "t": t, "points": encoding.to_space(points, space, normalisation)})
        return event, time.perf_counter() - started

    try:
        while item is not None:
            t, points = item
            event, seconds = await run_in_threadpool(encode, len(ts), t, points) if job.n > ENCODE_OFF_LOOP_POINTS else encode(len(ts), t, points)
            encode_s += seconds
            ts.append(t)
            yield event
            remaining = deadline - time.monotonic()
            try:
                item = await asyncio.wait_for(frames.queue.get(), timeout=max(remaining, 0.0))
            except TimeoutError:
                service.metrics.rejected.labels(reason="timeout").inc()
                message = f"the request took longer than {service.worker.timeout_s(job):g} s (timeout_ms or SWIRL_REQUEST_TIMEOUT_S)"
                yield encoding.sse_event("error", {"error": message, "status": 504})
                return
        finished = True
        if job.future.cancelled() or job.future.exception() is not None:
            yield encoding.sse_event("error", _failure(job))
            return
        result: SampleResult = job.future.result()
        timing = {"queue_ms": result.queue_seconds * 1000, "compute_ms": result.compute_seconds * 1000, "encode_ms": encode_s * 1000}
        service.metrics.points.labels(endpoint="sample/stream").inc(job.n)
        yield encoding.sse_event("done", {**metadata, "frames": len(ts), "trajectory_t": ts, "server_timing": timing})
    finally:
        if not finished and not job.future.done():
            # the client went away (the response task was cancelled) or the stream timed out
            job.cancel()
            service.metrics.rejected.labels(reason="client_gone").inc()
            log.info("stream of %d points cancelled after %d frame(s), %.2f s", job.n, len(ts), time.perf_counter() - submitted)


@router.get(
    "/sample/stream",
    responses=RESPONSES,
    summary="Stream the reverse chain (server-sent events)",
    response_class=StreamingResponse,
    openapi_extra=query_openapi(SampleRequest),
)
async def sample_stream(service: ServiceDep, request: Request) -> Response:
    """The parameters of ``GET /sample``; ``trajectory_every`` defaults to 1 (every step). One ``frame`` event per
    trajectory frame, x_T … x_0, as the engine produces it, then ``done`` with the metadata and timings.
    ``SWIRL_MAX_RESPONSE_POINTS`` counts the frames as on ``/sample``; a client that disconnects stops its rows."""
    params = parse_query(SampleRequest, request)
    negotiate(request.headers.get("accept"), (EVENT_STREAM,))
    if params.trajectory_every is None:
        params = params.model_copy(update={"trajectory_every": DEFAULT_EVERY})
    job, steps = sample_job(params, service, "query", request)
    charge(request, points=params.n, evaluations=evaluations(job, steps))
    every = params.trajectory_every
    assert every is not None
    frames = FrameQueue(asyncio.get_running_loop(), frame_count(steps, every))
    job.on_frame = frames.on_frame
    job.future.add_done_callback(frames.on_done)
    submitted = time.perf_counter()
    submit(service, job)
    timeout = service.worker.timeout_s(job)
    deadline = time.monotonic() + timeout
    try:
        first = await _first(frames, request, timeout)
    except ClientGone:
        job.cancel()
        service.metrics.rejected.labels(reason="client_gone").inc()
        return Response(status_code=499)
    except RequestTimeout:
        job.cancel()
        service.metrics.rejected.labels(reason="timeout").inc()
        raise
    if first is None:  # ended before its first frame: the usual JSON answer for its error
        if job.future.cancelled():
            return Response(status_code=499)
        error = job.future.exception()
        if error is not None:
            raise error
    metadata = sample_metadata(params, job, steps, service)
    headers = {
        **encoding.metadata_headers(metadata),
        "Server-Timing": encoding.server_timing(queue_s=time.perf_counter() - submitted),
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",  # nginx and friends: pass events through as they come
    }
    return JobStream(job, _events(service, job, frames, first, metadata, deadline, submitted), media_type=EVENT_STREAM, headers=headers)
