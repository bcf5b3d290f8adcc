// Runs a command with a scheduler slice of its own (BENCHMARKS.md, "Tail latency", fourth part): EEVDF's per-thread
// slice, sched_setattr's sched_runtime, which Linux 6.12 and later take for SCHED_OTHER threads without privilege.
//
//     cc -O2 -o /tmp/sched-slice Scripts/bench/sched-slice.c
//     /tmp/sched-slice 100 .build-bench/release/switchboard --port 0      # master and workers: 100 µs
//     RESET_ON_FORK=1 /tmp/sched-slice 100 .build-bench/release/switchboard --port 0   # the master alone
//
// A two-line shell script that execs it serves as bench.py's --binary.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
    uint32_t sched_util_min, sched_util_max;
};

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: sched-slice MICROSECONDS COMMAND [ARG...]\n");
        return 64;
    }
    struct sched_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.sched_runtime = strtoull(argv[1], NULL, 10) * 1000;
    if (getenv("RESET_ON_FORK") != NULL) attr.sched_flags = 1;  // SCHED_FLAG_RESET_ON_FORK: children get the default
    if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
        perror("sched_setattr");
        return 1;
    }
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    return 127;
}
