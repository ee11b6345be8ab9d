/* For the tests of API misuse, which aborts the process: run a function in
 * a child with its stderr captured. */
#ifndef NN_TEST_RUN_CHILD_H
#define NN_TEST_RUN_CHILD_H

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs fn in a child with stderr captured; returns its wait status and puts
 * what it wrote into msg (cap bytes, NUL-terminated). */
static inline int run_in_child(void (*fn)(void), char *msg, size_t cap) {
    int fds[2];
    msg[0] = '\0';
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        fn();
        _exit(0); /* did not abort */
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t got;
    while ((got = read(fds[0], msg + len, cap - 1 - len)) > 0) len += (size_t)got;
    msg[len] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

#endif
