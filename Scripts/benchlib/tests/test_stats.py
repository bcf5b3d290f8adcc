"""benchlib.stats: every expected value below is worked out by hand in the comment beside it.

Run from the repository root: python3 -m unittest discover -s Scripts/benchlib/tests
"""

import random
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # Scripts/

from benchlib import stats  # noqa: E402


class Median(unittest.TestCase):
    def test_odd_count_is_the_middle_value(self):
        self.assertEqual(stats.median([3, 1, 2]), 2)  # sorted 1 2 3
        self.assertEqual(stats.median([9, 7, 1, 5, 3]), 5)  # sorted 1 3 5 7 9

    def test_even_count_is_the_mean_of_the_two_middle_values(self):
        self.assertEqual(stats.median([4, 1, 3, 2]), 2.5)  # (2 + 3) / 2
        self.assertEqual(stats.median([10, 20]), 15)

    def test_one_value(self):
        self.assertEqual(stats.median([7.25]), 7.25)

    def test_empty_input_is_an_error(self):
        with self.assertRaises(ValueError):
            stats.median([])

    def test_or_none_skips_missing_figures(self):
        self.assertEqual(stats.median_or_none([None, 4, None, 2]), 3)  # median of 4 and 2
        self.assertEqual(stats.median_or_none([5, None, 1, 3]), 3)  # median of 5 1 3

    def test_or_none_without_any_figure(self):
        self.assertIsNone(stats.median_or_none([]))
        self.assertIsNone(stats.median_or_none([None, None]))

    def test_zero_is_a_figure_not_a_missing_one(self):
        self.assertEqual(stats.median_or_none([0, None, 0, 6]), 0)  # median of 0 0 6


class Spread(unittest.TestCase):
    def test_min_and_max(self):
        self.assertEqual(stats.min_max([3, 1, 2]), [1, 3])
        self.assertEqual(stats.spread([3, None, 1.5, 2]), [1.5, 3])

    def test_one_value_is_its_own_spread(self):
        self.assertEqual(stats.spread([4]), [4, 4])

    def test_empty(self):
        with self.assertRaises(ValueError):
            stats.min_max([])
        self.assertIsNone(stats.spread([]))
        self.assertIsNone(stats.spread([None]))


class Ratios(unittest.TestCase):
    def test_ratio(self):
        self.assertEqual(stats.ratio(6, 3), 2.0)
        self.assertEqual(stats.ratio(0, 4), 0.0)  # a numerator of 0 is a figure

    def test_ratio_without_a_figure_or_to_zero(self):
        self.assertIsNone(stats.ratio(None, 3))
        self.assertIsNone(stats.ratio(3, None))
        self.assertIsNone(stats.ratio(1, 0))

    def test_ratio_of_medians(self):
        # median(10 30 20) = 20, median(4 5) = 4.5: 20 / 4.5 = 4.444...
        self.assertAlmostEqual(stats.ratio_of_medians([10, 30, 20], [4, 5]), 40 / 9)

    def test_ratio_of_medians_is_not_the_median_of_ratios(self):
        num, den = [1, 10, 100], [1, 1, 100]
        self.assertEqual(stats.ratio_of_medians(num, den), 10.0)  # median 10 over median 1
        self.assertEqual(stats.median(stats.paired_ratios(num, den)), 1.0)  # median of 1, 10, 1

    def test_ratio_of_medians_skips_missing_figures(self):
        self.assertEqual(stats.ratio_of_medians([None, 8], [2, None, 6]), 2.0)  # 8 / median(2 6)
        self.assertIsNone(stats.ratio_of_medians([None], [2]))
        self.assertIsNone(stats.ratio_of_medians([1], [0, 0]))

    def test_paired_ratios_leave_out_incomplete_pairs(self):
        # 2/1, (None/3 left out), (9/0 left out), 8/4
        self.assertEqual(stats.paired_ratios([2, None, 9, 8], [1, 3, 0, 4]), [2.0, 2.0])
        self.assertEqual(stats.paired_ratios([6, 6, 6], [2, 3]), [3.0, 2.0])  # the shorter list decides
        self.assertEqual(stats.paired_ratios([], []), [])


class Percentiles(unittest.TestCase):
    def test_nearest_rank_on_1_to_100(self):
        values = list(range(100, 0, -1))  # order does not matter
        self.assertEqual(stats.nearest_rank(values, 99), 99)  # rank ceil(0.99 * 100) = 99
        self.assertEqual(stats.nearest_rank(values, 50), 50)
        self.assertEqual(stats.nearest_rank(values, 100), 100)
        self.assertEqual(stats.nearest_rank(values, 0), 1)  # rank 0 is clamped to the first

    def test_nearest_rank_rounds_the_rank_up(self):
        values = list(range(1, 102))  # 101 values
        self.assertEqual(stats.nearest_rank(values, 99), 100)  # rank ceil(99.99) = 100
        tens = [70, 10, 100, 40, 20, 90, 30, 60, 50, 80]
        self.assertEqual(stats.nearest_rank(tens, 90), 90)  # rank ceil(9.0) = 9
        self.assertEqual(stats.nearest_rank(tens, 95), 100)  # rank ceil(9.5) = 10
        self.assertEqual(stats.nearest_rank(tens, 25), 30)  # rank ceil(2.5) = 3

    def test_no_interpolation_between_values(self):
        self.assertEqual(stats.nearest_rank([1, 2, 3, 4], 50), 2)  # rank 2, not 2.5
        self.assertEqual(stats.nearest_rank([1.0, 1000.0], 99), 1000.0)  # rank ceil(1.98) = 2
        self.assertEqual(stats.nearest_rank([5.5], 99), 5.5)

    def test_empty_input_and_bad_percentile_are_errors(self):
        with self.assertRaises(ValueError):
            stats.nearest_rank([], 99)
        with self.assertRaises(ValueError):
            stats.nearest_rank([1, 2], 101)
        with self.assertRaises(ValueError):
            stats.nearest_rank([1, 2], -1)
        self.assertIsNone(stats.percentile_or_none([], 99))
        self.assertEqual(stats.percentile_or_none([3, 1, 2], 99), 3)  # rank ceil(2.97) = 3

    def test_upper_median(self):
        self.assertEqual(stats.upper_median([4, 1, 3, 2]), 3)  # sorted 1 2 3 4, index 2
        self.assertEqual(stats.upper_median([5, 1, 3]), 3)  # sorted 1 3 5, index 1
        self.assertIsNone(stats.upper_median([]))


