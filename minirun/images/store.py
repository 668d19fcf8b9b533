"""The local image store: root file systems on disk, their configs, and the names they go by.

An image is an ordered stack of layers (lowest first) plus a config (the command, environment,
working directory and user `run` starts with). Its layers become the lower directories of the
container's overlayfs mount. Everything lives under one directory, minirun.paths.store_dir():

    images.lock                   flock(2) held while anything below changes (shared for reading)
    repositories.json             names to image ids: {"busybox:latest": "sha256:<64 hex>", ...}
    images/<hex>.json             one image: id, created, size, layer digests (lowest first), config
    layers/                       0700: only the store's owner may reach the images' files
    layers/<hex>/layer.json       one layer: the digest of the blob it came from, and its size
    layers/<hex>/rootfs/          ...and its files: this directory is an overlayfs lower directory
    layers/<hex>/rootfs-shifted-* a copy owned by a remapped root's range, on kernels that cannot
                                  idmap it (shifted_layer, minirun/userns.py)
    tmp/                          staging areas of imports in progress, and layers being deleted
    pulls/<hex>.lock              flock(2) held by a pull of one reference (minirun/images/pull.py)

Names are content digests, as in Docker and the OCI image spec:
 - a layer is named by the sha256 of the tarball bytes it was extracted from (for a plain
   tarball, the same as `sha256sum file.tar`), so the same blob is stored once however many
   images use it, and a registry pull can skip every layer it already has;
 - an image id is the sha256 of its record's content (layer digests + config), like the OCI
   image id, which is the digest of the image config. Unlike `docker import`, the creation time
   is not part of it, so importing the same tarball under the same config twice gives the same
   image, once.

Crash safety: a layer is extracted into a private staging directory under tmp/ and renamed into
layers/ only when complete; every JSON file is replaced atomically (minirun.fsutil). Things are
added bottom-up (layer, then image record, then the name) and removed top-down (name, record,
layers), so a crash can leave an unused layer or record behind but never a name pointing at
nothing. Only a SIGKILLed import can leave a staging directory in tmp/, which nothing reads.

Re-tagging: importing or pulling to a name that is taken moves the name to the new image. The old
image is deleted when no name points to it any more and no container record uses it (then it stays
as "<none>", as in Docker), and so are its layers that no other image uses.
"""

import contextlib
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from minirun.errors import ImageNotFound, MinirunError
from minirun.fsutil import (
    DIR_FLAGS,
    atomic_write_json,
    list_directory,
    locked,
    read_json,
    remove_abandoned_tmp,
    remove_tree,
    walk,
)

DEFAULT_TAG = "latest"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageConfig(NamedTuple):
    """The part of the OCI image config (image-spec config.md, "config") that `run` honours."""

    env: tuple[str, ...] = (DEFAULT_PATH,)
    cmd: tuple[str, ...] = ("/bin/sh",)
    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp": recorded, not published
    stop_signal: str = ""  # what `stop` sends first ("SIGQUIT" for nginx's images); "": SIGTERM


class Image(NamedTuple):
    id: str  # "sha256:<64 hex>"
    repo_tags: list[str]  # e.g. ["busybox:latest"]; empty for an image no name points to
    layers: list[Path]  # the layers' rootfs directories, LOWEST first
    config: ImageConfig
    created: str  # RFC 3339, UTC
    size: int  # bytes of file data in its layers
    repo_digests: tuple[str, ...] = ()  # "alpine@sha256:<manifest digest>"
    platform: str = ""  # "linux/amd64" for a pulled image


# ---------------------------------------------------------------------------------------------
# Names. The grammar is Docker's (distribution/reference, reference.go), without digests:
#   [registry-host[:port]/]path-component[/path-component...][:tag]
# Path components are lowercase; a tag is up to 128 word characters, dots and dashes.
# ---------------------------------------------------------------------------------------------

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_REFERENCE = rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?"
_HEX_ID = r"[0-9a-f]{4,64}"
DIGEST = r"sha256:[0-9a-f]{64}"  # an OCI content digest, sha256 only
_MIN_ID_PREFIX = 4


