"""A trial's process tree: started in a session and process group of its own, ended as a whole.

Killing only the trial's own process would leave the DDP ranks it started running on the GPUs
of the next trial. So every signal goes to the group (the guard leads it, guard.py), and a
trial counts as ended only once no process of its group runs any more. The guard is reaped
last: until then its pid, which is the group's id, cannot be given to another process, so a
signal to the group can never reach someone else's processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from sgmod_study.sweeper import guard

GUARD = Path(guard.__file__).resolve()
# A process in the kernel's uninterruptible sleep (a GPU driver call) may take a while to die of
# SIGKILL; past this the sweeper says so and goes on rather than wait forever.
DIE_WAIT_S = 60.0


def trial_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment less SLURM's variables: a trial is the worker's child, not a SLURM
    task. Lightning reads SLURM_NTASKS & co. as the layout of its ranks: in a worker job (one task
    per node) a DDP trial of 2 devices failed ("You set `devices=2` in Lightning, but the number of
    tasks per node configured in SLURM `--ntasks-per-node=1` does not match"), and its SIGUSR1
    handler would requeue the worker's job from inside a trial."""
    return {key: value for key, value in environ.items() if not key.startswith(("SLURM_", "SLURMD_"))}


class TrialProcess:
    def __init__(self, command: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        with open(log, "w") as out:
            self.popen = subprocess.Popen(
                [sys.executable, str(GUARD), str(os.getpid()), *command],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,  # its own session and process group, led by the guard
            )
        self.pid = self.popen.pid  # also the group's id

    def running(self) -> bool:
        """Whether the guard still runs; looked at without reaping it (the group id stays ours)."""
        if self.popen.returncode is not None:
            return False
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def terminate(self) -> None:
        """SIGTERM to each process of the tree, without waiting: a trial writes its last.ckpt and exits."""
        self._signal(signal.SIGTERM)

    def stop(self, grace: float = guard.STOP_GRACE_S + 1.0) -> int:
        """End the whole tree: SIGTERM to each of its processes, SIGKILL to any left after ``grace``."""
        self.terminate()
        deadline = time.monotonic() + grace
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.finish()

    def finish(self) -> int:
        """Once the guard has exited (or to end the tree now): SIGKILL to whatever is left of the
        group, wait until none of it runs, reap the guard; its exit status, as Popen gives it."""
        self._signal(signal.SIGKILL)
        deadline = time.monotonic() + DIE_WAIT_S
        while group_alive(self.pid):
            if time.monotonic() > deadline:
                print(f"[sweep] processes of group {self.pid} outlived SIGKILL for {DIE_WAIT_S:g} s; going on")
                break
            time.sleep(0.05)
        return self.popen.wait()

    def _signal(self, signum: int) -> None:
        if self.popen.returncode is not None:  # reaped: the id may be another group's by now
            return
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:  # nothing left in the group
            pass


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, which hold no memory, do not count)."""
    members = guard.group_members(pgid)
    if members is not None:
        return bool(members)
    try:  # no /proc (not Linux): whether anything of the group exists at all
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
