"""schedtrace: who ran on which CPU, and who ran while a thread was ready to run (issue 23).

Run from the repository root: python3 -m unittest discover -s Scripts/benchlib/tests
"""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # Scripts/

from benchlib import schedtrace  # noqa: E402


def switch(cpu, t, prev, prev_pid, state, nxt, next_pid):
    return (f"[{cpu:03d}] {t:.6f}:       sched:sched_switch: prev_comm={prev} prev_pid={prev_pid} prev_prio=120 "
            f"prev_state={state} ==> next_comm={nxt} next_pid={next_pid} next_prio=120")


def waking(cpu, t, comm, pid, target):
    return f"[{cpu:03d}] {t:.6f}:       sched:sched_waking: comm={comm} pid={pid} prio=120 target_cpu={target:03d}"


# CPU 1: wrk (tid 11) runs, is preempted by the master (20) at 1.0, runs again at 1.3; sleeps at 1.5, is woken at
# 1.6 while worker 21 runs, and runs at 1.8. CPU 0: worker 21 until 1.55, when it moves to CPU 1.
# wrk's main thread (10) ran 0.01 s.
TRACE = "\n".join([
    switch(1, 0.50, "swapper/1", 0, "R", "wrk", 11),
    switch(0, 0.90, "swapper/0", 0, "R", "wrk", 10),
    switch(0, 0.91, "wrk", 10, "S", "sb", 21),
    switch(1, 1.00, "wrk", 11, "R", "sb", 20),
    "[001] 1.000100: sched:sched_stat_runtime: comm=sb pid=20 runtime=100 [ns]",
    switch(1, 1.30, "sb", 20, "S", "wrk", 11),
    switch(1, 1.50, "wrk", 11, "S", "swapper/1", 0),
    switch(0, 1.55, "sb", 21, "R", "swapper/0", 0),
    "[000] 1.550000: sched:sched_migrate_task: comm=sb pid=21 prio=120 orig_cpu=0 dest_cpu=1",
    switch(1, 1.55, "swapper/1", 0, "R", "sb", 21),
    waking(1, 1.60, "wrk", 11, 1),
    switch(1, 1.80, "sb", 21, "S", "wrk", 11),
    switch(0, 2.00, "swapper/0", 0, "R", "sb", 20),
    switch(1, 2.00, "wrk", 11, "R", "swapper/1", 0),
])


class SchedTraceTests(unittest.TestCase):
    def setUp(self):
        self.events = schedtrace.parse(TRACE)

    def test_parse_reads_switches_wakings_and_moves_only(self):
        self.assertEqual(len(self.events), 13)
        first = self.events[0]
        self.assertEqual((first.cpu, first.prev_pid, first.next_comm, first.next_pid), (1, 0, "wrk", 11))

    def test_moves_between_cpus_are_counted_per_pid(self):
        self.assertEqual(schedtrace.migrations(self.events), {21: 1})

    def test_the_load_thread_is_the_one_that_ran_longest(self):
        self.assertEqual(schedtrace.busiest(self.events, "wrk"), 11)

    def test_ready_intervals_count_preemptions_and_wake_ups_not_sleep(self):
        self.assertEqual(schedtrace.ready_intervals(self.events, 11), [(1.00, 1.30, 1), (1.60, 1.80, 1)])

    def test_blame_charges_what_ran_on_that_cpu_meanwhile(self):
        runs = schedtrace.runs(self.events)
        got = schedtrace.blame(runs, schedtrace.ready_intervals(self.events, 11))
        self.assertAlmostEqual(got[20], 0.30)
        self.assertAlmostEqual(got[21], 0.20)
        self.assertEqual(set(got), {20, 21})

    def test_layout_shares_each_bin_by_role(self):
        runs = schedtrace.runs(self.events)
        bins = schedtrace.layout(runs, {11: "wrk", 20: "master", 21: "worker"}, 0.5, 1.0)
        self.assertEqual(len(bins), 2)
        self.assertAlmostEqual(bins[0][1]["master"], 0.6)
        self.assertAlmostEqual(bins[0][1]["wrk"], 0.4)
        self.assertAlmostEqual(bins[0][0]["worker"], 1.0)
        self.assertAlmostEqual(bins[1][0]["worker"], 0.1)
        self.assertAlmostEqual(bins[1][0]["idle"], 0.9)
        self.assertAlmostEqual(bins[1][1]["worker"], 0.5)
        self.assertAlmostEqual(bins[1][1]["idle"], 0.1)
        self.assertAlmostEqual(bins[1][1]["wrk"], 0.4)


if __name__ == "__main__":
    unittest.main()
