"""MINIRUN_TRACE_TIMING=1 on a real container: both sides of the clone report their phases,
and the container's own output and exit code are untouched. No timing is asserted."""

import dataclasses
import re

from helpers import IMAGE, Tier

from minirun import cgroups

LINE = re.compile(r"^minirun trace: +\d+\.\d ms +[+-]\d+\.\d ms  (parent|child ) +(\S.*)$")


def traced(tier: Tier) -> Tier:
    """The same tier with the switch on: `env MINIRUN_TRACE_TIMING=1` right before the python."""
    python = tier.prefix.index("-m") - 1
    prefix = [*tier.prefix[:python], "env", "MINIRUN_TRACE_TIMING=1", *tier.prefix[python:]]
    return dataclasses.replace(tier, prefix=prefix)


def test_a_traced_run_prints_every_phase_once(minirun: Tier) -> None:
    result = traced(minirun)(
        ["run", "--rm", "--network", "none", IMAGE, "sh", "-c", "echo out; exit 3"], check=3
    )
    assert result.stdout == "out\n"
    lines = result.stderr.splitlines()
    assert lines and all(LINE.match(line) for line in lines), lines
    phases = [m.group(1).strip() + " " + m.group(2) for m in map(LINE.match, lines) if m]
    for phase in (
        "parent interpreter start",
        "parent imports",
        "parent image lookup",
        "parent cgroup" if not minirun.rootless else "parent clone",
        "parent clone",
        "parent id maps",
        "child overlay",
        "child mounts",
        "child pivot_root",
        "parent wait (the command runs)",
        "parent teardown: --rm",
    ):
        assert phases.count(phase) == 1, (phase, phases)
    # The child reports before the parent learns that the exec happened.
    assert phases.index("child pivot_root") < phases.index("parent exec (waited for the child's set-up)")
    # Root on a host with v1 hierarchies: the child moves itself into them (cgroups.join_v1) before
    # the parent's "join cgroup" ends (it waits for the child's "joined").
    if not minirun.rootless and any(h.version == 1 for h in cgroups.hierarchies()):
        assert phases.count("child into its v1 cgroups") == 1, phases
        assert phases.index("child into its v1 cgroups") < phases.index("parent join cgroup")


def test_untraced_run_prints_nothing_extra(minirun: Tier) -> None:
    result = minirun(["run", "--rm", "--network", "none", IMAGE, "true"], check=0)
    assert result.stderr == ""
