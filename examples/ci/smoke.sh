#!/bin/sh
# A container smoke test for a CI job on a rootless host: install minirun as this (unprivileged)
# user, check the host with `minirun doctor`, and run containers from the offline busybox image.
#
#   examples/ci/smoke.sh [CHECKOUT]        (CHECKOUT: the minirun sources, default: this checkout)
#
# Needs from the system, once (the workflow's first step does it with sudo): python3 with venv,
# busybox-static (the offline image), uidmap (newuidmap/newgidmap), slirp4netns (the network),
# and unprivileged user namespaces. Everything else is the user's own: a venv in
# $MINIRUN_VENV (default ~/.local/minirun) and a store in ~/.local/share/minirun.
set -eu
checkout=${1:-$(dirname "$0")/../..}
venv=${MINIRUN_VENV:-$HOME/.local/minirun}

step() { printf '\n== %s\n' "$*"; }
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }

step "install minirun as $(id -un), into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "$checkout"
PATH=$venv/bin:$PATH
minirun --version

step "what this host allows (exit 1: containers cannot run here, the lines say why)"
minirun doctor

step "a container: its own PID 1, hostname and user namespace"
out=$(minirun run --rm --name "smoke-$$" busybox sh -c 'echo "$$ $(id -u) $(hostname)"')
echo "container: pid $out (pid, uid, hostname)"
set -- $out
[ "$1" = 1 ] || fail "the container's shell is pid $1, not 1"
[ "$2" = 0 ] || fail "the container's user is $2, not root (0)"
[ "$3" != "$(hostname)" ] || fail "the container has the host's hostname"

step "exit codes pass through (docker's: the container's own, 127 not found)"
set +e
minirun run --rm busybox sh -c 'exit 3'; code=$?
minirun run --rm busybox no-such-program 2>/dev/null; missing=$?
set -e
[ "$code" = 3 ] || fail "exit code $code, expected 3"
[ "$missing" = 127 ] || fail "exit code $missing for a missing program, expected 127"

step "the container's writes stay in the container"
minirun run --rm busybox sh -c 'echo data > /tmp/f && cat /tmp/f' | grep -qx data || fail "write/read"
minirun run --rm busybox test ! -e /tmp/f || fail "a new container saw the last one's file"

step "nothing left behind"
left=$(minirun ps -a -q)
[ -z "$left" ] || fail "containers left: $left"
echo "smoke: OK"
