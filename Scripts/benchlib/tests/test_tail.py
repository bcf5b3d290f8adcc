"""The tail in bench.py's figures: p99.9 from count.lua's result line, beside p99 in the key figures, the results
table, the ratios of one run and the table against the C references (issue 23).

Run from the repository root: python3 -m unittest discover -s Scripts/benchlib/tests
"""

import copy
import re
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # Scripts/
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # Scripts/bench/, for bench.py

import bench  # noqa: E402
from benchlib import BenchError, loadgen  # noqa: E402

SAMPLES = Path(__file__).resolve().parent / "samples"
MARKER = loadgen.parse_marker((SAMPLES / "wrk-count-lua.txt").read_text())
WORKERS = [15860, 15859]  # the pids of the sample's per_pid


def marker(p99_us: int, p999_us: int) -> dict:
    """The sample's result line with other p99 and p99.9."""
    m = copy.deepcopy(MARKER)
    m["latency_us"]["percentiles"].update({"99": p99_us, "99.9": p999_us})
    return m


def one_round(ka: tuple[int, int], close: tuple[int, int]) -> dict:
    """A round of bench.measure's shape whose keep-alive and close loads had these (p99, p99.9) in µs."""
    loads = {load: bench.summarize_load(marker(*pct), MARKER, WORKERS, 100, 200)
             for load, pct in (("keepalive", ka), ("close", close))}
    return {"round": 1, "worker_pids": WORKERS, "alive_after_loads": True, **loads}


def subjects(**rounds: list[dict]) -> dict:
    subs = {name.replace("_", "-"): {"rounds": rs} for name, rs in rounds.items()}
    bench.summarize_subjects(subs)
    return subs


class LatencyFromCountLua(unittest.TestCase):
    def test_p99_9_is_parsed_beside_p99(self):
        lat = loadgen.latency_ms(MARKER)
        self.assertAlmostEqual(lat["p99"], 8.838)  # "99":8838 µs
        self.assertAlmostEqual(lat["p99.9"], 14.757)  # "99.9":14757 µs
        self.assertAlmostEqual(lat["p50"], 0.119)
        self.assertAlmostEqual(lat["max"], 15.798)
        self.assertAlmostEqual(lat["mean"], 0.5954)

    def test_a_result_line_without_p99_9_is_an_error(self):
        m = copy.deepcopy(MARKER)
        del m["latency_us"]["percentiles"]["99.9"]
        with self.assertRaisesRegex(BenchError, r"no latency percentile 99\.9"):
            loadgen.latency_ms(m)

    def test_count_lua_prints_every_percentile_read(self):
        lua = loadgen.LUA_SCRIPT.read_text()
        listed = re.search(r"for _, p in ipairs\(\{([^}]*)\}\) do\s+table\.insert\(pct,", lua)
        self.assertIsNotNone(listed)
        self.assertEqual(tuple(x.strip() for x in listed.group(1).split(",")), loadgen.MARKER_PERCENTILES)


class TailInTheFigures(unittest.TestCase):
    def test_key_figures_hold_p99_9_of_both_loads(self):
        kf = bench.key_figures(one_round(ka=(2000, 5000), close=(3000, 9000)))
        self.assertAlmostEqual(kf["keepalive_p99_ms"], 2.0)
        self.assertAlmostEqual(kf["keepalive_p99_9_ms"], 5.0)
        self.assertAlmostEqual(kf["close_p99_ms"], 3.0)
        self.assertAlmostEqual(kf["close_p99_9_ms"], 9.0)

    def test_medians_and_spreads_over_rounds(self):
        subs = subjects(round_robin=[one_round((2000, 5000), (3000, 9000)), one_round((2000, 7000), (3000, 8000)),
                                     one_round((2000, 6000), (3000, 12000))])
        s = subs["round-robin"]
        self.assertAlmostEqual(s["median"]["keepalive_p99_9_ms"], 6.0)
        self.assertEqual(s["spread"]["keepalive_p99_9_ms"], [5.0, 7.0])
        self.assertAlmostEqual(s["median"]["close_p99_9_ms"], 9.0)

    def test_results_table_has_p99_9_beside_p99(self):
        table = bench.results_table(subjects(round_robin=[one_round((2000, 5000), (3000, 9000))]), 1)
        head, _, row = table.splitlines()
        cells = [c.strip() for c in head.strip("|").split("|")]
        values = dict(zip(cells, (c.strip() for c in row.strip("|").split("|"))))
        self.assertEqual(cells.index("ka p99.9 ms"), cells.index("ka p99 ms") + 1)
        self.assertEqual(cells.index("close p99.9 ms"), cells.index("close p99 ms") + 1)
        self.assertEqual(values["ka p99 ms"], "2.00")
        self.assertEqual(values["ka p99.9 ms"], "5.00")
        self.assertEqual(values["close p99.9 ms"], "9.00")


