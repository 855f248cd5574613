"""What crosses the wire: request and response schemas, query parsing, content negotiation,
and the encodings (JSON, NumPy ``.npy``, Open Inference Protocol binary tensors).

May import: ``model`` and third-party libraries only. Nothing else in ``app``: every other layer
imports this one.
"""
