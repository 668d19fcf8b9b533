"""What the kernel says of a process in /proc/PID/stat (proc(5)), read in one place."""


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat from field 3 (the state: R, S, Z...) on, so that field N of
    proc(5) is `fields[N - 3]`; None if the process is gone. The command name (field 2) is in
    parentheses and may itself hold spaces or ')' (a process names itself, prctl PR_SET_NAME):
    the fields start after the *last* ')'."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def parent(pid: int) -> int:
    """Its parent's pid (field 4), 0 if it is gone."""
    fields = stat_fields(pid)
    return int(fields[1]) if fields else 0
