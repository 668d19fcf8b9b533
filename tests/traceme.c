/* Issue 12, item 2: a container that can hang its own monitor.
 *
 * One thread makes the monitor (its process's parent) its tracer with PTRACE_TRACEME, then
 * the process exit_group()s. The traced thread is left a zombie that only a __WALL wait
 * reaps, and until it is reaped the thread group leader cannot be: waitpid(pid, 0) never
 * returns. Prints "traced" once the thread is traced, then exits 7.
 * Built static by tests/root/test_monitor.py, run from a -v mount. */
#include <pthread.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int traced;

static void *tracee(void *unused) {
    (void)unused;
    if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) {
        perror("ptrace(PTRACE_TRACEME)");
        syscall(SYS_exit_group, 2);
    }
    traced = 1;
    for (;;)
        pause();
    return 0;
}

int main(void) {
    pthread_t thread;
    if (pthread_create(&thread, 0, tracee, 0) != 0)
        return 3;
    while (!traced)
        usleep(1000);
    printf("traced\n");
    fflush(stdout);
    syscall(SYS_exit_group, 7);
    return 0;
}
