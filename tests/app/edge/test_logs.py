"""Log set-up: JSON lines with the request id and extra fields; configuring twice keeps one handler."""

from __future__ import annotations

import io
import json
import logging

from app.edge.logs import REQUEST_ID, JsonFormatter, RequestIdFilter, configure_logging


def test_json_log_lines_are_one_object_each_with_the_request_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("swirl.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        token = REQUEST_ID.set("abc-123")
        try:
            logger.warning("served %s", "x\ny", extra={"status": 200, "path": "/sample"})
            try:
                raise ValueError("bad")
            except ValueError:
                logger.exception("failed")
        finally:
            REQUEST_ID.reset(token)
        logger.warning("outside a request")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # the newline in the message and the traceback stay inside their objects
    first, second, third = (json.loads(line) for line in lines)
    assert first["message"] == "served x\ny" and first["request_id"] == "abc-123" and first["status"] == 200 and first["path"] == "/sample"
    assert first["level"] == "warning" and first["logger"] == "swirl.test-json" and first["time"].endswith("Z")
    assert second["request_id"] == "abc-123" and "ValueError: bad" in second["exception"]
    assert "request_id" not in third


def test_configure_logging_twice_keeps_one_handler() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        configure_logging("info", "json")
        configure_logging("warning", "text")
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1 and not isinstance(added[0].formatter, JsonFormatter)
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)
