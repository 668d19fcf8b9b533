"""The labs' Debian image (rootfs-images/debian/build.sh): built offline from the apt mirror with
mmdebstrap, once per machine (the recipe caches it by a hash of its inputs), imported with its
Cmd, and seed 004's capability lesson in it: /usr/bin/ping carries cap_net_raw=ep, `getcap`
shows it, and a non-root user can ping because of it (and not once the container's bounding
set lacks CAP_NET_RAW), rootful and rootless.
"""

import json
from collections.abc import Callable
from pathlib import Path

from helpers import Tier


def test_ping_works_for_a_user_through_its_file_capability(minirun: Tier, debian_tar: Path,
                                                           names: Callable[[], str]) -> None:
    image = f"{names()}:debian"
    minirun(["import", "--change", 'CMD ["nginx", "-g", "daemon off;"]', str(debian_tar), image],
            check=0, timeout=300)
    try:
        config = json.loads(minirun(["image", "inspect", image], check=0).stdout)[0]["Config"]
        assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
        shown = minirun(["run", "--rm", "--network", "none", image, "getcap", "/usr/bin/ping"],
                        check=0).stdout
        assert shown.split() == ["/usr/bin/ping", "cap_net_raw=ep"]
        mode = minirun(["run", "--rm", "--network", "none", image, "stat", "-c", "%A %U", "/usr/bin/ping"],
                       check=0).stdout.split()
        assert mode == ["-rwxr-xr-x", "root"], "not setuid: the capability alone does it"
        ping = minirun(["run", "--rm", "--network", "none", "--user", "1000", image,
                        "ping", "-c1", "-W5", "127.0.0.1"], check=0)
        assert "1 received" in ping.stdout
        # Without CAP_NET_RAW in the bounding set the file capability cannot be granted, and the
        # kernel refuses to exec a program whose effective capabilities would be cut short
        # (capabilities(7), "safety checking for capability-dumb binaries"): EPERM, so 126.
        refused = minirun(["run", "--rm", "--network", "none", "--user", "1000", "--cap-drop", "NET_RAW",
                           image, "ping", "-c1", "-W5", "127.0.0.1"])
        assert refused.returncode == 126 and "1 received" not in refused.stdout, refused.stderr
        tools = minirun(["run", "--rm", "--network", "none", image, "sh", "-c",
                         "ps -o pid= -p 1; ip -br link show lo; nginx -v 2>&1"], check=0).stdout.split("\n")
        assert tools[0].strip() == "1" and tools[1].startswith("lo") and "nginx version" in tools[2]
    finally:
        minirun(["rmi", "-f", image], check=0)