def normalize_ref(ref: str, *, familiar: bool = True) -> str:
    """`busybox` -> `busybox:latest`; `a/b:1` stays. A malformed name is the user's error.

    With `familiar`, an explicit Docker Hub prefix is dropped, as `docker images` shows names:
    `docker.io/library/alpine` and `library/alpine` are `alpine:latest`, `docker.io/x/y` is
    `x/y:latest`; `library/` goes only when one name follows it (docker's "familiar" form).
    """
    if familiar:
        for hub in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
            ref = ref.removeprefix(hub)
        if ref.startswith("library/") and ref.count("/") == 1:
            ref = ref.removeprefix("library/")
    match = re.fullmatch(_REFERENCE, ref)
    if match is None:
        hint = ": repository name must be lowercase" if re.fullmatch(_REFERENCE, ref.lower()) else ""
        raise MinirunError(f"invalid reference format{hint}: {ref!r} (expected NAME[:TAG])")
    name, tag = match["name"], match["tag"] or DEFAULT_TAG
    if len(name) > 255:
        raise MinirunError(f"invalid reference format: repository name longer than 255 characters: {ref!r}")
    if re.fullmatch(r"[0-9a-f]{64}", name):
        # Docker's rule too: a name that looks like an image id would shadow that id.
        raise MinirunError(f"invalid reference format: a name cannot be a 64-character hex id: {ref!r}")
    return f"{name}:{tag}"


def store_name(ref: str) -> str:
    """A name the store keeps: NAME:TAG, or NAME@sha256:DIGEST for an image pulled by digest."""
    name, at, digest = ref.partition("@")
    if not at:
        return normalize_ref(ref)
    if not re.fullmatch(DIGEST, digest) or ":" in name.rpartition("/")[2]:
        raise MinirunError(f"invalid reference format: {ref!r} (expected NAME@sha256:<64 hex digits>)")
    return f"{normalize_ref(name).rpartition(':')[0]}@{digest}"


# ---------------------------------------------------------------------------------------------
# Reading the store.
# ---------------------------------------------------------------------------------------------


def resolve(store: Path, ref: str) -> Image:
    """Find an image by name[:tag], or by its id or a unique prefix of it (>= 4 hex digits).

    Like Docker, a name wins over an id prefix ("cafe" is the image named cafe:latest if there
    is one), and "sha256:..." is always an id.
    """
    if not store.is_dir():
        raise ImageNotFound(f"image not found: {ref}")
    with locked(store / "images.lock", shared=True):
        repositories = _read_repositories(store)
        if not ref.startswith("sha256:"):
            try:
                name = store_name(ref)
            except MinirunError:
                if not re.fullmatch(_HEX_ID, ref):
                    raise
            else:
                if name in repositories:
                    return _load_image(store, _hex(repositories[name]), repositories)
        hex_prefix = ref.removeprefix("sha256:")
        if len(hex_prefix) >= _MIN_ID_PREFIX and re.fullmatch(_HEX_ID, hex_prefix):
            matches = [h for h in _image_hexes(store) if h.startswith(hex_prefix)]
            if len(matches) > 1:
                raise MinirunError(f"image id prefix {ref!r} is ambiguous: it matches {len(matches)} images")
            if matches:
                return _load_image(store, matches[0], repositories)
    raise ImageNotFound(f"image not found: {ref}")


def list_images(store: Path) -> list[Image]:
    """Every image in the store, newest first."""
    if not store.is_dir():
        return []
    with locked(store / "images.lock", shared=True):
        repositories = _read_repositories(store)
        images = [_load_image(store, h, repositories) for h in _image_hexes(store)]
    return sorted(images, key=lambda image: (image.created, image.id), reverse=True)


def _read_repositories(store: Path) -> dict[str, str]:
    path = store / "repositories.json"
    if not path.exists():
        return {}
    repositories: dict[str, str] = read_json(path)
    return repositories


