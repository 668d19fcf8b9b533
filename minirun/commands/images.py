"""`minirun images`: list the local images, in `docker images` columns.

One row per name (an image with two names has two rows, an image with none shows "<none>"),
newest first: REPOSITORY TAG IMAGE ID CREATED SIZE. Sizes are in decimal units and durations
are rounded the way Docker prints them (github.com/docker/go-units, size.go and duration.go).
"""

import argparse
from datetime import UTC, datetime, timedelta

from minirun.images import Image, list_images
from minirun.images.progress import human as human_size
from minirun.paths import store_dir


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("images", help="List images", description="List the images in the local store.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only show image ids")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output (full sha256 ids)")
    parser.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]", help="only images of this name")


def run(args: argparse.Namespace) -> int:
    images = [i for i in list_images(store_dir()) if args.repository is None or _matches(i, args.repository)]
    if args.quiet:
        for image in images:
            print(_image_id(image, args.no_trunc))
        return 0

    now = datetime.now(UTC)
    rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
    for image in images:
        created = f"{human_duration(now - datetime.fromisoformat(image.created))} ago"
        for repository, tag in _names(image):
            rows.append([repository, tag, _image_id(image, args.no_trunc), created, human_size(image.size)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        # Docker aligns its columns with three spaces of padding (text/tabwriter).
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _matches(image: Image, wanted: str) -> bool:
    """`docker images busybox` lists every tag of busybox; `busybox:1.36` only that one."""
    return any(name == wanted or name.rpartition(":")[0] == wanted or name.partition("@")[0] == wanted
               for name in image.repo_tags)


def _image_id(image: Image, no_trunc: bool) -> str:
    """Docker shows the first 12 hex digits of the id, or the whole "sha256:..." with --no-trunc."""
    return image.id if no_trunc else image.id.removeprefix("sha256:")[:12]


def _names(image: Image) -> list[tuple[str, str]]:
    # A normalized name always ends in ":TAG", and a tag has no "/" or ":" (a registry port does
    # have a ":", but before the last "/"), so the last ":" separates them.
    if not image.repo_tags:
        return [("<none>", "<none>")]
    names = []
    for name in image.repo_tags:
        repository, _, tag = name.rpartition(":")
        if "@" in name:  # pulled by digest (`app@sha256:...`): docker shows no tag
            repository, tag = name.partition("@")[0], "<none>"
        names.append((repository, tag))
    return names


def human_duration(elapsed: timedelta) -> str:
    """How long ago, the way Docker rounds it: "About a minute", "3 hours", "2 weeks"."""
    seconds = int(elapsed.total_seconds())
    minutes = seconds // 60
    hours = int(elapsed.total_seconds() / 3600 + 0.5)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"
