"""Processes the tests start and check on."""

from __future__ import annotations


def running(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie holds no memory)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
