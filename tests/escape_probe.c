/* escape_probe: tries ONE thing a container should not be able to do, and reports the outcome.
 *
 * Built statically by the escape tests (gcc -static) and bind-mounted into a busybox container,
 * which has no compiler and lacks most of these tools. Usage: escape_probe ACTION [ARG]
 * Prints "ok" (the action succeeded) or "errno NAME" (it failed), and exits 0 either way, so
 * the test reads the outcome from stdout. Arguments are chosen so that success changes nothing
 * outside the container (a tmpfs on /mnt, a key in the process keyring, a throw-away map).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static int report(long result) {
    if (result < 0)
        printf("errno %s\n", strerrorname_np(errno) ? strerrorname_np(errno) : "?");
    else
        printf("ok\n");
    return 0;
}

static long do_pivot_root(void) {
    /* A fresh mount namespace, a tmpfs as the new root: pivot_root(2) as a runtime does it. */
    if (unshare(CLONE_NEWNS) < 0) return -1;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return -1;
    if (mount("tmpfs", "/mnt", "tmpfs", 0, NULL) < 0) return -1;
    if (mkdir("/mnt/old", 0700) < 0) return -1;
    return syscall(SYS_pivot_root, "/mnt", "/mnt/old");
}

static long do_clone(unsigned long flags) {
    long pid = syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    return pid;
}

static long do_clone3(void) {
    struct { unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; } args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    return pid;
}

static long do_bpf(void) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    return syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
}

static long do_perf(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.exclude_kernel = 1;  /* only what perf_event_paranoid=2 lets any user count */
    attr.exclude_hv = 1;
    return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
}

/* IORING_OP_SOCKET (Linux 5.19): io_uring creates the socket in the kernel's worker, and seccomp
 * never sees a socket(2) call, so a filter on socket's family is bypassed (why Docker 25.0 took
 * io_uring_setup/enter/register out of its profile). Raw syscalls: the image has no liburing. */
static long do_io_uring_socket(int family, int type) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = syscall(SYS_io_uring_setup, 4, &p);
    if (ring < 0) return -1;
    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (cq_size > sq_size) sq_size = cq_size;  /* IORING_FEAT_SINGLE_MMAP: one map for both rings */
    char *rings = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_SQ_RING);
    struct io_uring_sqe *sqes = mmap(NULL, p.sq_entries * sizeof *sqes, PROT_READ | PROT_WRITE, MAP_SHARED,
                                     ring, IORING_OFF_SQES);
    if (rings == MAP_FAILED || sqes == MAP_FAILED) return -1;
    memset(&sqes[0], 0, sizeof sqes[0]);
    sqes[0].opcode = IORING_OP_SOCKET;
    sqes[0].fd = family;
    sqes[0].off = type;
    unsigned *tail = (unsigned *)(rings + p.sq_off.tail);
    ((unsigned *)(rings + p.sq_off.array))[*tail & *(unsigned *)(rings + p.sq_off.ring_mask)] = 0;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    if (syscall(SYS_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) return -1;
    unsigned head = __atomic_load_n((unsigned *)(rings + p.cq_off.head), __ATOMIC_ACQUIRE);
    struct io_uring_cqe *cqe = (struct io_uring_cqe *)(rings + p.cq_off.cqes)
                               + (head & *(unsigned *)(rings + p.cq_off.ring_mask));
    if (cqe->res < 0) {
        errno = -cqe->res;
        return -1;
    }
    return cqe->res;  /* the new socket's fd */
}

/* For SECONDS, try to seize (PTRACE_SEIZE) each process as it is born (the pids just above the
 * host's ns_last_pid: the container runs with --pid=host) whose uid is UID: the host's root is
 * the overflow uid 65534 to a remapped container (user_namespaces(7)), the user is 0 to a rootless
 * one. One seized is stopped, printed with its name and let go (once a pid); at the end "done". */
static int has_uid(int pid, int uid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *status = fopen(path, "r");
    int found = 0;
    while (status && fgets(line, sizeof line, status))
        if (!strncmp(line, "Uid:", 4)) found = atoi(line + 4) == uid;
    if (status) fclose(status);
    return found;
}

static unsigned char seen[4194304 / 8];  /* PID_MAX_LIMIT: each pid is seized once */

