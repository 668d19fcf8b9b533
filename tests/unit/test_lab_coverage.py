"""Every command of the seed articles has a lab step, so the labs' coverage cannot rot.

The commands are found the way a reader finds them: lines of the articles' code blocks, and
inline `code` spans, that start (after a shell prompt, `sudo`, a `PS1=...` or `VAR=$(`) with one
of the tools the course is about. examples/labs/README.md maps each one to a lab and a step,
and the step must exist in that lab (its `step "TITLE"` line); tests/root/test_labs.py runs the
labs and checks what the steps show.
"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO.parent / "shared" / "seeds"
if not SEEDS.is_dir():
    SEEDS = Path("/work/shared/seeds")
LABS = REPO / "examples" / "labs"

TOOLS = ("docker", "unshare", "nsenter", "lsns", "findmnt", "ipcmk", "slirp4netns", "chroot")
# user@host:~$ , [user@host ~]$ , sh1 $ , sh1#/ , #/ , $ (a bare "# " starts a comment, not a prompt)
PROMPT = re.compile(r"^(?:\S+@\S+:\S*[$#]\s*|\[[^\]]*\][$#]\s*|sh\d\s*[$#]\s*|sh\d#/\s*|#/\s*|\$\s+)")
TOOL = "|".join(TOOLS)
START = re.compile(rf"^(?:PS1=(?:'[^']*'|\S+)\s+)?(?:[A-Z_]+=\$\()?(?:sudo\s+)?((?:{TOOL})(?=\s|$).*)$")
# Inline spans that name a thing, not a command: "a `docker container`" in seed 004's prose.
NOT_COMMANDS = {"docker container"}


def seed_commands(text: str) -> list[str]:
    found: list[str] = []
    fenced = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
            continue
        candidates = [stripped] if fenced else re.findall(r"`([^`]+)`", stripped)
        for candidate in candidates:
            match = START.match(PROMPT.sub("", candidate.strip()))
            if not match:
                continue
            command = " ".join(match.group(1).split()).rstrip(")")
            words = command.split()
            if "<program>" in command or command in NOT_COMMANDS:  # --help's usage line, prose
                continue
            if not fenced and len(words) < 2:  # a tool named in prose (`lsns`), not run
                continue
            if command not in found:
                found.append(command)
    return found


def all_seed_commands() -> list[tuple[str, str]]:
    return [(path.name[:3], command) for path in sorted(SEEDS.glob("*.txt"))
            for command in seed_commands(path.read_text())]


def lab_steps(lab: Path) -> list[str]:
    """The titles of a lab's steps: the first argument of each `step "..."` line."""
    titles = re.findall(r'^step "((?:[^"\\]|\\.)*)"', lab.read_text(), flags=re.M)
    return [re.sub(r"\\(.)", r"\1", title) for title in titles]


def readme_table() -> dict[tuple[str, str], tuple[str, str]]:
    """(seed, article command) -> (lab file, step title), from the README's coverage table."""
    rows = {}
    for line in (LABS / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 4 and cells[0].isdigit():
            seed, command, lab, title = (c.strip("`").replace("\\|", "|") for c in cells)
            rows[(seed, command)] = (lab, title)
    return rows


def test_the_seeds_are_there_and_have_commands() -> None:
    commands = all_seed_commands()
    assert {seed for seed, _ in commands} == {"000", "001", "002", "003", "004"}
    assert ("001", "ipcmk -M 1024") in commands and ("003", "slirp4netns -c 5039 tap0") in commands
    assert ("000", "lsns") in commands and ("004", "chroot rootfs /bin/sh") in commands


def test_every_seed_command_has_a_lab_step() -> None:
    table = readme_table()
    missing = [f"{seed}: {command}" for seed, command in all_seed_commands() if (seed, command) not in table]
    assert not missing, "seed commands without a row in examples/labs/README.md:\n" + "\n".join(missing)
    for (seed, command), (lab, title) in table.items():
        path = LABS / lab
        assert path.is_file(), f"{seed} {command}: no lab {lab}"
        assert lab.startswith(seed[1:]), f"{seed} {command}: {lab} is not seed {seed}'s lab"
        assert title in lab_steps(path), f"{seed} {command}: {lab} has no step {title!r}"


def test_steps_follow_the_articles_order() -> None:
    table = readme_table()
    for seed in ("000", "001", "002", "003", "004"):
        rows = [table[(s, c)] for s, c in all_seed_commands() if s == seed]
        for lab in {lab for lab, _ in rows}:
            steps = lab_steps(LABS / lab)
            # seed 002 repeats its commands in a terminal transcript: each step counts where first met
            order = list(dict.fromkeys(steps.index(title) for row_lab, title in rows if row_lab == lab))
            assert order == sorted(order), f"{lab}: steps out of the article's order"