def _image_hexes(store: Path) -> list[str]:
    directory = store / "images"
    if not directory.is_dir():
        return []
    # Skip atomic_write_json's hidden temporary files (".<name>.XXXX.tmp").
    return sorted(
        n.removesuffix(".json")
        for n in os.listdir(directory)
        if n.endswith(".json") and not n.startswith(".")
    )


def _load_image(store: Path, image_hex: str, repositories: dict[str, str]) -> Image:
    record = read_json(store / "images" / f"{image_hex}.json")
    return Image(
        id=record["id"],
        repo_tags=sorted(name for name, image_id in repositories.items() if image_id == record["id"]),
        layers=[store / "layers" / _hex(digest) / "rootfs" for digest in record["layers"]],
        config=config_from_json(record["config"]),
        created=record["created"],
        size=record["size"],
        repo_digests=tuple(record.get("repo_digests", [])),
        platform=record.get("platform", ""),
    )


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _config_to_json(config: ImageConfig) -> dict[str, Any]:
    """The OCI image config's own key names, so a record reads like the spec."""
    return {
        "Env": config.env,
        "Cmd": config.cmd,
        "Entrypoint": config.entrypoint,
        "WorkingDir": config.working_dir,
        "User": config.user,
        **({"ExposedPorts": {port: {} for port in config.exposed_ports}} if config.exposed_ports else {}),
        **({"StopSignal": config.stop_signal} if config.stop_signal else {}),
    }


def config_from_json(value: dict[str, Any]) -> ImageConfig:
    # In OCI configs from elsewhere any key may be missing or null.
    default = ImageConfig()
    return ImageConfig(
        env=tuple(value.get("Env") or default.env),
        cmd=tuple(value.get("Cmd") or []),
        entrypoint=tuple(value.get("Entrypoint") or []),
        working_dir=value.get("WorkingDir") or "",
        user=value.get("User") or "",
        exposed_ports=tuple(sorted(value.get("ExposedPorts") or {})),
        stop_signal=stop if isinstance(stop := value.get("StopSignal"), str) else "",
    )


# ---------------------------------------------------------------------------------------------
# Adding to the store: import = stage a layer, then commit it as an image under a name.
# A registry pull does the same with several layers: stage each missing one, commit them all.
# ---------------------------------------------------------------------------------------------


def import_tarball(store: Path, source: BinaryIO, ref: str, *, config: ImageConfig | None = None,
                   in_use: frozenset[str] = frozenset()) -> Image:
    """Import a root file system tarball (one layer) as the image `ref`, like `docker import`.

    If `ref` named another image, that one loses the name, and is kept (as "<none>") only while a
    container in `in_use` still runs from its layers."""
    name = normalize_ref(ref)  # before any side effect
    with staging_area(store) as staging:
        layer_dir = staging / "layer"
        digest = extract_layer(source, layer_dir)
        return commit_image(store, [(digest, layer_dir)], config or ImageConfig(), name, in_use=in_use)


@contextlib.contextmanager
def staging_area(store: Path) -> Iterator[Path]:
    """A private (0700) temporary directory inside the store, removed however the block ends.

    Inside the store, so that the finished layer is moved into place with rename(2), which is
    atomic only within one file system. Named after our pid, so that the next import can tell
    the leftovers of a SIGKILLed one (its process is gone) and remove them.
    """
    tmp = store / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(tmp)
    import tempfile  # adding and removing images only, never on the start path

    staging = Path(tempfile.mkdtemp(prefix=f"import-{os.getpid()}-", dir=tmp))
    try:
        yield staging
    finally:
        _remove_tree(staging)


def sweep_abandoned(store: Path) -> None:
    """prune: what SIGKILLed imports, pulls and rmis left in tmp/ (import-PID-*, remove-PID-*,
    whose process is gone), and the temporary files of JSON writers that died half-way."""
    if (store / "tmp").is_dir():
        _remove_abandoned(store / "tmp")
    for directory in (store, store / "images"):
        remove_abandoned_tmp(directory)