static int ptrace_newcomers(int seconds, int uid) {
    time_t end = time(NULL) + seconds;
    char path[64], line[64], name[64];
    while (time(NULL) < end) {
        int fd = open("/proc/sys/kernel/ns_last_pid", O_RDONLY);
        ssize_t n = fd < 0 ? -1 : read(fd, line, sizeof line - 1);
        if (fd >= 0) close(fd);
        if (n <= 0) continue;
        line[n] = 0;
        int last = atoi(line);
        for (int pid = last - 1; pid <= last + 2; pid++) {
            if (pid <= 1 || pid >= 4194304 || seen[pid / 8] & 1 << pid % 8 || !has_uid(pid, uid)
                || ptrace(PTRACE_SEIZE, pid, NULL, NULL) != 0) continue;
            seen[pid / 8] |= 1 << pid % 8;
            ptrace(PTRACE_INTERRUPT, pid, NULL, NULL);
            waitpid(pid, NULL, __WALL);
            snprintf(path, sizeof path, "/proc/%d/comm", pid);
            int comm = open(path, O_RDONLY);
            ssize_t got = comm < 0 ? 0 : read(comm, name, sizeof name - 1);
            if (comm >= 0) close(comm);
            printf("seized %d (%.*s)\n", pid, got > 0 ? (int)got - 1 : 0, name);
            fflush(stdout);
            ptrace(PTRACE_DETACH, pid, NULL, NULL);
        }
    }
    printf("done\n");
    return 0;
}

/* hop USEC HOPS FILE: never keep a pid. Start a successor, exit, again and again, USEC
 * microseconds at each pid; at each, "PGID COUNT" in FILE (the count: that it still hops). It
 * gives up by itself after HOPS pids, so a test whose kill failed leaves no hopper behind (nor
 * more than HOPS zombies for the host's init to reap); and all its generations are in one process
 * group (setpgid; a session leader's is its own already), so the test can end them with one kill(2)
 * of the group, which no fork slips past (fork(2) restarts when a signal comes before the child is
 * in the group: kernel/fork.c, copy_process). */
static int hop(int usec, long hops, const char *file) {
    setpgid(0, 0);
    int beat = open(file, O_WRONLY | O_CREAT, 0644);
    for (long n = 1; n <= hops; n++) {
        pid_t child = fork();
        if (child != 0) _exit(child < 0);
        char line[40];
        pwrite(beat, line, snprintf(line, sizeof line, "%10d %20ld\n", (int)getpgrp(), n), 0);
        if (usec) usleep(usec);
    }
    return 0;
}

/* leader-exit SECONDS: the main thread ends (exit(2), not exit_group(2)) while a second thread
 * lives on for SECONDS, then ends the process. /proc still lists the process (its thread group
 * lives), but what /proc/PID shows of the leader's namespaces and root is gone with the leader
 * (a task's nsproxy and fs are dropped at its exit: kernel/exit.c), so only /proc/PID/task/TID
 * of a live thread shows them. */
static void *linger(void *seconds) {
    sleep((unsigned)(long)seconds);
    syscall(SYS_exit_group, 0);
    return NULL;
}

static int leader_exit(int seconds) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, linger, (void *)(long)seconds)) return 1;
    syscall(SYS_exit, 0);
    return 1;
}

/* swarm N SECONDS: N children that sleep, then, for SECONDS, children that live 100 ms, as fast
 * as fork(2) goes (reaped by the kernel: SIGCHLD ignored, so nothing waits on one that was
 * stopped). A sweep that holds a file descriptor for each process it stops runs out of them
 * (RLIMIT_NOFILE) on the N; one that stops some, kills them and begins again at the newest pids
 * never comes to the swarm's parent, older than all. Bounded: every member ends by itself after
 * SECONDS; one process group (setpgid) for the test to end them all at once. */
