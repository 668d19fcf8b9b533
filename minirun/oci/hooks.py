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
import time
from typing import Any

from minirun import kernel
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


def exec_in_container(hooks: list[Hook], state: dict[str, Any]) -> None:
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
        status = _wait(pid, hook.timeout)
        if status is None:
            raise MinirunError(f"hook {hook.path} timed out after {hook.timeout} s")
        if os.waitstatus_to_exitcode(status) != 0:
            raise MinirunError(f"hook {hook.path} failed (exit {os.waitstatus_to_exitcode(status)})")


def _wait(pid: int, timeout: int | None) -> int | None:
    """waitpid, but a hook's "timeout" (config.md: seconds, the hook is killed and the
    runtime fails) holds here too: its wait status, or None once it was SIGKILLed for it."""
    if timeout is None:
        return os.waitpid(pid, 0)[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None
