"""``engram status``: the API's GET /v1/status as a report that reads at a glance."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import msgspec
from engram_client import ApiError, ClientError, Engram

EXIT_UNREACHABLE = 1  # no answer, or not the answer of an Engram API
EXIT_REFUSED = 2  # the API answered with an error (a key that is not an admin's, say)


def print_status(
    url: str, key: str, *, top: int = 5, raw: bool = False, out: IO[str] = sys.stdout
) -> int:
    """Ask the API at ``url`` and print the report; the exit code."""
    try:
        with Engram(url, key, timeout=30) as engram:
            body: dict[str, Any] = msgspec.to_builtins(engram.status(top=top))
    except ApiError as exc:
        print(f"engram status: {url} answered {exc.status}: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED if 400 <= exc.status < 500 else EXIT_UNREACHABLE
    except ClientError as exc:  # no answer, or not an Engram API's
        print(f"engram status: the API at {url} is unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    out.write(json.dumps(body, indent=2) + "\n" if raw else report(url, body))
    return 0


def report(url: str, status: dict[str, Any]) -> str:
    """The status answer as text: a table of spaces, the queue, the top failure reasons."""
    lines = [f"Engram at {url}, {status['checked_at']}", ""]
    header = (
        "space",
        "pending",
        "retrying",
        "failed",
        "ready",
        "oldest-pending",
        "embedded-1m",
        "5m",
    )
    rows = [header] + [
        (
            s["space"],
            str(s["pending"]),
            str(s["retrying"]),
            str(s["failed"]),
            str(s["ready"]),
            _age(s["oldest_pending_seconds"]),
            str(s["embedded_last_minute"]),
            str(s["embedded_last_5_minutes"]),
        )
        for s in status["spaces"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    queue = status.get("queue")
    if queue is None:
        lines.append("queue: the broker did not answer")
    else:
        lines.append(
            f"queue {queue['queue']}: {queue['waiting']} waiting, {queue['in_flight']} in flight, "
            f"{queue['delayed']} delayed, {queue['dead']} dead"
        )
    failures = status.get("failures") or []
    lines.append("")
    lines.append("failure reasons:" if failures else "failure reasons: none")
    for f in failures:
        lines.append(f"  {f['count']:>6}  {f['space']}  {f['status']}  {_one_line(f['error'])}")
    return "\n".join(lines) + "\n"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