def _remove_abandoned(tmp: Path) -> None:
    """Sweep what dead imports (import-PID-*) and dead rmis (remove-PID-*) left in tmp/."""
    for entry in os.listdir(tmp):
        match = re.fullmatch(r"(?:import|remove)-(\d+)-.*", entry)
        if match is None:
            continue
        try:
            os.kill(int(match[1]), 0)  # signal 0: only "does this process exist?" (kill(2))
        except ProcessLookupError:
            _remove_tree(tmp / entry)
        except PermissionError:
            pass  # exists, and is somebody else's


def extract_layer(source: BinaryIO, layer_dir: Path, *, whiteouts: bool = False) -> str:
    """Extract a layer tarball into `layer_dir`/rootfs; return "sha256:..." of the bytes read.

    `whiteouts`: the tarball is an image layer whose `.wh.` files delete things below it.
    """
    # Imported here, not at the top: `minirun run` reads the store but never extracts (start-up time).
    from minirun.images.tarball import safe_extract

    limit = max_layer_size()
    reader = _DigestingReader(source)
    buffered = io.BufferedReader(reader)
    size = safe_extract(buffered, layer_dir / "rootfs", chown=os.geteuid() == 0, whiteouts=whiteouts,
                        max_size=limit)
    # tarfile stops at the end-of-archive marker; read the rest (padding) so that the digest is
    # that of the whole file, as `sha256sum` or a registry would compute it.
    while buffered.read(_DigestingReader.CHUNK):
        pass
    digest = f"sha256:{reader.sha256.hexdigest()}"
    atomic_write_json(layer_dir / "layer.json", {"digest": digest, "size": size})
    os.chmod(layer_dir, 0o755)  # whatever the umask; access is restricted once, at layers/
    return digest


DEFAULT_MAX_LAYER_SIZE = "32g"


def max_layer_size() -> int:
    """The most a layer (an import, or one layer of a pull) may unpack to: MINIRUN_MAX_LAYER_SIZE
    (docker's units: 500m, 64g), 32g by default."""
    from minirun.images.tarball import MAX_SIZE_VARIABLE
    from minirun.spec import parse_size

    return parse_size(MAX_SIZE_VARIABLE, os.environ.get(MAX_SIZE_VARIABLE) or DEFAULT_MAX_LAYER_SIZE)


class _DigestingReader(io.RawIOBase):
    """A read-only stream that feeds every byte it passes on into a sha256."""

    CHUNK = 1 << 20

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self.source = source
        import hashlib  # loads OpenSSL: only when a layer is imported, not on every `run`

        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        self.sha256.update(data)
        buffer[: len(data)] = data
        return len(data)


def commit_image(
    store: Path,
    layers: list[tuple[str, Path]],
    config: ImageConfig,
    name: str,
    *,
    image_id: str | None = None,
    repo_digest: str | None = None,
    platform: str = "",
    in_use: frozenset[str] = frozenset(),
) -> Image:
    """Move staged layers into place, record the image, and point `name` at it.

    `layers` are (digest, staged layer directory) pairs, lowest first; a layer the store already
    has is kept and its staged copy left to be cleaned up with the staging area. All of it
    happens under one exclusive lock, so a concurrent import cannot delete a shared layer
    between our checking that it exists and our recording an image that uses it.

    A pull passes `image_id` (the digest of the image's config blob, as Docker and the OCI image
    spec define an image id), the manifest's digest and the platform it chose. An image that
    loses its name is deleted unless its id is `in_use` by a container (then it stays, "<none>").
    """
    name = store_name(name)
    digests = [digest for digest, _ in layers]
    config_json = _config_to_json(config)
    # The id covers what makes the image what it is, in a canonical JSON form (sorted keys).
    content = json.dumps({"config": config_json, "layers": digests}, sort_keys=True, separators=(",", ":"))
    import hashlib  # only when an image is added (see _DigestingReader)

    image_id = image_id or f"sha256:{hashlib.sha256(content.encode()).hexdigest()}"
    record_path = store / "images" / f"{_hex(image_id)}.json"

    with locked(store / "images.lock"):
        # 0700: layers hold images' setuid programs, which any host user who could reach them
        # could run with their owner's rights (CVE-2021-41091, Docker's data directory).
        (store / "layers").mkdir(mode=0o700, exist_ok=True)
        os.chmod(store / "layers", 0o700)
        for digest, staged in layers:
            final = store / "layers" / _hex(digest)
            if not final.exists():
                os.rename(staged, final)
            if not (final / "layer.json").exists():  # a concurrent rmi took a layer we found
                raise MinirunError(f"layer {digest} vanished during the pull: pull again")
        if not record_path.exists():
            size = sum(read_json(store / "layers" / _hex(d) / "layer.json")["size"] for d in digests)
            from datetime import UTC, datetime

            created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            atomic_write_json(
                record_path,
                {"id": image_id, "created": created, "size": size, "layers": digests, "config": config_json,
                 "repo_digests": [], "platform": platform},
            )
        if repo_digest is not None:
            record = read_json(record_path)
            if repo_digest not in record.get("repo_digests", []):
                record["repo_digests"] = sorted({*record.get("repo_digests", []), repo_digest})
                atomic_write_json(record_path, record)

        repositories = _read_repositories(store)
        previous = repositories.get(name)
        repositories[name] = image_id
        atomic_write_json(store / "repositories.json", repositories)
        if previous is not None and previous not in repositories.values() and previous not in in_use:
            _remove_image(store, previous)
        return _load_image(store, _hex(image_id), repositories)


