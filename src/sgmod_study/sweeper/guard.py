"""Runs one trial command and ends its whole process tree when the sweeper is gone.

    python .../sgmod_study/sweeper/guard.py <sweeper pid> python src/train.py <overrides...>

The sweeper starts this as the leader of a new session and process group (processes.py); the
trial and every process it starts (DDP ranks, data workers) belong to that group. Linux's
parent-death signal reaches only the sweeper's direct child, so without this process a sweeper
killed with SIGKILL would leave the trial's ranks running and holding GPU memory that the next
trial there needs. On SIGTERM, SIGINT or SIGHUP (the parent-death signal it asks for is
SIGTERM), or once its parent is no longer the sweeper, it sends SIGTERM to the group and
SIGKILL after STOP_GRACE_S (or, once the trial has stopped within it, SIGKILL to the rest of
the group and exits as the trial did). Otherwise it exits as the trial did: with its exit code,
or killed by the same signal. Standard library only, run by path: it starts in milliseconds and
needs nothing importable.
"""

import os
import signal
import subprocess
import sys
import time

STOP_GRACE_S = 5.0  # between SIGTERM (training may stop cleanly) and SIGKILL
POLL_S = 0.5  # how often it looks for its parent (where the parent-death signal is missing)
_child: subprocess.Popen | None = None  # the trial's own process
_sweeper: int | None = None  # the sweeper's pid


def end_group(signum: int = signal.SIGTERM, frame=None) -> None:
    """SIGTERM to the whole group, SIGKILL to it (this process too) after STOP_GRACE_S. A trial
    that stopped within the grace: SIGKILL to the rest of the group, then exit as the trial did
    (143 after SIGTERM, with its last.ckpt written), so that a living sweeper sees an
    interruption, not a kill.

    The guard ends the rest itself rather than leave it to the sweeper: the sweeper's pid is no
    proof that it lives. Killed with SIGKILL, its threads die one by one, and when the thread that
    started the guard is gone first, the parent-death signal comes while getppid() still names
    the sweeper (a sibling thread became the parent); it then never cleans up."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # its own SIGTERM to the group must not come back here
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and _child is not None and _child.poll() is None:
        time.sleep(0.05)
    if _child is not None and _child.poll() is not None:
        rest_ended = kill_rest_of_group()
        if rest_ended or (rest_ended is None and os.getppid() == _sweeper):  # no /proc: as before
            code = _child.returncode
            sys.exit(128 - code if code < 0 else code)
    os.killpg(0, signal.SIGKILL)


def group_members(pgid: int) -> list[int] | None:
    """The running processes of group ``pgid`` (zombies, which hold no memory, left out); None
    where there is no /proc to read (not Linux)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # it exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def kill_rest_of_group(tries: int = 20) -> bool | None:
    """SIGKILL to every other running process of this group, until none is left (a dying one may
    still fork). False if some outlive ``tries`` rounds, None where there is no /proc to know."""
    me = os.getpid()
    for _ in range(tries):
        members = group_members(os.getpgrp())
        if members is None:
            return None
        others = [pid for pid in members if pid != me]
        if not others:
            return True
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return False


def die_with_parent() -> None:
    """SIGTERM when the parent dies, even of SIGKILL (Linux; elsewhere the polling below)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(sweeper: int, command: list[str]) -> None:
    global _child, _sweeper
    _sweeper = sweeper
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, end_group)
    die_with_parent()
    if os.getppid() != sweeper:  # it died before the signal was asked for
        sys.exit(128 + signal.SIGTERM)
    _child = subprocess.Popen(command)
    while True:
        try:
            code = _child.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != sweeper:
                print(f"[guard] the sweeper (pid {sweeper}) is gone: ending the trial's processes", flush=True)
                end_group()
    if code < 0:  # killed by a signal: die of the same one, so that the sweeper sees it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
