"""tail-rounds.py: issue 23's targets pooled round by round over many runs; here the keep-alive one (each subject's
keep-alive p99 over its C reference's in the same round, met when <= 1.5) and the close one's ratio of ratios.

Run from the repository root: python3 -m unittest discover -s Scripts/benchlib/tests
"""

import io
import json
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import bench_script

tail_rounds = bench_script.load("tail-rounds.py", "tail_rounds")


def run_file(pinned: bool, subjects: dict, base: str | None = None) -> dict:
    """subjects: name -> [(keep-alive p99, close p99), ...] by round."""
    out = {name: {"rounds": [{"round": i + 1, "keepalive": {"latency_ms": {"p99": ka}},
                              "close": {"latency_ms": {"p99": close}}}
                             for i, (ka, close) in enumerate(rounds)]}
           for name, rounds in subjects.items()}
    return {"config": {"pinned": pinned, "command": ["bench.py", "--binary", "/new"], "base_binary": base},
            "subjects": out}


def run_main(argv: list[str], runs: list[dict]) -> tuple[str, dict]:
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, run in enumerate(runs):
            path = Path(d) / f"run{i}.json"
            path.write_text(json.dumps(run))
            paths.append(str(path))
        out = Path(d) / "out.json"
        with redirect_stdout(io.StringIO()) as text, redirect_stderr(io.StringIO()):
            code = tail_rounds.main([*argv, *paths, "--json", str(out)])
        return text.getvalue(), (json.loads(out.read_text()) if code == 0 else {"code": code})


class KeepAliveTarget(unittest.TestCase):
    def test_each_round_is_ours_over_its_own_reference(self):
        run = run_file(False, {
            "round-robin": [(0.4, 3.0), (3.0, 3.0), (0.5, 3.0)],
            "c-rr-close": [(0.5, 2.0), (0.4, 2.0), (3.2, 2.0)],
            "reuseport": [(2.0, 2.0), (2.0, 2.0)],
            "c-reuseport": [(1.0, 2.0), (4.0, 2.0)]})
        series = tail_rounds.keepalive_series_of(run, "run.json")
        self.assertEqual(len(series), 1)  # no @base subjects: one series
        rr = series[0]["subjects"]["round-robin"]
        self.assertEqual(rr["reference"], "c-rr-close")
        self.assertEqual([round(r["ratio"], 3) for r in rr["rounds"]], [0.8, 7.5, round(0.5 / 3.2, 3)])
        self.assertAlmostEqual(rr["run_ratio"], 0.5 / 0.5)  # medians 0.5 / 0.5
        rp = series[0]["subjects"]["reuseport"]
        self.assertEqual([r["ratio"] for r in rp["rounds"]], [2.0, 0.5])

    def test_pooled_rounds_met_interval_and_slow_mode(self):
        runs = [
            run_file(False, {"round-robin": [(2.2, 1.0), (3.0, 1.0)], "c-rr-close": [(0.5, 1.0), (0.4, 1.0)]}),
            run_file(False, {"round-robin": [(0.5, 1.0), (3.5, 1.0)], "c-rr-close": [(3.0, 1.0), (2.6, 1.0)]}),
            run_file(True, {"round-robin": [(0.3, 1.0)], "c-rr-close": [(0.3, 1.0)]}),
        ]
        text, out = run_main(["--load", "keepalive"], runs)
        by_group = {(s["group"], s["subject"]): s for s in out["summaries"]}
        unpinned = by_group[("new, unpinned", "round-robin")]
        # Ratios 4.4, 7.5, 1/6 and 3.5/2.6 (1.35, within 1.5 but above 1): two of four met.
        self.assertEqual((unpinned["runs"], unpinned["rounds"], unpinned["rounds_met"]), (2, 4, 2))
        self.assertAlmostEqual(unpinned["median_ratio"], (4.4 + 3.5 / 2.6) / 2)
        low, high = unpinned["median_ratio_95"]
        self.assertLessEqual(low, unpinned["median_ratio"])
        self.assertGreaterEqual(high, unpinned["median_ratio"])
        # Runs, ratio of medians: 2.6 / 0.45 (not met) and 2.0 / 2.8 (met).
        self.assertEqual(unpinned["runs_met"], 1)
        self.assertAlmostEqual(unpinned["median_run_ratio"], (2.6 / 0.45 + 2.0 / 2.8) / 2)
        # p99 above 2 ms: ours in three rounds, C in two.
        self.assertEqual((unpinned["ours_slow"], unpinned["c_slow"]), (3, 2))
        self.assertEqual(by_group[("new, pinned", "round-robin")]["rounds"], 1)  # pinned apart
        self.assertIn("| new, unpinned | round-robin | 2 | 4 | 2 |", text)

    def test_base_subjects_are_a_series_of_their_own_against_the_same_reference(self):
        run = run_file(True, {"round-robin": [(0.4, 1.0)], "round-robin@base": [(4.0, 1.0)],
                              "c-rr-close": [(0.5, 1.0)]}, base="/old")
        series = {s["series"]: s for s in tail_rounds.keepalive_series_of(run, "run.json")}
        self.assertEqual(series["base"]["build"], "/old")
        self.assertAlmostEqual(series["base"]["subjects"]["round-robin"]["rounds"][0]["ratio"], 8.0)
        self.assertAlmostEqual(series["new"]["subjects"]["round-robin"]["rounds"][0]["ratio"], 0.8)

    def test_no_pair_in_any_run_is_an_error(self):
        _, out = run_main(["--load", "keepalive"], [run_file(False, {"round-robin": [(0.4, 1.0)]})])
        self.assertEqual(out, {"code": 1})


