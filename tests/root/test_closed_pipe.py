"""First contact: `minirun export NAME | head -c 512`: the reader goes away after a few blocks of a large
archive, and minirun ends quietly with 141 (128 + SIGPIPE, what `bash -o pipefail` reports for a
C or Go program), not with "[Errno 32] Broken pipe" and 125. Both tiers."""

import shlex
import subprocess
from collections.abc import Callable

from helpers import IMAGE, Tier


def test_export_into_a_closed_pipe_is_quiet(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    # 8 MB of data, far more than a pipe buffers, so the write that meets the closed pipe comes.
    minirun(["run", "--name", name, "--network", "none", IMAGE, "dd", "if=/dev/zero", "of=/big",
             "bs=1M", "count=8"], check=0)
    try:
        pipeline = f"{shlex.join(minirun.argv(['export', name]))} | head -c 512 | wc -c"
        result = subprocess.run(["bash", "-o", "pipefail", "-c", f"{pipeline}; echo \"${{PIPESTATUS[0]}}\""],
                                env=minirun.env, capture_output=True, text=True, timeout=120, check=False)
        assert result.stdout.split() == ["512", "141"], result.stdout + result.stderr
        assert result.stderr == ""
    finally:
        minirun(["rm", name], check=0)


def test_a_symlink_to_a_directory_does_not_break_removal(minirun: Tier, names: Callable[[], str]) -> None:
    # Found installing on a fresh Debian in a container: a link in the container's layer that
    # resolves to a directory (on the host, too: /tmp) made `--rm` end with a traceback and exit 1.
    name = names()
    result = minirun(["run", "--rm", "--name", name, "--network", "none", IMAGE, "sh", "-c",
                      "mkdir -p /x && ln -s /tmp /link && ln -s /x /x/self"])
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert name not in minirun(["ps", "-a"], check=0).stdout
