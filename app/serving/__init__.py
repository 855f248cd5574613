"""The serving core around ``model.engine``: the worker that owns one engine per model, the model
repository (versions, verification, warm-up), reload without downtime, and the service facade
that routes call.

May import: ``model``, ``app.wire``, ``app.config``, ``app.errors``, ``app.metrics``. Never
``app.edge`` or ``app.routes``: the serving core knows nothing of HTTP requests.
"""
