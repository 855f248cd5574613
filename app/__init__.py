"""Swirl's HTTP service: FastAPI routes over one worker that owns the device."""
