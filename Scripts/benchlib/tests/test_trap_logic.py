"""The pure parts of the trap fault and the framework-alone benchmark: the longest time without service, which process
holds the server side of a connection (/proc/net/tcp, descriptor links), and the framework applications' registry.

Run from the repository root: python3 -m unittest discover -s Scripts/benchlib/tests
"""

import os
import socket
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # Scripts/

from benchlib import apps, procfs, stats  # noqa: E402


class LongestGap(unittest.TestCase):
    def test_between_two_successes(self):
        # successes at 1, 2, 5, 6 in [1, 6]: gaps 1, 3, 1 (and 0 at both edges): the longest is 2 -> 5
        self.assertEqual(stats.longest_gap([1, 2, 5, 6], 1, 6), (3, 2))

    def test_order_does_not_matter(self):
        self.assertEqual(stats.longest_gap([6, 5, 1, 2], 1, 6), (3, 2))

    def test_the_edges_count(self):
        # nothing succeeded after 3 in [0, 10]: the last stretch, 3 -> 10, is the gap
        self.assertEqual(stats.longest_gap([1, 2, 3], 0, 10), (7, 3))
        # nothing before 8: start 0 -> 8
        self.assertEqual(stats.longest_gap([8, 9], 0, 10), (8, 0))

    def test_times_outside_the_window_are_left_out(self):
        # 0.5 and 12 fall outside [1, 10]; inside only 4: gaps 3 (1 -> 4) and 6 (4 -> 10)
        self.assertEqual(stats.longest_gap([0.5, 4, 12], 1, 10), (6, 4))

    def test_no_success_at_all_is_the_whole_window(self):
        self.assertEqual(stats.longest_gap([], 2, 5), (3, 2))

    def test_the_first_of_equal_gaps(self):
        # 0 -> 2 and 2 -> 4 are both 2 long: the earlier one is reported
        self.assertEqual(stats.longest_gap([2], 0, 4), (2, 0))

    def test_an_empty_window(self):
        self.assertEqual(stats.longest_gap([1], 3, 3), (0, 3))
        self.assertIsNone(stats.longest_gap([1], 4, 3))


class GapsLongerThan(unittest.TestCase):
    def test_every_long_gap_in_order(self):
        # in [0, 10] with successes at 1, 1.5, 4, 9: gaps 1, 0.5, 2.5, 5, 1; longer than 1: 1.5 -> 4 and 4 -> 9
        self.assertEqual(stats.gaps_longer_than([9, 1, 4, 1.5], 0, 10, 1), [(1.5, 2.5), (4, 5)])

    def test_edges_and_nothing_long(self):
        self.assertEqual(stats.gaps_longer_than([5], 0, 6, 4), [(0, 5)])
        self.assertEqual(stats.gaps_longer_than([1, 2, 3], 0, 4, 1), [])


class NetTcp(unittest.TestCase):
    # Captured from /proc/net/tcp here: a listener on 127.0.0.1:36031 (0x8CBF), one established connection to it from
    # port 45198 (0xB08E) with inode 87131234, one in TIME_WAIT (06, inode 0), and the same connection seen from the
    # client side.
    TEXT = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:8CBF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 87129799 1 "
        "0000000006427b2b 100 0 0 10 0\n"
        "   1: 0100007F:8CBF 0100007F:B08E 01 00000000:00000000 00:00000000 00000000     0        0 87131234 1 "
        "00000000470a9d48 20 4 30 10 -1\n"
        "   2: 0100007F:8CBF 0100007F:C62E 06 00000000:00000000 03:000013DE 00000000     0        0 0 3 "
        "00000000254705fb\n"
        "   3: 0100007F:B08E 0100007F:8CBF 01 00000000:00000000 00:00000000 00000000     0        0 87131233 1 "
        "00000000470a9d49 20 4 30 10 -1\n"
        "garbage line\n"
    )

    def test_ports_state_and_inode(self):
        rows = procfs.parse_net_tcp(self.TEXT)
        self.assertEqual(rows, [(36031, 0, 10, 87129799), (36031, 45198, 1, 87131234), (36031, 50734, 6, 0),
                                (45198, 36031, 1, 87131233)])

    def test_ipv6_addresses(self):
        line = ("  0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D2A4 01 "
                "00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n")
        self.assertEqual(procfs.parse_net_tcp(line), [(8080, 53924, 1, 4242)])

    def test_socket_links(self):
        self.assertEqual(procfs.parse_socket_link("socket:[87131234]"), 87131234)
        self.assertIsNone(procfs.parse_socket_link("pipe:[123]"))
        self.assertIsNone(procfs.parse_socket_link("/dev/null"))
        self.assertIsNone(procfs.parse_socket_link("socket:[x]"))

    def test_this_process_holds_the_server_side_it_accepted(self):
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            with socket.create_connection(listener.getsockname()) as client:
                accepted, _ = listener.accept()
                with accepted:
                    port, client_port = listener.getsockname()[1], client.getsockname()[1]
                    held = procfs.holders_of_connections(port, [client_port, 1], [os.getpid()])
                    self.assertEqual(held, {client_port: os.getpid(), 1: None})
                    self.assertEqual(procfs.holders_of_connections(port, [client_port], [os.getppid()]),
                                     {client_port: None})


class Apps(unittest.TestCase):
    def test_every_entry_is_complete(self):
        names = [a.name for a in apps.APPS]
        self.assertEqual(len(names), len(set(names)))
        for app in apps.APPS:
            self.assertIn("{ms}", app.slow_path)
            self.assertIn(f"--traits {app.trait} --product {app.product}", app.build_command())

    def test_binary_arguments(self):
        self.assertEqual(apps.parse_binaries(["hummingbird=/x/y"]), {"hummingbird": "/x/y"})
        with self.assertRaises(ValueError):
            apps.parse_binaries(["hummingbird"])
        with self.assertRaises(ValueError):
            apps.parse_binaries(["rails=/x"])

    def test_the_binary_beside_the_switchboard_binary_comes_first(self):
        app = apps.by_name("hummingbird")
        with tempfile.TemporaryDirectory() as d:
            self.assertEqual(app.candidates(os.path.join(d, "switchboard"))[0], Path(d).resolve() / app.product)
            beside = Path(d) / app.product
            beside.write_text("#!/bin/sh\n")
            beside.chmod(0o755)
            self.assertEqual(app.find_binary(os.path.join(d, "switchboard")), str(beside.resolve()))

    def test_built_without_the_trait(self):
        line = ("switchboard-hummingbird-example was built without the Hummingbird package trait: build it with "
                "`swift build --traits Hummingbird`")
        self.assertTrue(apps.built_without_trait(line))
        self.assertFalse(apps.built_without_trait("listening on 127.0.0.1:8080"))


if __name__ == "__main__":
    unittest.main()
