"""What the service tells operators: audit log, Prometheus metrics, structured logs."""