class Distribution(unittest.TestCase):
    def test_jain_even_split_is_one(self):
        self.assertEqual(stats.jain([5, 5, 5, 5]), 1.0)

    def test_jain_one_worker_doing_everything_is_one_over_n(self):
        self.assertEqual(stats.jain([4, 0, 0, 0]), 0.25)  # 16 / (4 * 16)

    def test_jain_uneven(self):
        self.assertAlmostEqual(stats.jain([1, 3]), 0.8)  # (1 + 3)^2 / (2 * (1 + 9)) = 16 / 20
        self.assertAlmostEqual(stats.jain([2, 4, 6]), 144 / 168)  # 12^2 / (3 * 56)

    def test_jain_without_responses(self):
        self.assertIsNone(stats.jain([]))
        self.assertIsNone(stats.jain([0, 0]))

    def test_max_min(self):
        self.assertEqual(stats.max_min([2, 8, 4]), 4.0)
        self.assertEqual(stats.max_min([3, 3]), 1.0)

    def test_max_min_when_a_worker_got_nothing(self):
        self.assertIsNone(stats.max_min([3, 0]))  # shown as ∞
        self.assertIsNone(stats.max_min([]))

    def test_flatness(self):
        self.assertEqual(stats.flatness([2.0, None, 3.0, 2.5]), 1.5)
        self.assertEqual(stats.flatness(iter([4, 4])), 1.0)  # any iterable
        self.assertIsNone(stats.flatness([0, 1]))
        self.assertIsNone(stats.flatness([None]))
        self.assertIsNone(stats.flatness([]))

    def test_mean_of_sorted_shares(self):
        # each round sorted busiest first: [0.8, 0.2] and [0.6, 0.4]; means 0.7 and 0.3
        got = stats.mean_of_sorted([[0.2, 0.8], [0.6, 0.4]])
        self.assertEqual(len(got), 2)
        self.assertAlmostEqual(got[0], 0.7)
        self.assertAlmostEqual(got[1], 0.3)

    def test_mean_of_sorted_pads_short_rows_with_zero(self):
        self.assertEqual(stats.mean_of_sorted([[0.5, 0.5], [1.0]]), [0.75, 0.25])  # (0.5+1)/2, (0.5+0)/2
        self.assertEqual(stats.mean_of_sorted([]), [])


class Rates(unittest.TestCase):
    def test_per_unit(self):
        self.assertEqual(stats.per_unit(3e6, 1500), 2000.0)
        self.assertEqual(stats.per_unit(0, 5), 0.0)
        self.assertIsNone(stats.per_unit(None, 5))
        self.assertIsNone(stats.per_unit(5, 0))
        self.assertIsNone(stats.per_unit(5, None))

    def test_pct_of_core(self):
        self.assertEqual(stats.pct_of_core(0.5, 2.0), 25.0)
        self.assertEqual(stats.pct_of_core(3.0, 2.0), 150.0)  # more than one core
        self.assertIsNone(stats.pct_of_core(None, 2.0))
        self.assertIsNone(stats.pct_of_core(1.0, 0))


class BootstrapMedian(unittest.TestCase):
    def test_the_interval_holds_the_median_and_narrows_with_agreeing_rounds(self):
        spread = [0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 0.7]
        low, high = stats.bootstrap_median(spread, random.Random(1))
        self.assertLessEqual(low, 1.0)
        self.assertGreaterEqual(high, 1.0)
        self.assertLess(high - low, 1.3 - 0.7)  # not the whole range: the median of resamples stays inward
        self.assertEqual(stats.bootstrap_median([1.05] * 6, random.Random(1)), (1.05, 1.05))

    def test_the_same_seed_gives_the_same_interval(self):
        values = [1.3, 0.9, 1.6, 1.1, 1.2]
        self.assertEqual(stats.bootstrap_median(values, random.Random(7)),
                         stats.bootstrap_median(values, random.Random(7)))


class RankCorrelation(unittest.TestCase):
    def test_ranks_share_ties(self):
        self.assertEqual(stats.ranks([30, 10, 20, 10]), [4.0, 1.5, 3.0, 1.5])

    def test_spearman(self):
        self.assertAlmostEqual(stats.spearman([1, 2, 3, 4], [10, 20, 25, 90]), 1.0)
        self.assertAlmostEqual(stats.spearman([1, 2, 3, 4], [9, 7, 5, 1]), -1.0)
        # a monotone pair with one swap: 1 - 6 * 2 / (4 * 15) = 0.8
        self.assertAlmostEqual(stats.spearman([1, 2, 3, 4], [1, 3, 2, 4]), 0.8)
        self.assertIsNone(stats.spearman([1, 2], [1, 2]))
        self.assertIsNone(stats.spearman([1, 2, 3], [5, 5, 5]))


if __name__ == "__main__":
    unittest.main()
