"""The labs in examples/labs/ replay the seed articles with minirun; they must keep working.

Each lab runs exactly as a learner would run it (`sh examples/labs/NN-*.sh`), with MINIRUN
pointing at this checkout, in the session's network namespace, and the test checks the facts
each step is there to show. Lab 03's article is about unprivileged namespaces: it runs rootless
too. (tests/unit/test_lab_coverage.py checks that every seed command has its step.)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import REPO, Tier, oci_runtime

LABS = REPO / "examples" / "labs"
IMAGE = "mrt-lab-debian"

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab_image(root_tier: Tier, debian_tar: Path) -> Iterator[str]:
    """The labs' Debian image, imported as a lab would (with nginx as its Cmd), under a test name."""
    root_tier(["import", "--change", 'CMD ["nginx", "-g", "daemon off;"]', str(debian_tar), IMAGE],
              check=True, timeout=300)
    yield IMAGE
    root_tier(["rmi", "-f", IMAGE])


def run_lab(name: str, tier: Tier, debian_tar: Path | None = None) -> str:
    """Run a lab as the tier's user, in the session's network namespace, as the tier runs minirun."""
    if tier.rootless:
        # The user may not read the checkout: a world-readable copy of the labs, and the tier's
        # own way of becoming the user (setpriv ... env -i ... python -m minirun) with `sh LAB`.
        copy = Path(tempfile.mkdtemp(prefix="minirun-test-labs-"))
        try:
            copy.chmod(0o755)
            for lab in LABS.glob("*.sh"):
                shutil.copy(lab, copy / lab.name)
                (copy / lab.name).chmod(0o755)
            python_m_minirun = " ".join(tier.prefix[-3:])
            argv = [*tier.prefix[:-3], f"MINIRUN={python_m_minirun}", "TMPDIR=/tmp", "sh", str(copy / name)]
            result = subprocess.run(argv, env=tier.env, capture_output=True, text=True, timeout=600)
        finally:
            shutil.rmtree(copy, ignore_errors=True)
    else:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MINIRUN_")},
               "MINIRUN": f"{sys.executable} -m minirun", "PYTHONPATH": str(REPO), "LAB_IMAGE": IMAGE,
               "DEBIAN_TAR": str(debian_tar or "")}
        result = subprocess.run(["nsenter", f"--net=/run/netns/{tier.netns}", "sh", str(LABS / name)],
                                env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[press Enter" not in result.stdout, "no pauses without --step"
    return result.stdout


def section(output: str, title_start: str) -> str:
    """The output of one step of a lab (`== ARTICLE COMMAND` up to the next step)."""
    parts = re.split(r"^== ", output, flags=re.M)
    found = [p for p in parts if p.startswith(title_start)]
    assert found, f"no step {title_start!r} in:\n{output}"
    return found[0]


def shown(text: str) -> list[str]:
    """What the commands of a step printed: neither the `$ command` lines nor the explanations."""
    return [line for line in text.splitlines()[2:] if line and not line.startswith(("$ ", "   | "))]


def test_lab_00_isolation_and_namespaces(root_tier: Tier, lab_image: str) -> None:
    out = run_lab("00-isolation-and-namespaces.sh", root_tier)
    started = section(out, "docker run -d nginx")
    workers = os.cpu_count() or 1  # nginx's worker_processes auto
    for ns in ("user", "mnt", "uts", "ipc", "pid", "net", "cgroup"):
        assert re.search(rf"^\d+ {ns} +{1 + workers} +\d+ nginx: master", started, flags=re.M), started
    pid_step = section(out, "docker inspect -f '{{.State.Pid}}' objective_fermat")
    assert int(shown(pid_step)[0]) > 1
    container_id = re.search(r"^([0-9a-f]{64})$", started, flags=re.M).group(1)  # type: ignore[union-attr]
    # relative to the container's directory, which the child entered first (a range of its own)
    assert re.search(r"^upperdir=upper$", pid_step, flags=re.M)
    assert re.search(r"^lowerdir=lower/0", pid_step, flags=re.M)
    assert re.search(rf"^/\S+/{container_id}/upper$", pid_step, flags=re.M)
    assert re.search(r"^/ +overlay +overlay$", section(out, "findmnt -N"), flags=re.M)
    assert {"etc", "usr", "proc"} <= set(shown(section(out, "nsenter --target 27685 --mount ls /")))
    assert re.search(r"^\s+1 .*\btop$", section(out, "nsenter --target 2565 -m -p ps -ef"), flags=re.M)
    unshared = section(out, "unshare --pid --fork --mount-proc /bin/bash")
    assert re.search(r"^root +1 +0 .* ps -ef$", unshared, flags=re.M)  # the host's ps, PID 1
    assert re.search(r"^ +1 root .*ps -ef$", unshared, flags=re.M)  # busybox's, PID 1 in the container
    debug = section(out, "docker run -it --name debug --pid=container:webserver")
    assert re.search(r"^\S+ +1 +0 .* nginx: master process", debug, flags=re.M)
    assert re.search(r"^\S+ +\d+ +1 .* nginx: worker process", debug, flags=re.M)
    net = section(out, "nsenter --target 2758 -n ip addr")
    assert "lo:" in net and re.search(r"^\d+: eth0@", net, flags=re.M)
    assert re.search(r"LISTEN .* 0\.0\.0\.0:80 ", section(out, "docker run -it --name=debug-network"))
    private = shown(section(out, "docker run ubuntu:22.04 ls -R"))
    assert "0::/" in private[1:], "in its own cgroup namespace, the container's cgroup is /"
    host = shown(section(out, "docker run --cgroupns=host ubuntu:22.04 ls -R"))
    assert int(host[0]) >= int(private[0])
    uts = shown(section(out, "docker run -it ubuntu:22.04 /bin/bash"))
    assert re.fullmatch(r"[0-9a-f]{12}", uts[0]) and uts[1] == os.uname().nodename
    assert shown(section(out, "docker run --uts=host"))[0] == os.uname().nodename


def test_lab_01_seven_namespaces(root_tier: Tier, lab_image: str) -> None:
    out = run_lab("01-seven-namespaces.sh", root_tier)
    assert "HTTP/1.1 200 OK" in section(out, "docker run -d --name nginx -p 8080:80")
    assert "0.0.0.0:8080->80/tcp" in section(out, "docker ps")
    hostname = shown(section(out, "nsenter --target 1627489 --uts hostname"))[0]
    assert re.fullmatch(r"[0-9a-f]{12}", hostname)
    ip_addr = section(out, "nsenter --target 1627489 --net ip addr")
    assert re.search(r"^\d+: eth0@.*\n(?:.*\n)*?\s+inet 10\.", ip_addr, flags=re.M)
    route = section(out, "nsenter -t 1627489 --net ip route")
    assert re.search(r"^default via \S+ dev eth0", route, flags=re.M)
    assert re.fullmatch(r'"\d+\.\d+\.\d+\.\d+"', shown(section(out, "docker inspect b137f6af4137"))[0])
    counts = shown(section(out, "unshare chroot busybox-without-pid sh"))
    assert counts[0] == "1" and int(counts[1]) > 10, "without a PID namespace, every host process"
    exported = shown(section(out, "docker export $(docker create busybox)"))
    assert {"bin", "etc"} <= set(" ".join(exported).split())
    alone = section(out, "unshare --pid --fork chroot busybox sh")
    assert re.search(r"^ +1 \S+ .*\bsh\b", alone, flags=re.M) and "my pid: 1" in alone
    net = section(out, "unshare --net ip a")
    assert "<LOOPBACK> " in net, "the host's unshare: lo down"
    assert "<LOOPBACK,UP,LOWER_UP>" in net, "minirun brings lo up"
    assert re.search(r"^\d+: eth0@", net, flags=re.M), "and the default network adds eth0"
    assert shown(section(out, "unshare --uts hostname"))[0] == os.uname().nodename
    uts = shown(section(out, "unshare --uts sh"))
    assert uts == ["foo", os.uname().nodename, "foo"]
    assert "uid=65534" in section(out, "unshare -U")
    user = section(out, "unshare --user --map-root-user")
    assert re.search(r"^\s+0\s+0\s+1$", user, flags=re.M), "unshare as root maps 0 to 0"
    remapped = re.search(r"^\s+0\s+(\d+)\s+65536$", user, flags=re.M)  # a range of its own (--userns=auto)
    assert remapped and int(remapped[1]) >= 65536, user
    assert re.search(r"uid=1000\(\S*\) gid=1000", section(out, "unshare --user --map-current-user"))
    mount = shown(section(out, "unshare --mount chroot testrootfs sh"))
    assert "hello" in mount and mount.count("0") >= 1 and mount[-1] == "hello"
    assert "host segments: 0" not in section(out, "ipcmk -M 1024")
    assert "container segments: 0" in section(out, "unshare --ipc ipcs")
    assert re.search(r"^0::/$", section(out, "cgroup namespace"), flags=re.M)


def test_lab_02_unshare_and_nsenter(root_tier: Tier, lab_image: str) -> None:
    out = run_lab("02-unshare-and-nsenter.sh", root_tier)
    assert "--mount-proc" in section(out, "unshare --help")
    assert re.search(r"^ +1 sh$", section(out, "unshare --fork --pid --mount-proc bash"), flags=re.M)
    assert "--target" in section(out, "nsenter --help")
    assert re.search(r"^ +1 \S+ .*sleep 300$", section(out, "nsenter --target $DBPID"), flags=re.M)
    assert "nginx is " in section(out, "docker run -d --name=web")
    nets = re.findall(r"net -> net:\[(\d+)\]", section(out, "ls -lha /proc/$WEBPID/ns/ | grep net"))
    assert len(nets) == 2 and nets[0] == nets[1], "web and db: one network namespace"
    mnts = re.findall(r"mnt -> mnt:\[(\d+)\]", out)
    assert len(set(mnts)) >= 1


def check_lab_03(out: str, tier: Tier) -> None:
    assert re.search(r" /mnt .* - tmpfs tmpfs ", section(out, "unshare -m /bin/bash"))
    assert shown(section(out, "unshare -m /bin/bash"))[1] == "0", "the host does not see it"
    pidipc = shown(section(out, "unshare -mipf /bin/bash"))
    assert pidipc[0] == "1" and int(pidipc[1]) > 5, "PID 1, but the host's /proc"
    own = "\n".join(shown(section(out, "unshare --mount-proc -mipf /bin/bash")))
    assert re.search(r"^1\n +PID TTY +TIME CMD\n +1 \? .* sh\n +2 \? .* ps\n1\n", own), own
    assert re.match(r"^lo +DOWN", shown(section(out, "unshare -unUr /bin/bash"))[0])
    slirp = section(out, "slirp4netns -c 5039 tap0")
    assert re.search(r"^tap0 +UNKNOWN +10\.0\.2\.100/24", slirp, flags=re.M)
    assert "tap0" in slirp.split("$ ")[-1] or (tier.rootless is False and "tap0" in slirp)
    user = shown(section(out, "unshare -Ur /bin/bash"))
    assert user[0] == "0" and re.fullmatch(rf"\s*0\s+{tier.uid}\s+1", user[1]) and user[2] == "0"
    assert user[3] == str(tier.uid), "the file is the user's on the host"
    # rootful: a range of its own
    own = rf"^\s+0\s+{tier.uid}\s+1$" if tier.rootless else r"^\s+0\s+(\d{6,})\s+65536$"
    assert re.search(own, section(out, "unshare -Ur /bin/bash"), flags=re.M)
    together = shown(section(out, "unshare -mipfunUr /bin/bash"))
    assert together[:2] == ["sandbox", "1"]
    assert re.search(r" net +1 +\d+ sleep 300$", section(out, "lsns --type net"), flags=re.M)
    assert re.search(r"^\d+: (eth0|tap0)", section(out, "nsenter --target 1548 --net ip a s"), flags=re.M)


def test_lab_03_namespace_types_root(root_tier: Tier) -> None:
    check_lab_03(run_lab("03-namespace-types.sh", root_tier), root_tier)


@pytest.mark.rootless
def test_lab_03_namespace_types_rootless(rootless_tier: Tier) -> None:
    check_lab_03(run_lab("03-namespace-types.sh", rootless_tier), rootless_tier)


def test_lab_04_troubleshooting_containers(root_tier: Tier, lab_image: str) -> None:
    out = run_lab("04-troubleshooting-containers.sh", root_tier)
    assert re.search(r"Exited \(0\)", section(out, "docker run -it --name busyback"))
    assert {"bin", "etc", "proc"} <= set(shown(section(out, "docker container export")))
    counts = shown(section(out, "chroot rootfs /bin/sh"))
    assert counts[0] == "1" and int(counts[1]) > 10, "chroot: no PID namespace"
    pivot = shown(section(out, "unshare -Urfpm --mount-proc"))
    assert pivot[-1] == "old root: (empty)" and len(pivot) == 3, "two mounts left: / and /proc"
    ping = shown(section(out, "ping and capabilities"))
    assert ping[0].split() == ["/usr/bin/ping", "cap_net_raw=ep"]
    assert "1 received" in ping[1] and ping[2] == "copied: no capability"
    assert "(exit 126)" in section(out, "ping and capabilities")
    propagation = shown(section(out, "unshare -m --propagation unchanged sh"))
    assert propagation[0] == "1" and propagation[1] == "0" and propagation[2] == "0"
    workers = os.cpu_count() or 1
    assert re.search(rf"^\d+ mnt +{1 + workers} +\d+ nginx: master", section(out, "lsns"), flags=re.M)
    pid = int(shown(section(out, "docker inspect -f '{{.State.Pid}}' webserver"))[0])
    assert pid > 1
    assert "new_test_file" in section(out, "docker exec webserver touch new_test_file")
    ps = section(out, "nsenter --target 5426 -m -p ps -ef")
    assert re.search(r"^\S+ +1 +0 .*nginx: master", ps, flags=re.M)
    assert re.search(r"^procps\t", section(out, "nsenter --target 5426 -m -p apt-get"), flags=re.M)
    debug = section(out, "docker run -it --name debug-server-2")
    assert re.search(r" +1 +0 .*nginx: master", debug) and "0.0.0.0:80 " in debug
    lacking = section(out, "docker exec webserver ip addr")
    assert "(exit 127)" in lacking and re.search(r"^eth0@\S+ +UP +10\.", lacking, flags=re.M)
    assert re.search(r"inet 10\.\d+\.\d+\.\d+/", section(out, "nsenter --target 5426 --net ip addr show"))
    assert re.search(r"^eth0@", section(out, "unshare --net=/proc"), flags=re.M)
    seccomp = section(out, "--security-opt seccomp=unconfined")
    assert "Operation not permitted" in seccomp and "(exit 1)" in seccomp and "\nallowed\n" in seccomp
    signals = shown(section(out, "docker kill"))
    assert signals[-4:] == ["running", "137", "PID 1: still here", "(exit 143)"]
    assert "Cannot fork" in section(out, "unshare --pid --mount-proc /bin/bash")


def test_lab_05_the_oci_stack(podman: Callable[..., subprocess.CompletedProcess[str]],
                              tmp_path: Path) -> None:
    """examples/labs/05-the-oci-stack.sh as a learner runs it: what each layer did, and the
    runtime's own narration under podman naming what the kernel and podman say (its pid, its
    cgroup, its id mappings), not what it was told to do."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MINIRUN_")},
           "MINIRUN": f"{sys.executable} -P -m minirun", "PYTHONPATH": str(REPO),
           "MINIRUN_OCI": str(oci_runtime(tmp_path, tmp_path / "state"))}
    done = subprocess.run(["sh", str(LABS / "05-the-oci-stack.sh")], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    alone = section(out, "minirun run --explain")
    assert re.search(r"clone\(CLONE_NEWUSER\|CLONE_NEWPID.*\): the child is host pid \d+", alone), alone
    assert "pivot_root" in alone and "execve('true')" in alone
    assert "exit code 3" in out
    calls = "create --bundle BUNDLE --pid-file RUNDIR/pidfile ID\nstart ID\ndelete --force ID\n"
    assert calls in out, out
    assert "parent: conmon" in out
    narrated = section(out, "The runtime's side under podman")
    said = re.search(r"^podman says: pid (\d+), cgroup (\S+)$", narrated, re.M)
    kernel = re.search(r"^the kernel says: uid_map (\d+ \d+ \d+)$", narrated, re.M)
    assert said and kernel, narrated
    pid, cgroup, uid_map = said[1], said[2], kernel[1]
    assert uid_map == "0 300000 65536", narrated
    # create's steps, in order, each with the value the kernel or podman shows
    expected = [f"uidMappings: {uid_map} ", "linux.seccomp: defaultAction",
                f"mkdir /sys/fs/cgroup/pids{cgroup};",
                f"the child is host pid {pid} and PID 1 inside", f"uid_map: {uid_map}\n",
                f"echo {pid} > cgroup.procs", "] oci: namespaces", "] oci: mounts", "] pivot_root",
                "maskedPaths", "] oci: capabilities, seccomp, user", "seccomp(SECCOMP_SET_MODE_FILTER)",
                "blocks in open(", f"pid {pid}, status created", "start opened the fifo",
                "execve('sleep 60')", f"pid {pid} now runs 'sleep 60'"]
    at = [narrated.find(text) for text in expected]
    assert all(i >= 0 for i in at), [t for t, i in zip(expected, at, strict=True) if i < 0]
    assert at == sorted(at), narrated
    assert narrated.find("] oci: created") < narrated.find("] oci: start\n"), narrated
    for status in ("created", "running", "stopped"):
        assert f'"status": "{status}"' in out
    assert "container lab1 does not exist" in out
