"""The parsers of benchlib: wrk's and h2load's output (samples/ holds what wrk 4.1.0 and h2load printed here, on
127.0.0.1), /proc text, the ready line.

Run from the repository root: python3 -m unittest discover -s Scripts/benchlib/tests
"""

import os
import subprocess
import sys
import threading
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # Scripts/

from benchlib import BenchError, loadgen, procfs, servers  # noqa: E402

SAMPLES = Path(__file__).resolve().parent / "samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


class WrkLatencyText(unittest.TestCase):
    """wrk --latency's own report, as tls.py reads it."""

    def test_keepalive_report(self):
        r = loadgen.parse_wrk_text(sample("wrk-keepalive.txt"))
        self.assertEqual(r["requests"], 777)  # "777 requests in 1.00s"
        self.assertEqual(r["duration_s"], 1.0)
        self.assertEqual(r["req_per_s"], 777.0)
        self.assertAlmostEqual(r["mean_ms"], 7.90)  # "Latency     7.90ms   10.87ms  71.37ms"
        self.assertAlmostEqual(r["max_ms"], 71.37)
        self.assertAlmostEqual(r["p50_ms"], 4.70)  # "50%    4.70ms"
        self.assertAlmostEqual(r["p99_ms"], 60.96)  # "99%   60.96ms", not the 90% line
        self.assertEqual(r["errors"], {"non2xx": 0})
        self.assertEqual(r["error_total"], 0)

    def test_socket_errors(self):
        r = loadgen.parse_wrk_text(sample("wrk-tls-close.txt"))
        self.assertEqual(r["requests"], 300)
        self.assertAlmostEqual(r["req_per_s"], 300 / 1.02)  # "300 requests in 1.02s"
        self.assertEqual(r["errors"], {"connect": 0, "read": 300, "write": 0, "timeout": 0, "non2xx": 0})
        self.assertEqual(r["error_total"], 300)
        self.assertAlmostEqual(r["p99_ms"], 72.29)
        self.assertAlmostEqual(r["max_ms"], 108.73)

    def test_non2xx_responses(self):
        r = loadgen.parse_wrk_text(sample("wrk-non2xx.txt"))
        self.assertEqual(r["requests"], 955)
        self.assertEqual(r["errors"], {"non2xx": 955})
        self.assertEqual(r["error_total"], 955)
        self.assertEqual(loadgen.parse_non2xx(sample("wrk-non2xx.txt")), 955)
        self.assertEqual(loadgen.parse_non2xx(sample("wrk-keepalive.txt")), 0)

    def test_microsecond_latencies(self):
        r = loadgen.parse_wrk_text(sample("wrk-count-lua.txt"))
        self.assertAlmostEqual(r["mean_ms"], 0.5954)  # "595.40us"
        self.assertAlmostEqual(r["p50_ms"], 0.119)  # "119.00us"
        self.assertAlmostEqual(r["max_ms"], 15.80)

    def test_no_result_is_an_error(self):
        with self.assertRaises(BenchError):
            loadgen.parse_wrk_text("unable to connect to 127.0.0.1:1 Connection refused\n")

    def test_durations(self):
        self.assertAlmostEqual(loadgen.to_ms("812.00us"), 0.812)
        self.assertEqual(loadgen.to_ms("1.25ms"), 1.25)
        self.assertEqual(loadgen.to_ms("2.00s"), 2000.0)
        self.assertEqual(loadgen.to_ms("1.50m"), 90000.0)
        with self.assertRaises(BenchError):
            loadgen.to_ms("5h")


class WrkCountLua(unittest.TestCase):
    """count.lua's result line, as bench.py and the fault suite read it."""

    def test_marker_line(self):
        r = loadgen.parse_marker(sample("wrk-count-lua.txt"))
        self.assertEqual(r["requests"], 24748)
        self.assertEqual(r["duration_us"], 1010711)
        self.assertEqual(r["errors"], {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0})
        self.assertEqual(r["latency_us"]["percentiles"]["99"], 8838)
        self.assertEqual(r["latency_us"]["percentiles"]["99.9"], 14757)
        self.assertEqual(r["per_pid"], {"15860": 12639, "15859": 12109})
        self.assertEqual(sum(r["per_pid"].values()), r["requests"])

    def test_no_marker(self):
        self.assertIsNone(loadgen.parse_marker(sample("wrk-keepalive.txt")))

    def test_command_lines(self):
        url = "http://127.0.0.1:8080/"
        self.assertEqual(loadgen.wrk_command("wrk", url, 5, 50, close=True),
                         ["wrk", "-t", "1", "-c", "50", "-d", "5s", "--latency", "-s", str(loadgen.LUA_SCRIPT),
                          "-H", "Connection: close", url])
        self.assertEqual(loadgen.wrk_command("wrk", url, 1, 20, close=False, script=False, timeout_s=5,
                                             prefix=["taskset", "-c", "1"]),
                         ["taskset", "-c", "1", "wrk", "-t", "1", "-c", "20", "-d", "1s", "--latency",
                          "--timeout", "5s", url])
        self.assertTrue(loadgen.LUA_SCRIPT.is_file())


