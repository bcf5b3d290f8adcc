"""benchlib.report: the number formats and the Markdown table the published tables are made of.

Run from the repository root: python3 -m unittest discover -s Scripts/benchlib/tests
"""

import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # Scripts/

from benchlib import report  # noqa: E402


class Formats(unittest.TestCase):
    def test_fmt_num(self):
        self.assertEqual(report.fmt_num(12345.6), "12,346")
        self.assertEqual(report.fmt_num(0.12345, 3), "0.123")
        self.assertEqual(report.fmt_num(1234.5678, 1), "1,234.6")
        self.assertEqual(report.fmt_num(2.5, -1), "2.50")  # max/min
        self.assertEqual(report.fmt_num(None), "–")
        self.assertEqual(report.fmt_num(None, -1), "∞")  # a worker got nothing

    def test_fmt_spread(self):
        self.assertEqual(report.fmt_spread(10, [8, 12], 0, True), "10 (8–12)")
        self.assertEqual(report.fmt_spread(10, [8, 12], 0, False), "10")
        self.assertEqual(report.fmt_spread(10, [10, 10], 0, True), "10")
        self.assertEqual(report.fmt_spread(1.25, [1.0, 1.5], 2, True), "1.25 (1.00–1.50)")
        self.assertEqual(report.fmt_spread(None, None, 1, True), "–")

    def test_fmt_ratio(self):
        self.assertEqual(report.fmt_ratio(1.234), "1.23")
        self.assertEqual(report.fmt_ratio(0.1), "0.10")
        self.assertEqual(report.fmt_ratio(0.0456), "0.046")  # two significant digits below 0.1
        self.assertEqual(report.fmt_ratio(None), "–")

    def test_fmt_fixed(self):
        self.assertEqual(report.fmt_fixed(1234.5678, 1, [1000, 2000]), "1,234.6 (1,000.0–2,000.0)")
        self.assertEqual(report.fmt_fixed(3.0, 2, [3.0, 3.0]), "3.00")
        self.assertEqual(report.fmt_fixed(None, 2), "–")

    def test_markdown_table(self):
        self.assertEqual(report.markdown_table(["subject", "req/s"], report.first_left(2), [["a", "1"], ["b", "2"]]),
                         "| subject | req/s |\n|---|---:|\n| a | 1 |\n| b | 2 |")
        self.assertEqual(report.first_left(4, 2), ["---", "---", "---:", "---:"])

    def test_write_json_refuses_nan(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "sub" / "x.json"
            report.write_json(path, {"a": [1, None]})
            self.assertEqual(path.read_text(), '{\n  "a": [\n    1,\n    null\n  ]\n}\n')
            self.assertEqual(json.loads(path.read_text()), {"a": [1, None]})
            with self.assertRaises(ValueError):
                report.write_json(path, {"a": float("nan")})


if __name__ == "__main__":
    unittest.main()
