"""A real tmpfs for full-disk and read-only tests: mounted as root, or inside a user and mount
namespace of its own (tests/test_faults_run.py: test_in_a_mount_namespace)."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mounts a tmpfs: runs as root or in test_in_a_mount_namespace")


@contextmanager
def tmpfs(folder: Path, options: str):
    """``folder`` as a tmpfs mounted with ``options`` (e.g. "size=8m", "ro,size=64k")."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