class H2load(unittest.TestCase):
    def test_h2_report(self):
        r = loadgen.parse_h2load(sample("h2load-h2.txt"))
        self.assertEqual(r["requests"], 1399)  # succeeded
        self.assertEqual(r["requests_started"], 1439)
        self.assertEqual(r["duration_s"], 1.0)  # "finished in 1.00s"
        self.assertEqual(r["req_per_s"], 1399.0)
        self.assertEqual(r["h2load_req_per_s"], 1399.0)
        self.assertEqual(r["status_2xx"], 1399)
        self.assertEqual(r["protocol"], "h2")
        self.assertAlmostEqual(r["mean_ms"], 27.85)  # "time for request: 8.54ms 73.66ms 27.85ms": min max mean
        self.assertAlmostEqual(r["max_ms"], 73.66)
        self.assertIsNone(r["p99_ms"])
        self.assertEqual(r["errors"], {"failed": 0, "errored": 0, "timeout": 0, "non2xx": 0})
        self.assertEqual(r["error_total"], 0)

    def test_failures_count(self):
        text = sample("h2load-h2.txt").replace("1399 succeeded, 0 failed, 0 errored, 0 timeout",
                                               "1390 succeeded, 4 failed, 3 errored, 2 timeout")
        text = text.replace("1399 2xx, 0 3xx, 0 4xx, 0 5xx", "1390 2xx, 0 3xx, 1 4xx, 5 5xx")
        r = loadgen.parse_h2load(text)
        self.assertEqual(r["requests"], 1390)
        self.assertEqual(r["errors"], {"failed": 4, "errored": 3, "timeout": 2, "non2xx": 6})
        self.assertEqual(r["error_total"], 15)

    def test_no_result_is_an_error(self):
        with self.assertRaises(BenchError):
            loadgen.parse_h2load("starting benchmark...\nNo protocol negotiated. Aborted.\n")

    def test_command_warms_up_within_its_own_run(self):
        # Without a warm-up, a connection made after -D ended keeps h2load running for good (see h2load_command).
        cmd = loadgen.h2load_command("https://127.0.0.1:1/", 8, 32, 10, warm_up=2)
        self.assertEqual(cmd, ["h2load", "-c", "32", "-m", "10", "-D", "8", "--warm-up-time=2", "https://127.0.0.1:1/"])
        self.assertNotIn("--warm-up-time=0", loadgen.h2load_command("https://127.0.0.1:1/", 8, 32, 10))


