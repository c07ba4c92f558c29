"""``python -m bench.turnaround URL``: a server's own turnaround beside wrk's latency, from a packet capture.

wrk times a request from its write to its read of the answer. When wrk shares the machine's
cores with the server, that includes the time an answer waits in wrk's socket until wrk gets a
core again. tcpdump stamps each packet on loopback as it is sent, so "answer sent - request
sent" is the server's turnaround (its queue included) without wrk's waits. Runs wrk at normal
priority and then at a real-time one (what ``bench.run`` uses), capturing both, and prints
both measures side by side. Needs root (tcpdump, chrt) and tcpdump (``apt-get install tcpdump``).

    bench/.venv/bin/python -m bench.turnaround http://127.0.0.1:8000/health

tcpdump uses CPU too (req/s drops while it runs): compare the columns of one run, not its req/s
with ``bench.run``'s. Only for answers that fit in one packet (``/health``, small bodies).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from . import load

ETHERNET_HEADER = 14  # loopback captures are DLT_EN10MB
MAGIC_MICROSECONDS, MAGIC_NANOSECONDS = 0xA1B2C3D4, 0xA1B23C4D


def packets(capture: Path) -> list[tuple[float, int, int]]:
    """(time, source port, destination port) of each TCP packet in a pcap file of IPv4 on loopback."""
    data = capture.read_bytes()
    magic, link_type = struct.unpack_from("<I", data, 0)[0], struct.unpack_from("<I", data, 20)[0]
    if magic not in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS) or link_type != 1:
        raise ValueError(f"{capture}: not a little-endian Ethernet pcap file")
    fraction = 1e9 if magic == MAGIC_NANOSECONDS else 1e6
    found, offset = [], 24
    while offset + 16 <= len(data):
        seconds, part, captured, _ = struct.unpack_from("<IIII", data, offset)
        ip = offset + 16 + ETHERNET_HEADER
        header_length = (data[ip] & 0x0F) * 4
        source, destination = struct.unpack_from(">HH", data, ip + header_length)
        found.append((seconds + part / fraction, source, destination))
        offset += 16 + captured
    return found


def turnarounds(capture: Path, server_port: int) -> list[float]:
    """Seconds from each request's packet to the first answer packet on the same connection."""
    sent: dict[int, float] = {}
    result = []
    for stamp, source, destination in packets(capture):
        if destination == server_port:
            sent[source] = stamp
        elif source == server_port and destination in sent:
            result.append(stamp - sent.pop(destination))
    return result


def captured_run(url: str, settings: load.LoadSettings, workdir: Path) -> tuple[dict[str, float], list[float]]:
    """One wrk run with tcpdump capturing the requests and answers (packets carrying data)."""
    parts = urlsplit(url)
    port = parts.port or 80
    endpoint = load.Endpoint("turnaround", parts.path or "/", parts.path or "/")
    base_url = f"{parts.scheme}://{parts.netloc}"
    capture = workdir / f"{settings.scheduling}.pcap"
    tcpdump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-n", "-s", "96", "-B", "65536", "-w", str(capture),
         f"tcp port {port} and (tcp[tcpflags] & tcp-push != 0)"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if tcpdump.stderr is not None:
        tcpdump.stderr.readline()  # "listening on lo ...": capturing from here on
    try:
        wrk = load.run(load.ensure_wrk(), base_url, endpoint, settings, duration=settings.duration,
                       script_args=["turnaround"], headers={})  # fmt: skip
    finally:
        time.sleep(0.2)
        tcpdump.send_signal(signal.SIGTERM)
        tcpdump.wait(timeout=10)
    return wrk, turnarounds(capture, port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turnaround", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("url", help="e.g. http://127.0.0.1:8000/health")
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    if shutil.which("tcpdump") is None:
        parser.error("tcpdump is not installed: apt-get install tcpdump")
    if not load.fifo_allowed():
        parser.error("wrk cannot be given a real-time priority here (needs root or CAP_SYS_NICE)")
    print("| wrk priority | req/s | wrk p50 / p99 ms | p99 / p50 | turnaround p50 / p99 ms | p99 / p50 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="bench-turnaround-") as workdir:
        for scheduling in ("normal", "fifo"):
            settings = load.LoadSettings(args.threads, args.connections, args.duration, 5, scheduling)
            wrk, server = captured_run(args.url, settings, Path(workdir))
            if len(server) < 2:
                print(f"fewer than two requests and answers captured at {scheduling} priority", file=sys.stderr)
                return 1
            p50, p99 = statistics.median(server) * 1e3, statistics.quantiles(server, n=100)[98] * 1e3
            print(
                f"| {scheduling} | {wrk['rps']:,.0f} | {wrk['p50_ms']:.2f} / {wrk['p99_ms']:.2f} "
                f"| {wrk['p99_ms'] / wrk['p50_ms']:.1f}x | {p50:.2f} / {p99:.2f} | {p99 / p50:.1f}x |"
            )
            print(f"  {len(server):,} answers captured, mean turnaround {statistics.fmean(server) * 1e3:.2f} ms",
                  file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
