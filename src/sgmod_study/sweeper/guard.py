"""Runs one trial command and ends its whole process tree when the sweeper is gone.

    python .../sgmod_study/sweeper/guard.py python src/train.py <overrides...>

The sweeper starts this as the leader of a new session and process group (processes.py); the
trial and every process it starts (DDP ranks, data workers) belong to that group. Linux's
parent-death signal reaches only the sweeper's direct child, so without this process a sweeper
killed with SIGKILL would leave the trial's ranks running and holding GPU memory that the next
trial there needs. On SIGTERM, SIGINT or SIGHUP, or once its parent is gone, it sends SIGTERM
to the group and SIGKILL after STOP_GRACE_S. Otherwise it exits as the trial did: with its
exit code, or killed by the same signal. Standard library only, run by path: it starts in
milliseconds and needs nothing importable.
"""

import os
import signal
import subprocess
import sys
import time

STOP_GRACE_S = 5.0  # between SIGTERM (training may stop cleanly) and SIGKILL
POLL_S = 0.5  # how often it looks for its parent (where the parent-death signal is missing)


def end_group(signum: int = signal.SIGTERM, frame=None) -> None:
    """SIGTERM to the whole group, SIGKILL to it (this process too) after STOP_GRACE_S."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # its own SIGTERM to the group must not come back here
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and _child is not None and _child.poll() is None:
        time.sleep(0.05)
    os.killpg(0, signal.SIGKILL)


_child: subprocess.Popen | None = None


def main(command: list[str]) -> None:
    global _child
    parent = os.getppid()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, end_group)
    _child = subprocess.Popen(command)
    while True:
        try:
            code = _child.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:
                print(f"[guard] the sweeper (pid {parent}) is gone: ending the trial's processes", flush=True)
                end_group()
    if code < 0:  # killed by a signal: die of the same one, so that the sweeper sees it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
