"""paired-rounds.py: ratios taken within each round, over the rounds two subjects share (issue 23).

Run from the repository root: python3 -m unittest discover -s Scripts/benchlib/tests
"""

import json
import random
import tempfile
import unittest
from pathlib import Path

import bench_script

paired_rounds = bench_script.load("paired-rounds.py", "paired_rounds")


def load(rps: float, p99: float, master: float = 10.0, workers: float = 20.0) -> dict:
    return {"req_per_s": rps, "latency_ms": {"p99": p99}, "master_us_per_req": master, "workers_us_per_req": workers}


def subject(*rounds: tuple[int, float, float]) -> dict:
    """Rounds as (round, keep-alive req/s, close p99)."""
    return {"rounds": [{"round": n, "keepalive": load(rps, 0.5), "close": load(1000, p99)} for n, rps, p99 in rounds]}


class PairedRoundsTests(unittest.TestCase):
    def test_the_ratio_is_taken_within_each_round(self):
        # A slow phase in round 2 halves both; the new build is 10 % faster in every round.
        new = subject((1, 110.0, 1.0), (2, 55.0, 2.0), (3, 110.0, 1.0))
        base = subject((1, 100.0, 1.0), (2, 50.0, 1.0), (3, 100.0, 2.0))
        read = paired_rounds.METRICS[0][2]
        self.assertEqual([round(x, 6) for x in paired_rounds.paired(new, base, "keepalive", read)], [1.1, 1.1, 1.1])
        close = paired_rounds.METRICS[2][2]
        self.assertEqual(paired_rounds.paired(new, base, "close", close), [1.0, 2.0, 0.5])

    def test_only_rounds_both_have_count(self):
        new = subject((1, 110.0, 1.0), (2, 120.0, 1.0))
        base = subject((2, 100.0, 1.0), (3, 100.0, 1.0))
        read = paired_rounds.METRICS[0][2]
        self.assertEqual(paired_rounds.paired(new, base, "keepalive", read), [1.2])

    def test_pairs_are_builds_and_their_c_twins(self):
        names = {"round-robin": {}, "round-robin@base": {}, "reuseport": {}, "c-rr-close": {}}
        self.assertEqual(paired_rounds.pairs_of(names), [
            ("round-robin", "round-robin@base"), ("round-robin", "c-rr-close"), ("round-robin@base", "c-rr-close")])

    def test_a_run_collects_per_placement(self):
        run = {"config": {"pinned": True}, "subjects": {
            "reuseport": subject((1, 130.0, 1.0), (2, 60.0, 1.0)),
            "reuseport@base": subject((1, 100.0, 1.0), (2, 50.0, 1.0))}}
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "run.json"
            path.write_text(json.dumps(run))
            found = paired_rounds.collect([path])
        ratios = found[("reuseport", "reuseport@base", True, "keep-alive req/s")]
        self.assertEqual([round(x, 6) for x in ratios], [1.3, 1.2])
        low, high = paired_rounds.bootstrap_median(ratios, random.Random(1))
        self.assertLessEqual(low, high)

    def test_keepalive_rounds_lines_pair_each_name_with_the_first(self):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "ka-unpinned.txt"
            path.write_text("1 old 100000 3.50ms\n1 new 110000 700.00us\n2 old 50000 1.00ms\n2 new 55000 2.00ms\n"
                            "3 new 1 1.00ms\n")
            found = paired_rounds.collect_lines(path)
        self.assertEqual([round(x, 6) for x in found[("new", "old", False, "keep-alive req/s")]], [1.1, 1.1])
        self.assertEqual([round(x, 6) for x in found[("new", "old", False, "keep-alive p99")]], [0.2, 2.0])

    def test_close_rounds_lines_name_the_close_load(self):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "close-pinned.txt"
            path.write_text("# load: close\n1 old 10000 3.00ms\n1 new 12000 1.50s\n")
            found = paired_rounds.collect_lines(path)
        self.assertEqual(sorted(found), [("new", "old", True, "close conn/s"), ("new", "old", True, "close p99")])
        self.assertEqual([round(x, 6) for x in found[("new", "old", True, "close p99")]], [500.0])


if __name__ == "__main__":
    unittest.main()
