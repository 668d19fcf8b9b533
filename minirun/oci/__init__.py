"""minirun as an OCI runtime: `minirun-oci`, a second entry point whose argv is runc's.

Why a second program and not a `minirun oci` verb group: engines call their runtime as one
executable with runc's argv (`RUNTIME [--root R] [--log L] create --bundle B ID`, conmon's and
podman's observed calls are in the README), and a `containers.conf` runtime entry is a path, not
a path plus a verb. So `minirun-oci` is that executable; it shares everything below the command
line with `minirun` (kernel.py, rootfs.py, process.py's steps, security/, cgroups.py).

One module per verb, as crun has: create, start, state, kill, delete, exec, pause (+resume),
update, features (+spec). config.py reads config.json into a frozen plan; child.py is the
container's process from clone to execve; record.py is ROOT/ID/ between verbs; cgroup.py the
cgroupsPath and resources; hooks.py the six kinds of hooks.

The wait between create and start: there is no monitor process (the container's process is
reparented to conmon, the engine's subreaper, when create exits), so the child itself waits,
blocked opening a fifo, as runc's exec fifo does:

  step  create (parent)                          child (the container's process)
  ----  ---------------------------------------  -----------------------------------------------
  1     ROOT/ID/, seccomp BPF, cgroup + limits,  PR_SET_PDEATHSIG; waits for "go"
        mkfifo ROOT/ID/exec.fifo (0622), an
        O_PATH fd of it; clone(new namespaces)
  2     uid_map/gid_map, cgroup.procs,
        oom_score_adj; send "go"
  3                                              setns (paths), root in the userns, cgroupns,
                                                 hostname, lo; mounts, devices,
                                                 createContainer hooks; pivot_root; sysctl,
                                                 masked/readonly paths, ro root; setsid, pty
                                                 -> --console-socket; rlimits; bounding set,
                                                 seccomp, ids, 5 capability sets, nnp; cwd;
                                                 clears PDEATHSIG; closes the sync socket
  4     EOF + child alive: write state.json,     open(/proc/self/fd/FIFO, O_WRONLY) blocks
        createRuntime hooks,                     (fifo(7): until a reader opens it)
        --pid-file; exit 0 ("created")
        or "error CODE MSG": kill, clean, exit
  5     start: prestart hooks (the 1.0 spec's
        moment); open the fifo O_RDONLY|NONBLOCK,  the open returns; write "0"; startContainer
        poll for the byte (giving up if the      hooks; execve(process.args)
        child died), unlink the fifo ("running"
        from here), poststart hooks
  6     delete: SIGKILL if --force, wait,        -
        cgroup removed, poststop hooks, ROOT/ID
        removed

Status is derived each time (record.py): the recorded pid alive with its start time and the
fifo present -> created; fifo gone -> running (paused if frozen); else stopped.
"""
