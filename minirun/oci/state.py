"""`minirun-oci state ID`: the spec's state JSON (runtime.md, "State") on stdout."""

import json

from minirun.errors import MinirunError
from minirun.oci import record


def run(root: str, container_id: str) -> int:
    data = record.load(root, container_id)
    print(json.dumps(record.public(root, container_id, data), indent=2))
    return 0


def list_all(root: str) -> int:
    """`list`: one line per container (id, pid, status, bundle), as runc's table."""
    from pathlib import Path

    print(f"{'ID':<40} {'PID':<8} {'STATUS':<10} BUNDLE")
    base = Path(root)
    for entry in sorted(base.iterdir() if base.is_dir() else []):
        if (entry / "state.json").exists():
            try:
                data = record.load(root, entry.name)
            except MinirunError:  # one bad record (`delete --force` removes it) hides no other
                print(f"{entry.name:<40} {0:<8} {'unknown':<10} (bad state.json)")
                continue
            shown = record.public(root, entry.name, data)
            print(f"{entry.name:<40} {shown['pid']:<8} {shown['status']:<10} {shown['bundle']}")
    return 0
