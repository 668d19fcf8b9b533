"""`minirun run [OPTIONS] IMAGE [COMMAND] [ARG...]`: create and start a container, attached (its
monitor is this process, until it exits) or with -d detached (a monitor of its own; the full id
is printed once the command runs). `minirun create` takes the same flags (commands/create.py)."""

import argparse
import os
import signal
import sys

from minirun import container, logfile, runtime, spec, tty
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("run", help="run a command in a new container", add_help=False)
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    p.add_argument("--explain", action="store_true",
                   help="narrate each step of the start on stderr: what it does, real values, man pages")
    add_detach_keys(p)
    add_container_flags(p)


def add_detach_keys(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detach-keys", default=None, metavar="KEYS",
                   help='with -it: keys that detach and leave it running (default ctrl-p,ctrl-q; "": none)')


def add_container_flags(p: argparse.ArgumentParser) -> None:
    """The flags of `run` and `create`: what the container is and how it is run."""
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", help="name the container")
    p.add_argument("-h", "--hostname", help="container host name")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]", help="set a variable")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="USER[:GROUP] or UID[:GID] inside the container")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:CONTAINER[:ro]",
                   help="bind mount a host path")
    p.add_argument("--network", "--net", default="default",
                   help="bridge (root's default), slirp4netns (rootless default), none, host, container:NAME")
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[IP:]HOST_PORT:CONTAINER_PORT[/udp]", help="publish a container port on the host")
    p.add_argument("--add-host", action="append", default=[], metavar="NAME:IP",
                   help="add a line to /etc/hosts")
    p.add_argument("--dns", action="append", default=[], metavar="IP", help="nameserver for /etc/resolv.conf")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("--init", action="store_true", help="run an init as PID 1 that forwards signals and reaps")
    p.add_argument("--entrypoint", help="override the image's entrypoint")
    p.add_argument("-m", "--memory", help="memory limit, e.g. 64m (OOM-killed beyond it)")
    p.add_argument("--memory-swap", help="memory plus swap limit (default: twice --memory; -1: unlimited)")
    p.add_argument("--cpus", help="CPU time limit in CPUs, e.g. 0.5")
    p.add_argument("--cpu-shares", help="relative CPU weight (default 1024)")
    p.add_argument("--cpuset-cpus", help="CPUs the container may run on, e.g. 0-1")
    p.add_argument("--cpuset-mems", help="memory (NUMA) nodes the container may allocate on, e.g. 0")
    p.add_argument("--pids-limit", help="maximum number of processes and threads (-1: unlimited)")
    p.add_argument("--cgroupns", default="private", help="private (default) or host cgroup namespace")
    p.add_argument("--pull", default="missing", help="pull the image: missing (default), always, never")
    p.add_argument("--platform", help="OS/ARCH[/VARIANT] to pull, e.g. linux/arm64")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a capability (or ALL)")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP",
                   help="drop a capability (or ALL)")
    p.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                   help="seccomp=PROFILE.json|unconfined, no-new-privileges, systempaths=unconfined")
    p.add_argument("--read-only", action="store_true", help="mount the container's root read-only")
    p.add_argument("--tmpfs", action="append", default=[], metavar="PATH[:OPTIONS]", help="mount a tmpfs")
    p.add_argument("--userns", help="auto[:size=N] (default: host ids of its own), shared (one range for "
                   "all, 1000000-1065535) or host (root is root on the host)")
    p.add_argument("--pid", help="host or container:NAME: share that PID namespace")
    p.add_argument("--ipc", help="private (default), shareable, host or container:NAME")
    p.add_argument("--uts", help="host: share the host's host name")
    p.add_argument("--stop-signal",
                   help="signal `stop` sends first (default: the image's StopSignal, else SIGTERM)")
    p.add_argument("--stop-timeout", type=int, default=container.DEFAULT_STOP_TIMEOUT, metavar="SECONDS",
                   help="seconds `stop` waits before SIGKILL (default 10)")
    p.add_argument("--log-driver", default="json-file", help="json-file (default: `minirun logs`) or none")
    p.add_argument("--log-opt", action="append", default=[], metavar="OPT",
                   help="max-size=10m, max-file=3 (json-file rotation)")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def to_spec(args: argparse.Namespace, check_tty: bool = True) -> spec.ContainerSpec:
    if check_tty and args.tty and not os.isatty(0):
        raise MinirunError("the input device is not a TTY; drop -t, or run from a terminal")
    return spec.ContainerSpec(
        image=args.image, command=tuple(args.command),
        entrypoint=None if args.entrypoint is None else ((args.entrypoint,) if args.entrypoint else ()),
        name=spec.check_name(args.name), hostname=spec.check_hostname(args.hostname),
        env=tuple(spec.parse_env(args.env)),
        workdir=spec.check_workdir(args.workdir), user=spec.check_user(args.user),
        binds=tuple(spec.parse_bind(v) for v in args.volume), network=spec.check_network(args.network),
        interactive=args.interactive, tty=args.tty, init=args.init, remove=args.rm,
        ports=tuple(spec.parse_publish(v) for v in args.publish),
        add_hosts=tuple(spec.parse_add_host(v) for v in args.add_host),
        dns=tuple(spec.parse_dns(v) for v in args.dns),
        limits=spec.parse_limits(args.memory, args.memory_swap, args.cpus, args.cpu_shares, args.cpuset_cpus,
                                 args.pids_limit, args.cpuset_mems),
        cgroupns=spec.check_cgroupns(args.cgroupns),
        pull=spec.check_pull(args.pull), platform=spec.check_platform(args.platform),
        security=spec.parse_security(args.cap_add, args.cap_drop, args.security_opt, args.read_only,
                                     args.tmpfs, args.userns),
        pid=spec.check_share("pid", args.pid), ipc=spec.check_share("ipc", args.ipc),
        uts=spec.check_share("uts", args.uts),
    )


def to_options(args: argparse.Namespace, verb: str, detach: bool) -> container.Options:
    """The lifecycle options, and the verb's own arguments, kept for `start` and `restart`."""
    if args.stop_timeout < -1:
        raise MinirunError(f"invalid --stop-timeout {args.stop_timeout}: seconds, or -1 to wait forever")
    argv: list[str] = getattr(args, "argv", [])
    kept = [a for a in argv[argv.index(verb) + 1:] if a != "--explain"] if verb in argv else []
    stop_signal = signal.Signals(container.parse_signal(args.stop_signal)).name if args.stop_signal else ""
    keys = getattr(args, "detach_keys", None)
    return container.Options(detach=detach, stop_signal=stop_signal, stop_timeout=args.stop_timeout,
                             log=logfile.parse_options(args.log_driver, args.log_opt), args=tuple(kept),
                             detach_keys=tty.parse_detach_keys(tty.DETACH_KEYS if keys is None else keys))


def run(args: argparse.Namespace) -> int:
    # -d: the terminal is the monitor's to hold, not ours (-t checks only an attached run).
    spec_ = to_spec(args, check_tty=not args.detach)
    options = to_options(args, "run", args.detach)
    sys.stdout.flush()
    prepared = runtime.prepare(spec_)
    runtime.hold_signals()  # before the record: nothing between it and the start is lost (-d too)
    record = runtime.create_record(prepared, options)
    code = runtime.start(prepared, record, options, attach=not args.detach)
    if args.detach:
        print(record.id)  # docker prints the full id once the command runs
        runtime.interrupted_detached(record)  # a signal held meanwhile: the container has it now
    return code
