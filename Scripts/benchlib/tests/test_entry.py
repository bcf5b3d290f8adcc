"""The measuring scripts' shared entry point (servers.run_with_cleanup), through real processes and real signals:
each way out gives its one line and exit status, and whatever the script started is gone afterwards.

Run from the repository root: python3 -m unittest discover -s Scripts/benchlib/tests
"""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SCRIPTS))

from benchlib import procfs  # noqa: E402

# A script that starts a child through the registry, prints its pid, then returns, fails or waits for a signal.
DEMO = textwrap.dedent(f"""
    import subprocess, sys, time
    sys.path.insert(0, {str(SCRIPTS)!r})
    from benchlib import BenchError, make_log, servers

    def main(registry):
        child = subprocess.Popen(["sleep", "60"])
        registry.add_proc(child)
        print(child.pid, flush=True)
        if sys.argv[1] == "error":
            raise BenchError("port 3000 is in use")
        if sys.argv[1] == "return":
            return 3
        time.sleep(60)
        return 0

    sys.exit(servers.run_with_cleanup("demo", main, make_log("demo")))
""")


class RunWithCleanup(unittest.TestCase):
    def setUp(self):
        handle, self.script = tempfile.mkstemp(suffix=".py")
        os.write(handle, DEMO.encode())
        os.close(handle)

    def tearDown(self):
        os.unlink(self.script)

    def run_demo(self, how: str, send: int | None = None) -> tuple[int, str, int]:
        """Runs the demo; with `send`, signals it once its child is up. Returns (status, stderr, the child's pid)."""
        proc = subprocess.Popen([sys.executable, self.script, how], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            child = int(proc.stdout.readline())
            if send is not None:
                time.sleep(0.2)  # inside main's sleep
                proc.send_signal(send)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.returncode, err, child

    def assertGone(self, pid: int):
        deadline = time.monotonic() + 5
        while procfs.is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertFalse(procfs.is_alive(pid), f"the script's child {pid} outlived it")

    def test_main_returns_its_status(self):
        status, err, child = self.run_demo("return")
        self.assertEqual(status, 3)
        self.assertEqual(err.strip(), "")
        self.assertGone(child)

    def test_an_error_is_one_line_and_status_1(self):
        status, err, child = self.run_demo("error")
        self.assertEqual(status, 1)
        self.assertEqual(err.strip().splitlines(), ["demo: error: port 3000 is in use"])
        self.assertGone(child)

    def test_sigterm_and_sighup_stop_it_with_128_plus_the_signal(self):
        for sig in (signal.SIGTERM, signal.SIGHUP):
            status, err, child = self.run_demo("wait", send=sig)
            self.assertEqual(status, 128 + sig)
            self.assertIn(f"demo: stopped by signal {sig.name}", err)
            self.assertGone(child)

    def test_ctrl_c_is_130(self):
        status, err, child = self.run_demo("wait", send=signal.SIGINT)
        self.assertEqual(status, 130)
        self.assertIn("demo: interrupted", err)
        self.assertGone(child)


if __name__ == "__main__":
    unittest.main()