static int swarm(int n, int seconds) {
    setpgid(0, 0);
    signal(SIGCHLD, SIG_IGN);
    time_t end = time(NULL) + seconds;
    for (int i = 0; i < n; i++) {
        pid_t child = fork();
        if (child == 0) {
            sleep(seconds);
            _exit(0);
        }
        if (child < 0) return 1;
    }
    while (time(NULL) < end)
        if (fork() == 0) {
            usleep(100000);
            _exit(0);
        }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s ACTION [ARG]\n", argv[0]);
        return 2;
    }
    const char *a = argv[1], *arg = argc > 2 ? argv[2] : "";
    mkdir("/mnt", 0755);  /* busybox has no /mnt; an error (EEXIST, EROFS) is fine here */
    if (!strcmp(a, "mount")) return report(mount("tmpfs", "/mnt", "tmpfs", 0, NULL));
    if (!strcmp(a, "umount")) return report(umount2(arg, MNT_DETACH));
    if (!strcmp(a, "unshare-user")) return report(unshare(CLONE_NEWUSER));
    if (!strcmp(a, "unshare-net")) return report(unshare(CLONE_NEWNET));
    if (!strcmp(a, "setns")) {  /* join a namespace by its /proc/PID/ns file */
        int fd = open(arg, O_RDONLY);
        if (fd < 0) return report(-1);
        return report(setns(fd, 0));
    }
    if (!strcmp(a, "pivot_root")) return report(do_pivot_root());
    if (!strcmp(a, "add_key"))
        return report(syscall(SYS_add_key, "user", "minirun-probe", "x", 1, -2 /* process keyring */));
    if (!strcmp(a, "keyctl")) return report(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -2, 1));
    if (!strcmp(a, "bpf")) return report(do_bpf());
    if (!strcmp(a, "perf_event_open")) return report(do_perf());
    /* The next four can only ever succeed with capabilities in the *initial* user namespace;
     * their arguments are invalid on purpose, so a privileged caller gets EINVAL/ENOENT/ENOEXEC. */
    if (!strcmp(a, "kexec_load")) return report(syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL));
    if (!strcmp(a, "init_module")) return report(syscall(SYS_init_module, "", 0, ""));
    if (!strcmp(a, "swapon")) return report(swapon("/nonexistent-minirun-probe", 0));
    if (!strcmp(a, "mknod-block")) return report(mknod(arg, S_IFBLK | 0600, makedev(7, 0)));
    /* reboot(2) in a PID namespace only signals that namespace's init; CAD_OFF is refused
     * there with EINVAL once the capability check has passed. */
    if (!strcmp(a, "reboot")) return report(syscall(SYS_reboot, 0xfee1dead, 672274793, 0 /* CAD_OFF */, NULL));
    if (!strcmp(a, "clone-newns")) return report(do_clone(CLONE_NEWNS));
    if (!strcmp(a, "clone-thread")) return report(do_clone(0));
    if (!strcmp(a, "clone3")) return report(do_clone3());
    if (!strcmp(a, "socket-alg")) return report(socket(AF_ALG, SOCK_SEQPACKET, 0));
    if (!strcmp(a, "socket-vsock")) return report(socket(AF_VSOCK, SOCK_STREAM, 0));
    if (!strcmp(a, "io_uring-socket-vsock")) return report(do_io_uring_socket(AF_VSOCK, SOCK_STREAM));
    if (!strcmp(a, "io_uring-socket-unix")) return report(do_io_uring_socket(AF_UNIX, SOCK_STREAM));
    if (!strcmp(a, "socket-packet")) return report(socket(AF_PACKET, SOCK_RAW, htons(0x0003 /* ETH_P_ALL */)));
    if (!strcmp(a, "socket-unix")) return report(socket(AF_UNIX, SOCK_STREAM, 0));
    if (!strcmp(a, "personality-linux")) return report(personality(PER_LINUX));
    if (!strcmp(a, "personality-norandom")) return report(personality(ADDR_NO_RANDOMIZE));
    if (!strcmp(a, "euid")) {  /* what a setuid copy of the probe runs as */
        printf("euid %d\n", (int)geteuid());
        return 0;
    }
    if (!strcmp(a, "open-rw")) return report(open(arg, O_RDWR));
    if (!strcmp(a, "open-ro")) return report(open(arg, O_RDONLY));
    if (!strcmp(a, "shmget")) return report(shmget(atoi(arg), 4096, IPC_CREAT | 0600));  /* as ipcmk -M */
    if (!strcmp(a, "ptrace-attach")) {  /* seize PID (no stop), then let it go */
        long r = ptrace(PTRACE_SEIZE, atoi(arg), NULL, NULL);
        if (r == 0) ptrace(PTRACE_DETACH, atoi(arg), NULL, NULL);
        return report(r);
    }
    if (!strcmp(a, "ptrace-hold")) {  /* seize PID and never wait for it: its exit is ours to reap */
        long r = ptrace(PTRACE_SEIZE, atoi(arg), NULL, NULL);
        report(r);
        fflush(stdout);
        if (r == 0) sleep(600);
        return 0;
    }
    if (!strcmp(a, "leader-exit")) return leader_exit(atoi(arg));
    if (!strcmp(a, "swarm")) return swarm(atoi(arg), argc > 3 ? atoi(argv[3]) : 60);
    if (!strcmp(a, "hop")) return hop(atoi(arg), argc > 3 ? atol(argv[3]) : 1000, argc > 4 ? argv[4] : "/dev/null");
    if (!strcmp(a, "ptrace-newcomers")) return ptrace_newcomers(atoi(arg), argc > 3 ? atoi(argv[3]) : 65534);
    fprintf(stderr, "unknown action %s\n", a);
    return 2;
}
