"""What the service reports: log lines with request ids, Prometheus metrics, and the audit log
of admin actions.
"""