def remove_image(
    store: Path, ref: str, *, force: bool, in_use: frozenset[str], running: frozenset[str] = frozenset()
) -> list[str]:
    """`rmi`: untag `ref`; delete the image when no name is left. Returns what was done, docker-style.

    Refused while a container (`in_use`: image ids of container records) uses the image, unless
    `force`. By id, an image with several names is refused unless `force` (then all names go).
    Never while a container *runs* on it (`running`), as docker: its overlay's lower directories
    are the image's layers, and deleting their files would pull them out from under it.
    """
    image = resolve(store, ref)
    if image.id in running:
        raise MinirunError(f"image {ref} is in use by a running container: stop it first (even -f cannot)")
    if image.id in in_use and not force:
        raise MinirunError(f"image {ref} is in use by a container: remove the container first, or use rmi -f")
    with locked(store / "images.lock"):
        (store / "tmp").mkdir(exist_ok=True)
        _remove_abandoned(store / "tmp")  # what a killed rmi or import left
        repositories = _read_repositories(store)
        by_name = ref in image.repo_tags or _maybe_store_name(ref) in image.repo_tags
        names = [_maybe_store_name(ref)] if by_name else list(image.repo_tags)
        if not by_name and len(names) > 1 and not force:
            raise MinirunError(f"image {ref} has {len(names)} names ({', '.join(names)}): "
                               "remove them by name, or use rmi -f")
        done = [f"Untagged: {name}" for name in names]
        for name in names:
            repositories.pop(name, None)
        atomic_write_json(store / "repositories.json", repositories)
        if image.id not in repositories.values():
            _remove_image(store, image.id)
            done.append(f"Deleted: {image.id}")
        return done


def shifted_layer(store: Path, rootfs: Path, uid: int, gid: int, count: int) -> Path:
    """A copy of a layer's files with every owner moved up into a remapped root's range (container
    id N is host id uid+N): what a rootful remapped container uses as a lower directory where the
    kernel cannot show the layer through an idmapped mount (minirun/userns.py, layers_mode).

    Made once per layer and range, next to the layer (layers/<hex>/rootfs-shifted-UID-GID-COUNT),
    so containers share it and `rmi` removes it with the layer; made under the store's exclusive
    lock in a staging area and renamed into place, so nobody ever sees half a copy. This is
    docker's userns-remap approach; it costs the layer's size again for each range, and with a
    range per container (--userns=auto) for each container: removed with its range (remove_shifted).
    """
    target = rootfs.with_name(f"rootfs-shifted-{uid}-{gid}-{count}")
    if target.is_dir():
        return target
    with locked(store / "images.lock"):
        if target.is_dir():
            return target
        with staging_area(store) as staging:
            copy = staging / "rootfs"
            # cp -a: device nodes (overlay whiteouts are 0/0 character devices), hard links,
            # xattrs and times as they are; shutil.copytree would open the device nodes.
            import subprocess  # the shifted copies only

            result = subprocess.run(["cp", "-a", "--", str(rootfs), str(copy)], capture_output=True,
                                    text=True, check=False)
            if result.returncode != 0:
                raise MinirunError(f"cannot copy layer {rootfs.parent.name[:12]}: {result.stderr.strip()}")
            _shift_owners(copy, uid, gid, count)
            os.rename(copy, target)
    return target


