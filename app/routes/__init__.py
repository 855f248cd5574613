"""HTTP routes: sampling (/sample, /forward), info (/schedule, /model), ops (/healthz, /readyz, /metrics)."""
