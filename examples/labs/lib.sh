# The labs' runner, sourced by every lab (`. "$(dirname "$0")/lib.sh"`).
#
#   sh examples/labs/NN-*.sh           run every step, one after the other
#   sh examples/labs/NN-*.sh --step    pause before each step: read, press Enter, look
#
# A step is the article's command, what minirun (or the host tool) does instead, and why the
# output looks as it does. Its output starts with `== ARTICLE COMMAND` (tests/root/test_labs.py
# finds each step by that line, and tests/unit/test_lab_coverage.py checks that every command of
# the seed articles has one). The environment may set MINIRUN (how to call minirun), LAB_IMAGE
# (the Debian image to use, default debian-lab) and DEBIAN_TAR (its tarball, to import it).
set -eu
MINIRUN=${MINIRUN:-minirun}
LAB_PAUSE=${LAB_PAUSE:-0}
[ "${1:-}" = --step ] && LAB_PAUSE=1
LAB_HOME=$(cd "$(dirname "$0")" && pwd)
IMAGE=${LAB_IMAGE:-debian-lab}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/minirun-lab.XXXXXX")

# step "ARTICLE COMMAND" "what this step shows"
step() {
    if [ "$LAB_PAUSE" = 1 ] && [ -e /dev/tty ]; then
        printf '\n[press Enter for the next step] ' >/dev/tty
        read -r _ </dev/tty
    fi
    printf '\n== %s\n-- %s\n' "$1" "$2"
}

# say LINE...: what to look at and why (the kernel's rule, the man page), printed as `   | ...`
say() {
    for line in "$@"; do printf '   | %s\n' "$line"; done
}

# show COMMAND: print it as typed, then run it (a failing command is shown, and stops the lab)
show() {
    printf '$ %s\n' "$*"
    eval "$@"
}

# show_failing COMMAND: a command the lesson expects to fail; prints its error and exit code
show_failing() {
    printf '$ %s\n' "$*"
    if eval "$@" 2>&1; then echo "(exit 0: it should have failed)"; return 1; else echo "(exit $?)"; fi
}

# A name for a lab container, removed when the lab ends (however it ends). Kept in a file: it
# is called as NAME=$(container_name web), in a subshell, where a variable would be lost.
container_name() {
    echo "lab-$1-$$" | tee -a "$SCRATCH/containers"
}

cleanup() {
    if [ -f "$SCRATCH/containers" ]; then
        for name in $(cat "$SCRATCH/containers"); do $MINIRUN rm -f "$name" >/dev/null 2>&1 || true; done
    fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pid_of() { $MINIRUN inspect -f '{{.State.Pid}}' "$1"; }

# Wait until nginx in container $1 has started its workers (one per CPU), so that what the next
# steps count (NPROCS, ps) is the steady state.
nginx_ready() {
    master=$(pid_of "$1")
    for _ in $(seq 100); do
        [ "$(pgrep -c -P "$master" || true)" -ge "$(nproc)" ] && return 0
        sleep 0.1
    done
}

# The Debian image (nginx, procps, iproute2, ping, getcap): imported once from
# rootfs-images/debian/build.sh's cached tarball, with nginx as its Cmd.
need_debian() {
    $MINIRUN image inspect "$IMAGE" >/dev/null 2>&1 && return 0
    tar=${DEBIAN_TAR:-$("$LAB_HOME/../../rootfs-images/debian/build.sh" --tar)}
    $MINIRUN import --change 'CMD ["nginx", "-g", "daemon off;"]' "$tar" "$IMAGE" >/dev/null
}

# A busybox root file system in a directory, as the articles make with `docker export`.
busybox_rootfs() {
    mkdir -p "$1"
    id=$($MINIRUN create busybox true)
    $MINIRUN export "$id" | tar -C "$1" -xf -
    $MINIRUN rm "$id" >/dev/null
}