class Procfs(unittest.TestCase):
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    # priority nice threads itrealvalue starttime vsize rss
    STAT = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 2 0 250 75 3 4 20 0 3 0 98765 10000 200\n"

    def test_stat_fields_after_a_comm_with_spaces_and_parentheses(self):
        st = procfs.parse_stat(self.STAT)
        self.assertEqual(st[0], "S")  # field 3
        self.assertEqual(st[1], "1")  # field 4, ppid
        self.assertEqual(st[2], "1234")  # field 5, pgrp
        self.assertEqual(procfs.stat_cpu_ticks(st), 325)  # utime 250 + stime 75 (not cutime/cstime)
        self.assertEqual(procfs.stat_start_time(st), 98765)  # field 22
        self.assertTrue(procfs.stat_alive(st))

    def test_the_cpu_a_task_last_ran_on(self):
        # A whole line as Linux 6.18 writes it (52 fields); field 39, processor, is 7 here, with a comm that holds
        # spaces and a parenthesis, and exit_signal (field 38) 17 beside it.
        line = ("5402 (a (b) c) R 5398 5398 31006 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 4545470 3133440 350 "
                "18446744073709551615 94188166029312 94188166049193 140734850925648 0 0 0 0 0 0 0 0 0 17 7 0 0 0 0 0 "
                "94188166065200 94188166066816 94188196347904 140734850931407 140734850931427 140734850931427 "
                "140734850932715 0\n")
        self.assertEqual(procfs.stat_last_cpu(procfs.parse_stat(line)), 7)
        self.assertIn(procfs.last_cpu(os.getpid()), os.sched_getaffinity(0))
        self.assertIn(procfs.last_cpu(os.getpid(), threading.get_native_id()), os.sched_getaffinity(0))

    def test_zombies_and_gone_processes_are_not_alive(self):
        self.assertFalse(procfs.stat_alive(procfs.parse_stat(self.STAT.replace(") S ", ") Z "))))
        self.assertFalse(procfs.stat_alive(None))
        self.assertIsNone(procfs.parse_stat("garbage"))

    def test_this_process(self):
        st = procfs.read_stat(os.getpid())
        self.assertEqual(int(st[1]), os.getppid())
        self.assertTrue(procfs.is_alive(os.getpid()))
        self.assertGreaterEqual(procfs.cpu_ticks(os.getpid()), 0)
        self.assertGreater(procfs.status_kb(os.getpid()), 0)

    def test_status(self):
        text = ("Name:\tswitchboard\nState:\tS (sleeping)\nThreads:\t3\nVmRSS:\t    9876 kB\n"
                "Cpus_allowed_list:\t0-1\n")
        self.assertEqual(procfs.parse_status_kb(text), 9876)
        self.assertEqual(procfs.parse_status_field(text, "Threads"), "3")
        self.assertEqual(procfs.parse_status_field(text, "Cpus_allowed_list"), "0-1")
        self.assertIsNone(procfs.parse_status_kb(text, "VmSwap"))
        self.assertEqual(procfs.parse_status_kb("MemTotal:       24632428 kB\n", "MemTotal"), 24632428)

    def test_scheduling(self):
        self.assertEqual(procfs.parse_schedstat("2500000 730000 41\n"),
                         {"run_ns": 2500000, "wait_ns": 730000, "slices": 41})
        self.assertIsNone(procfs.parse_schedstat("gone"))
        status = "Name:\tx\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n"
        self.assertEqual(procfs.parse_context_switches(status), {"voluntary": 120, "involuntary": 7})
        self.assertEqual(procfs.parse_context_switches("Name:\tx\n"), {})
        mine = procfs.scheduling(os.getpid())
        self.assertGreater(mine["run_ns"], 0)
        self.assertIn("voluntary", mine)
        # utime and stime, read from /proc/<pid>/stat: together no more than the CPU time read after them.
        self.assertGreaterEqual(mine["user_ticks"], 0)
        self.assertGreaterEqual(mine["system_ticks"], 0)
        self.assertLessEqual(mine["user_ticks"] + mine["system_ticks"], procfs.cpu_ticks(os.getpid()))

    def test_thread_schedstats(self):
        # Every thread of this process, each with its own figures; a process that is gone has none.
        mine = procfs.thread_schedstats(os.getpid())
        self.assertIn(threading.get_native_id(), mine)
        self.assertEqual(set(mine), {int(t) for t in os.listdir(f"/proc/{os.getpid()}/task")})
        self.assertGreater(mine[threading.get_native_id()]["run_ns"], 0)
        self.assertEqual(procfs.thread_schedstats(2 ** 22 + 1), {})

    def test_nofile_limit(self):
        text = ("Limit                     Soft Limit           Hard Limit           Units     \n"
                "Max cpu time              unlimited            unlimited            seconds   \n"
                "Max open files            256                  4096                 files     \n")
        self.assertEqual(procfs.parse_nofile_limit(text), "256/4096")
        self.assertIsNone(procfs.parse_nofile_limit("Limit Soft Hard\n"))

    def test_cpu_lists(self):
        self.assertEqual(procfs.parse_cpu_list("0"), {0})
        self.assertEqual(procfs.parse_cpu_list("0-3"), {0, 1, 2, 3})
        self.assertEqual(procfs.parse_cpu_list("0, 2-3"), {0, 2, 3})
        for bad in ("3-1", "0,,1", "x"):
            with self.assertRaises(ValueError):
                procfs.parse_cpu_list(bad)

    def test_cpu_model(self):
        self.assertEqual(procfs.parse_cpu_model("processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                                                "model name\t: AMD EPYC 7B13\n"), "AMD EPYC 7B13")
        self.assertEqual(procfs.parse_cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\nHardware\t: BCM2835\n"),
                         "BCM2835")
        self.assertEqual(procfs.parse_cpu_model("Processor\t: ARMv7 Processor rev 4 (v7l)\n"),
                         "ARMv7 Processor rev 4 (v7l)")
        self.assertIsNone(procfs.parse_cpu_model("processor\t: 0\n"))


class ReadyLine(unittest.TestCase):
    def test_ready_line(self):
        self.assertEqual(servers.parse_ready_line("listening on 127.0.0.1:8080 with 2 workers (round-robin)  "),
                         {"host": "127.0.0.1", "port": 8080, "workers": 2, "mode": "round-robin"})
        self.assertEqual(servers.parse_ready_line("listening on 127.0.0.1:4 with 16 workers (c-rr-close)")["mode"],
                         "c-rr-close")

    def test_other_lines(self):
        self.assertIsNone(servers.parse_ready_line("2026-12-02 info switchboard: worker forked"))
        self.assertIsNone(servers.parse_ready_line("listening on 127.0.0.1:8080 with two workers (round-robin)"))


class GeneratorWaiting(unittest.TestCase):
    """How long a load generator's threads waited for a CPU (loadgen.waiting_rate, SchedSampler)."""

    def test_rate_from_first_and_last_samples(self):
        first = {10: (100.0, {"run_ns": 0, "wait_ns": 1_000_000, "slices": 5}),
                 11: (100.0, {"run_ns": 0, "wait_ns": 0, "slices": 0})}
        last = {10: (102.0, {"run_ns": 0, "wait_ns": 61_000_000, "slices": 405}),
                11: (101.5, {"run_ns": 0, "wait_ns": 2_000_000, "slices": 3}),
                12: (102.0, {"run_ns": 0, "wait_ns": 9_000_000, "slices": 9})}  # no first sample: left out
        r = loadgen.waiting_rate(first, last)
        self.assertAlmostEqual(r["waited_ms_per_s"], (60 + 2) / 2.0)
        self.assertAlmostEqual(r["slices_per_s"], (400 + 3) / 2.0)
        self.assertAlmostEqual(r["window_s"], 2.0)
        self.assertIsNone(loadgen.waiting_rate(first, first))
        self.assertIsNone(loadgen.waiting_rate({}, last))

    def test_placement_counts_samples_with_a_role_on_the_same_cpu(self):
        count = loadgen.PlacementCount()
        self.assertIsNone(count.shares())
        count.add(0, {"workers": [1, 0], "master": [1]})
        count.add(1, {"workers": [1, 0], "master": [0]})
        count.add(1, {"workers": [0, 0], "master": [0]})
        count.add(0, {"workers": [None, 1], "master": [None]})  # a gone process is on no CPU
        self.assertEqual(count.samples, 4)
        self.assertEqual(count.shares(), {"workers": 0.5, "master": 0.0})

    def test_sampler_sees_which_companion_shares_the_sampled_threads_cpu(self):
        # Like wrk, the sampled process has a main thread that sleeps (on one CPU) and a thread that works (on the
        # other). One companion spins on the working thread's CPU, one on the sleeping thread's: the first is found
        # there in (nearly) every sample, the second in (nearly) none. Sampling starts once the working thread has
        # run longer than the main thread did while starting up, so that it is the busiest from the first sample.
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            self.skipTest("needs two CPUs")
        work, sleep = cpus[0], cpus[1]
        spin = [sys.executable, "-c", "import time\nend = time.monotonic() + 1.6\nwhile time.monotonic() < end: pass"]
        two_threads = (
            "import os, threading, time\n"
            f"os.sched_setaffinity(0, {{{sleep}}})\n"
            "def work():\n"
            f"    os.sched_setaffinity(0, {{{work}}})\n"
            "    start = time.monotonic()\n"
            "    told = False\n"
            "    while time.monotonic() < start + 1.4:\n"
            "        if not told and time.monotonic() > start + 0.2:\n"
            "            print('working', flush=True)\n"
            "            told = True\n"
            "t = threading.Thread(target=work)\nt.start()\nt.join()\n")
        sampled = subprocess.Popen([sys.executable, "-c", two_threads], stdout=subprocess.PIPE, text=True)
        same = subprocess.Popen(["taskset", "-c", str(work)] + spin)
        other = subprocess.Popen(["taskset", "-c", str(sleep)] + spin)
        try:
            self.assertEqual(sampled.stdout.readline().strip(), "working")
            sampler = loadgen.SchedSampler(sampled.pid, interval=0.02,
                                           companions={"same": [same.pid], "other": [other.pid], "none": []}).start()
            sampled.wait(timeout=30)
            r = sampler.stop()
        finally:
            for p in (sampled, same, other):
                if p.poll() is None:
                    p.kill()
                p.wait()
            sampled.stdout.close()
        self.assertIsNotNone(r)
        self.assertGreater(r["placement_samples"], 20)
        self.assertGreater(r["on_its_cpu"]["same"], 0.9)
        self.assertLess(r["on_its_cpu"]["other"], 0.1)
        self.assertNotIn("none", r["on_its_cpu"])  # a role without pids is not sampled

    def test_sampler_sees_a_process_that_waits_for_a_cpu(self):
        # Two busy processes on one CPU: each waits for it about half the time, so the sampled one waits hundreds
        # of ms a second; alone on its CPU it would wait next to nothing.
        cpu = str(sorted(os.sched_getaffinity(0))[0])
        spin = [sys.executable, "-c", "import time\nend = time.monotonic() + 1.2\nwhile time.monotonic() < end: pass"]
        other = subprocess.Popen(["taskset", "-c", cpu] + spin)
        sampled = subprocess.Popen(["taskset", "-c", cpu] + spin)
        try:
            sampler = loadgen.SchedSampler(sampled.pid, interval=0.02).start()
            sampled.wait(timeout=30)
            r = sampler.stop()
        finally:
            for p in (other, sampled):
                if p.poll() is None:
                    p.kill()
                p.wait()
        self.assertIsNotNone(r)
        self.assertGreater(r["window_s"], 0.5)
        self.assertGreater(r["waited_ms_per_s"], 200)
        self.assertLess(r["waited_ms_per_s"], 1000)


if __name__ == "__main__":
    unittest.main()


class PerfStatSyscalls(unittest.TestCase):
    """`perf stat -x ,` on the syscall tracepoints, as tail-evidence.py --syscalls reads it."""

    def test_counts_by_call(self):
        from benchlib import syscounts
        text = ("# started on Sat Dec  5 14:20:01 2026\n\n"
                "129817,,syscalls:sys_enter_accept4,4000123456,100.00,,\n"
                "61234,,syscalls:sys_enter_sendmsg,4000123456,100.00,,\n"
                "0,,syscalls:sys_enter_setsockopt,4000123456,100.00,,\n"
                "<not counted>,,syscalls:sys_enter_ioctl,0,0.00,,\n")
        self.assertEqual(syscounts.parse(text), {"accept4": 129817, "sendmsg": 61234, "setsockopt": 0})

    def test_command_names_each_tracepoint(self):
        from benchlib import syscounts
        cmd = syscounts.perf_command(42, "/tmp/out.csv", ("read", "close"))
        self.assertEqual(cmd[:8], ["perf", "stat", "-x", ",", "-o", "/tmp/out.csv", "-p", "42"])
        self.assertEqual(cmd[8:], ["-e", "syscalls:sys_enter_read", "-e", "syscalls:sys_enter_close"])

    def test_probed_functions_are_counted_by_name(self):
        from benchlib import syscounts
        cmd = syscounts.perf_command(42, "/tmp/out.csv", ("read",), ("swift_beginAccess",))
        self.assertEqual(cmd[8:], ["-e", "syscalls:sys_enter_read", "-e", "switchboard:swift_beginAccess"])
        text = ("7,,syscalls:sys_enter_read,4000123456,100.00,,\n"
                "12345,,switchboard:swift_beginAccess,4000123456,100.00,,\n"
                "<not counted>,,switchboard:swift_getGenericMetadata,0,0.00,,\n")
        self.assertEqual(syscounts.parse(text), {"read": 7, "swift_beginAccess": 12345})

    def test_runtime_library_is_libswiftcore_or_the_binary(self):
        from benchlib import syscounts
        ldd = ("\tlinux-vdso.so.1 (0x00007ffd)\n"
               "\tlibswiftCore.so => /opt/swift/usr/lib/swift/linux/libswiftCore.so (0x00007fb8c9c00000)\n"
               "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fb8c9a00000)\n")
        self.assertEqual(syscounts.runtime_library(ldd, "/bin/sb"), "/opt/swift/usr/lib/swift/linux/libswiftCore.so")
        self.assertEqual(syscounts.runtime_library("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n", "/bin/sb"), "/bin/sb")
        add = syscounts.probe_add_commands("/lib/libswiftCore.so", ("swift_beginAccess",))
        self.assertEqual(add, [["perf", "probe", "-q", "-x", "/lib/libswiftCore.so", "-a",
                                "switchboard:swift_beginAccess=swift_beginAccess"]])
