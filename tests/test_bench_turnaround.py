"""The packet-capture reader behind ``python -m bench.turnaround`` (docs/performance.md)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bench.turnaround import MAGIC_NANOSECONDS, turnarounds

SERVER = 8000


def _packet(seconds: float, source: int, destination: int) -> bytes:
    """An Ethernet frame holding an IPv4 TCP header, as tcpdump -s 96 stores it, with its record header."""
    ip = bytes([0x45, 0, 0, 40]) + bytes(8) + bytes([127, 0, 0, 1, 127, 0, 0, 1])
    frame = bytes(12) + b"\x08\x00" + ip + struct.pack(">HH", source, destination) + bytes(16)
    whole, part = int(seconds), round((seconds - int(seconds)) * 1e9)
    return struct.pack("<IIII", whole, part, len(frame), len(frame)) + frame


def _capture(path: Path, packets: list[tuple[float, int, int]]) -> Path:
    header = struct.pack("<IHHiIII", MAGIC_NANOSECONDS, 2, 4, 0, 0, 96, 1)
    path.write_bytes(header + b"".join(_packet(*packet) for packet in packets))
    return path


def test_each_answer_is_timed_from_the_request_on_its_own_connection(tmp_path: Path) -> None:
    capture = _capture(tmp_path / "two.pcap", [
        (10.000, 40001, SERVER),  # connection A asks
        (10.001, 40002, SERVER),  # connection B asks
        (10.003, SERVER, 40002),  # B answered after 2 ms
        (10.004, SERVER, 40001),  # A answered after 4 ms
        (10.005, 40001, SERVER),
        (10.0055, SERVER, 40001),  # A again, 0.5 ms
    ])  # fmt: skip
    assert turnarounds(capture, SERVER) == pytest.approx([0.002, 0.004, 0.0005])


def test_a_second_answer_packet_and_other_ports_are_not_counted(tmp_path: Path) -> None:
    capture = _capture(tmp_path / "extra.pcap", [
        (1.0, 40001, SERVER),
        (1.001, SERVER, 40001),
        (1.002, SERVER, 40001),  # the rest of a long answer: no request waiting
        (1.003, 40001, 9999),  # another server
        (1.004, 9999, 40001),
    ])  # fmt: skip
    assert turnarounds(capture, SERVER) == pytest.approx([0.001])


def test_a_file_that_is_not_an_ethernet_capture_is_refused(tmp_path: Path) -> None:
    (tmp_path / "not.pcap").write_bytes(bytes(24))
    with pytest.raises(ValueError, match="not a little-endian Ethernet pcap"):
        turnarounds(tmp_path / "not.pcap", SERVER)