class TailRatios(unittest.TestCase):
    def setUp(self):
        self.subs = subjects(
            round_robin=[one_round((2000, 6000), (3000, 12000)), one_round((2000, 10000), (3000, 8000))],
            reuseport=[one_round((1000, 2000), (3000, 4000)), one_round((1000, 4000), (3000, 4000))],
            c_rr_close=[one_round((1000, 1000), (1500, 3000)), one_round((1000, 1000), (1500, 3000))],
            c_reuseport=[one_round((1000, 1000), (1500, 2000)), one_round((1000, 1000), (1500, 2000))])

    def test_ratios_of_medians_of_p99_9(self):
        rows = {r["name"]: r for r in bench.compute_ratios(self.subs)}
        r = rows["round-robin/reuseport"]
        self.assertAlmostEqual(r["keepalive_p99_ms"], 2.0)
        self.assertAlmostEqual(r["keepalive_p99_9_ms"], 8.0 / 3.0)  # medians 8 ms / 3 ms
        self.assertAlmostEqual(r["close_p99_ms"], 1.0)
        self.assertAlmostEqual(r["close_p99_9_ms"], 2.5)  # medians 10 ms / 4 ms
        self.assertAlmostEqual(rows["round-robin/c-rr-close"]["keepalive_p99_9_ms"], 8.0)

    def test_ratio_table_shows_p99_9(self):
        table = bench.ratio_table(bench.compute_ratios(self.subs))
        head = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
        self.assertEqual(head.index("keep-alive p99.9"), head.index("keep-alive p99") + 1)
        self.assertEqual(head.index("close p99.9"), head.index("close p99") + 1)
        row = next(line for line in table.splitlines() if line.startswith("| round-robin/reuseport |"))
        self.assertIn("| 2.67 |", row)
        self.assertIn("| 2.50 |", row)

    def test_reference_ratios_of_close_p99_9_with_per_round_spread(self):
        ref = bench.compute_reference(self.subs)
        switchboard = next(c for c in ref["columns"] if c["numerator"] == "round-robin")
        fig = switchboard["figures"]["close_p99_9_ms"]
        self.assertAlmostEqual(fig["ratio"], 2.5)
        self.assertEqual(fig["per_round"], [3.0, 2.0])  # round 1: 12 / 4, round 2: 8 / 4
        c = next(c for c in ref["columns"] if c["numerator"] == "c-rr-close")
        self.assertAlmostEqual(c["figures"]["close_p99_9_ms"]["ratio"], 1.5)
        self.assertIn("| close p99.9 | 2.50 (2.00–3.00) | 1.50 |", bench.reference_tables(ref, 2))


class BeforeAfterInOneRun(unittest.TestCase):
    """--base-binary: each Switchboard subject also runs from an earlier build as <mode>@base, in the same rounds."""

    def setUp(self):
        self.subs = subjects(
            round_robin=[one_round((1000, 2000), (3000, 6000))],
            reuseport=[one_round((1000, 2000), (2000, 4000))],
            c_rr_close=[one_round((1000, 2000), (2000, 4000))])
        self.subs.update({
            "round-robin@base": subjects(x=[one_round((4000, 8000), (6000, 9000))])["x"],
            "reuseport@base": subjects(x=[one_round((4000, 8000), (2000, 4000))])["x"]})

    def test_ratios_of_each_subject_to_its_base_and_of_the_base_pairs(self):
        rows = {r["name"]: r for r in bench.compute_ratios(self.subs)}
        self.assertAlmostEqual(rows["round-robin/round-robin@base"]["keepalive_p99_ms"], 0.25)
        self.assertAlmostEqual(rows["round-robin/round-robin@base"]["close_p99_ms"], 0.5)
        self.assertAlmostEqual(rows["round-robin@base/reuseport@base"]["close_p99_ms"], 3.0)
        self.assertAlmostEqual(rows["round-robin/reuseport"]["close_p99_ms"], 1.5)
        # The base subjects against the same C reference, and its master CPU compared like any passing subject's.
        self.assertAlmostEqual(rows["round-robin@base/c-rr-close"]["keepalive_p99_ms"], 4.0)
        self.assertIsNotNone(rows["round-robin@base/c-rr-close"]["master_us_per_conn"])
        self.assertIsNone(rows["round-robin@base/reuseport@base"]["master_us_per_conn"])

    def test_without_base_subjects_no_base_pairs(self):
        names = {n for n, _ in bench.ratio_pairs({"round-robin": {}, "reuseport": {}})}
        self.assertFalse(any(bench.BASE_SUFFIX in n for n in names))

    def test_a_base_subject_runs_the_base_binary_in_its_own_mode(self):
        run = bench.Run(settings=type("S", (), {"server_prefix": []})(), registry=None, started=None, wrk="wrk",
                        node=None, binary="/new/switchboard", c_binary=None, c_build=None,
                        base_binary="/old/switchboard")
        argv, _ = bench.subject_command(run, "reuseport@base", 2)
        self.assertEqual(argv[0], "/old/switchboard")
        self.assertEqual(argv[argv.index("--mode") + 1], "reuseport")
        argv, _ = bench.subject_command(run, "reuseport", 2)
        self.assertEqual(argv[0], "/new/switchboard")


if __name__ == "__main__":
    unittest.main()
