"""hooks (config.md, "POSIX-platform Hooks"): programs the runtime runs at fixed moments, with
the container's state JSON on stdin.

  kind             when (runtime.md, "Lifecycle")                          where it runs
  createRuntime    create, once the namespaces exist, before pivot_root     runtime namespace
  prestart         start, before the program runs (the 1.0 spec's moment,  runtime namespace
                   which the validation suite checks; later specs moved it
                   to createRuntime's)
  createContainer  create, in the container's mount namespace, before       the container's
                   pivot_root
  startContainer   start, just before the user's program is exec'd          the container's
  poststart        start, once the program runs; a failure is only logged  runtime namespace
  poststop         delete, after the container is gone; failures logged    runtime namespace

A failing createRuntime/prestart/createContainer/startContainer hook fails the verb (and the
container is destroyed); poststart and poststop failures are warnings (the spec says so).
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
from typing import Any

from minirun import kernel, procfs
from minirun.errors import MinirunError
from minirun.oci.config import Hook


def run(kind: str, hooks: list[Hook], state: dict[str, Any], warn_only: bool = False) -> None:
    """Run each hook in order, state on stdin; the first failure raises, or with warn_only
    (poststart, poststop) is one warning line on stderr and the next hooks still run."""
    if warn_only:
        for hook in hooks:
            try:
                run(kind, [hook], state)
            except MinirunError as e:
                print(f"minirun-oci: warning: {e}", file=sys.stderr)
        return
    payload = json.dumps(state).encode()
    for hook in hooks:
        try:
            done = subprocess.run(
                hook.args or [hook.path],
                executable=hook.path,
                input=payload,
                env=dict(e.split("=", 1) for e in hook.env if "=" in e),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=hook.timeout,
                check=False,
                close_fds=True,
            )
        except subprocess.TimeoutExpired:
            raise MinirunError(f"{kind} hook {hook.path} timed out after {hook.timeout} s") from None
        except OSError as e:
            raise MinirunError(f"{kind} hook {hook.path}: {e.strerror}") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            raise MinirunError(
                f"{kind} hook {hook.path} failed (exit {done.returncode})"
                + (f": {detail[-1]}" if detail else "")
            )


def to_json(hooks: dict[str, list[Hook]]) -> dict[str, list[dict[str, Any]]]:
    return {
        kind: [{"path": h.path, "args": h.args, "env": h.env, "timeout": h.timeout} for h in hs]
        for kind, hs in hooks.items()
    }


def from_json(raw: dict[str, Any], kind: str) -> list[Hook]:
    return [
        Hook(h["path"], h.get("args") or [], h.get("env") or [], h.get("timeout")) for h in raw.get(kind, [])
    ]


def exec_in_container(kind: str, hooks: list[Hook], state: dict[str, Any]) -> None:
    """createContainer/startContainer, from the child: the hook runs in the container's
    namespaces because the child is already there (fork + execve; stdin is the state)."""
    payload = json.dumps(state).encode()
    for hook in hooks:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.dup2(r, 0)
            try:
                # Its stdio and nothing more (as runc's hooks): not the fds create inherited from
                # its caller, which only --preserve-fds hands on, and only to the program.
                kernel.close_range_cloexec(3)
                os.execve(
                    hook.path, hook.args or [hook.path], dict(e.split("=", 1) for e in hook.env if "=" in e)
                )
            finally:
                os._exit(127)
        os.close(r)
        with contextlib.suppress(OSError):  # a hook that does not read its stdin
            os.write(w, payload)
        os.close(w)
        # A hook's "timeout" (config.md: seconds; the hook is killed and the runtime fails) holds
        # here too: its pidfd polls readable when it exits (pidfd_open(2)), or the time is up.
        pidfd = os.pidfd_open(pid)
        try:
            if not procfs.wait_pidfd(pidfd, hook.timeout):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise MinirunError(f"{kind} hook {hook.path} timed out after {hook.timeout} s")
        finally:
            os.close(pidfd)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if code != 0:
            raise MinirunError(f"{kind} hook {hook.path} failed (exit {code})")
