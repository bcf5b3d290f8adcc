"""wrk-wait.py: each round's p99 beside wrk's own wait for a CPU (issue 23).

Run from the repository root: python3 -m unittest discover -s Scripts/benchlib/tests
"""

import io
import json
import tempfile
import unittest
from contextlib import redirect_stdout
from pathlib import Path

import bench_script

wrk_wait = bench_script.load("wrk-wait.py", "wrk_wait")


def run_file(pinned: bool, subjects: dict) -> dict:
    """subjects: name -> [(keep-alive wait, keep-alive p99), ...] by round; the close load has no wait recorded."""
    out = {}
    for name, rounds in subjects.items():
        out[name] = {"rounds": [
            {"round": i + 1,
             "keepalive": {"wrk_waited_ms_per_s": w, "latency_ms": {"p99": p}},
             "close": {"wrk_waited_ms_per_s": None, "latency_ms": {"p99": 1.0}}}
            for i, (w, p) in enumerate(rounds)]}
    return {"config": {"pinned": pinned}, "subjects": out}


class WrkWaitTests(unittest.TestCase):
    def test_rounds_pair_wait_and_p99_per_load(self):
        data = run_file(False, {"a": [(5.0, 0.7), (30.0, 1.9)], "b": [(1.0, 0.5)]})
        got = wrk_wait.rounds_of(data)
        self.assertEqual(got[("keepalive", False, "a")], [(5.0, 0.7), (30.0, 1.9)])
        self.assertNotIn(("close", False, "a"), got)  # no wait recorded: left out

    def test_split_at_the_median_wait(self):
        # Ordered by wait, not by p99: the round with the most wait has the lowest p99 here.
        pairs = [(40.0, 0.6), (1.0, 1.0), (2.0, 2.0), (30.0, 3.0), (10.0, 9.0)]
        self.assertEqual(wrk_wait.split_medians(pairs), (1.5, 1.8))
        self.assertEqual(wrk_wait.split_medians([(1.0, 1.0)]), (None, None))

    def test_the_table_pools_subjects_of_one_load_and_placement(self):
        a = [(5.0, 0.7), (10.0, 0.9), (30.0, 1.9), (40.0, 2.5)]
        b = [(2.0, 0.6), (15.0, 1.2), (20.0, 1.5), (50.0, 3.0)]
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "run.json"
            path.write_text(json.dumps(run_file(False, {"a": a, "b": b})))
            out = Path(d) / "rows.json"
            with redirect_stdout(io.StringIO()) as text:
                self.assertEqual(wrk_wait.main([str(path), "--json", str(out)]), 0)
            rows = json.loads(out.read_text())
        self.assertEqual([(r["subject"], r["rounds"], r["pooled_rounds"]) for r in rows], [("a", 4, 8), ("b", 4, 8)])
        self.assertAlmostEqual(rows[0]["spearman_subject"], 1.0)
        self.assertAlmostEqual(rows[0]["spearman_pooled"], 1.0)
        self.assertEqual((rows[0]["p99_least_wait_ms"], rows[0]["p99_most_wait_ms"]), (0.8, 2.2))
        self.assertIn("| keepalive | unpinned | a | 4 |", text.getvalue())

    def test_the_workers_figure_is_the_share_of_samples_in_percent(self):
        # The same rounds carry both figures; they order the rounds differently, so the table shows which one it read.
        data = run_file(False, {"a": [(5.0, 0.7), (30.0, 1.9), (10.0, 2.5)]})
        for r, share in zip(data["subjects"]["a"]["rounds"], (0.02, 0.05, 0.15)):
            r["keepalive"]["workers_on_wrk_cpu"] = share
        got = wrk_wait.rounds_of(data, "workers")
        self.assertEqual([(round(f, 6), p) for f, p in got[("keepalive", False, "a")]],
                         [(2.0, 0.7), (5.0, 1.9), (15.0, 2.5)])
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "run.json"
            path.write_text(json.dumps(data))
            out = Path(d) / "rows.json"
            with redirect_stdout(io.StringIO()) as text:
                self.assertEqual(wrk_wait.main([str(path), "--figure", "workers", "--json", str(out)]), 0)
            row = json.loads(out.read_text())[0]
        self.assertAlmostEqual(row["spearman_subject"], 1.0)  # by wait it would be 0.5
        self.assertAlmostEqual(row["median_workers_on_wrk_cpu_pct"], 5.0)
        self.assertEqual((row["p99_lower_half_ms"], row["p99_upper_half_ms"]), (0.7, 2.5))
        self.assertIn("a worker on wrk's CPU, % of samples", text.getvalue())
        self.assertIn("5.0 (2.0–15.0)", text.getvalue())


if __name__ == "__main__":
    unittest.main()
