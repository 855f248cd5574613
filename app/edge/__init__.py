"""The HTTP edge: pure-ASGI middleware that every request crosses before a route sees it.

Request context and ids, security headers, CORS, HEAD, per-client rate limits, the client's
address behind trusted proxies, body limits, access logs and the API docs' CSP.

May import: ``app.wire`` (error bodies are encoded there), ``app.process.randomness`` (request
ids), ``app.metrics``. Never ``app.serving`` or ``app.routes``: the edge knows nothing of the engine.
"""
