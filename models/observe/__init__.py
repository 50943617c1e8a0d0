"""What both edges report: log lines with request ids, and Prometheus metrics."""