class CloseTarget(unittest.TestCase):
    def test_q_is_our_ratio_over_the_c_pairs_in_the_same_round(self):
        run = run_file(False, {"round-robin": [(1.0, 4.0)], "reuseport": [(1.0, 2.0)],
                               "c-rr-close": [(1.0, 3.0)], "c-reuseport": [(1.0, 2.0)]})
        _, out = run_main([], [run])
        (series,) = out["series"]
        self.assertAlmostEqual(series["rounds"][0]["q"], (4.0 / 2.0) / (3.0 / 2.0))
        self.assertEqual(out["summaries"][0]["rounds_met"], 0)

    def test_close_rounds_output_counts_as_a_run_placed_by_its_name(self):
        lines = ("# load: close\n"
                 "1 round-robin 14000 4.00ms\n1 reuseport 14000 2.00ms\n1 c-rr-close 14000 3.00ms\n"
                 "1 c-reuseport 14000 2.00ms\n2 round-robin 14000 1.50ms\n2 reuseport 14000 2.00ms\n"
                 "2 c-rr-close 14000 2.00ms\n2 c-reuseport 14000 2.00ms\n3 round-robin 14000 1.00ms\n")
        with tempfile.TemporaryDirectory() as d:
            pinned, other = Path(d) / "close-pinned.txt", Path(d) / "keepalive-unpinned.txt"
            pinned.write_text(lines)
            other.write_text("# load: keepalive\n1 round-robin 90000 700.00us\n")
            out = Path(d) / "out.json"
            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as errors:
                code = tail_rounds.main([str(pinned), str(other), "--json", str(out)])
            found = json.loads(out.read_text())
        self.assertEqual(code, 0)
        self.assertIn("skipping", errors.getvalue())  # the keep-alive file has no close ratio
        (series,) = found["series"]
        self.assertTrue(series["pinned"])
        # Round 3 lacks the other three subjects.
        self.assertEqual([round(r["q"], 6) for r in series["rounds"]], [round((4 / 2) / (3 / 2), 6), 0.75])
        self.assertEqual(found["summaries"][0]["group"], "pinned")
        self.assertEqual(found["summaries"][0]["rounds_met"], 1)


if __name__ == "__main__":
    unittest.main()
