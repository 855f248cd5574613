"""HTTP and gRPC routes, the top layer: sampling (/sample, /forward), the SSE stream, info (/schedule,
/model), models, admin (reload), ops (/healthz, /readyz, /metrics), the Open Inference Protocol
(/v2, and over gRPC: grpc_v2.py with its server, grpc_server.py) and the offline API docs.

May import every layer below: ``app.wire``, ``app.serving``, ``app.edge`` (rate limits, the
request context), ``app.process.randomness``, ``app.config``, ``app.errors``, ``app.metrics``. Nothing imports routes
but ``app.main``.
"""