def remove_shifted(store: Path, uid: int, gid: int, count: int) -> None:
    """Remove every layer's copy for one range: a range of its own goes with its container
    (idranges.release), and its copies with it; moved to tmp/ under the lock, then removed."""
    name = f"rootfs-shifted-{uid}-{gid}-{count}"
    if not (store / "layers").is_dir() or not any((store / "layers").glob(f"*/{name}")):
        return
    import tempfile  # only when copies exist: never on the start path
    with locked(store / "images.lock"):
        (store / "tmp").mkdir(exist_ok=True)
        trash = Path(tempfile.mkdtemp(prefix=f"remove-{os.getpid()}-", dir=store / "tmp"))
        try:
            for n, copy in enumerate((store / "layers").glob(f"*/{name}")):
                os.rename(copy, trash / str(n))
        finally:
            _remove_tree(trash)


def _shift_owners(root: Path, uid: int, gid: int, count: int) -> None:
    """lchown every entry by (uid, gid); ids beyond the range become its "nobody" (65534).
    Walked with fsutil.walk (no recursion, never through a symlink): a layer may be 5,000 deep."""
    seen: set[tuple[int, int]] = set()  # hard links: shift each inode once

    def shift(dir_fd: int, name: str) -> None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        new_uid = uid + (st.st_uid if st.st_uid < count else 65534)
        new_gid = gid + (st.st_gid if st.st_gid < count else 65534)
        os.chown(name, new_uid, new_gid, dir_fd=dir_fd, follow_symlinks=False)  # lchown
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            # chown(2) clears set-id bits: restore them (not a symlink: chmod cannot follow one)
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dir_fd)

    def children(fds: dict[int, int]) -> list[tuple[str, tuple[int, ...]]]:
        return [(e.name, (0,) if e.is_dir(follow_symlinks=False) else ()) for e in list_directory(fds[0])]

    top = os.open(root, DIR_FLAGS)
    try:
        shift(top, ".")
        for visit in walk({0: top}, children):
            if visit.kind == "entry":
                shift(visit.parent_fds[0], visit.name)
    finally:
        os.close(top)


def _maybe_store_name(ref: str) -> str:
    try:
        return store_name(ref)
    except MinirunError:
        return ref


def _remove_image(store: Path, image_id: str) -> None:
    """Delete an image no name points to, then each of its layers that no other image uses.

    Caveat: a running container whose overlay uses these layers would lose its files; `run`
    resolves an image at start; commit_image and remove_image keep images that container records
    use, so the one window left is a `run` that has resolved the image but not yet written its
    record while the name moves.
    """
    record_path = store / "images" / f"{_hex(image_id)}.json"
    digests: list[str] = read_json(record_path)["layers"]
    record_path.unlink()
    still_used = {d for h in _image_hexes(store) for d in read_json(store / "images" / f"{h}.json")["layers"]}
    for digest in digests:
        if digest in still_used:
            continue
        # Move the layer out of layers/ first (atomic), then delete it at leisure: a crash
        # half-way through the delete must not leave a half-empty layer that looks complete.
        import tempfile

        trash = Path(tempfile.mkdtemp(prefix=f"remove-{os.getpid()}-", dir=store / "tmp"))
        try:
            os.rename(store / "layers" / _hex(digest), trash / "layer")
        finally:
            _remove_tree(trash)


def _remove_tree(path: Path) -> None:
    """Remove a staging area or a deleted layer: any depth, links never followed, and an unprivileged
    user's read-only (0555, 0000) directories made writable on the way (fsutil.remove_tree)."""
    remove_tree(path)
