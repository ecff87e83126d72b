"""The digest's chart: a valid PNG of the expected size that depends on its data."""

from __future__ import annotations

import struct
import zlib
from datetime import date, timedelta

from agents.digest_chart import HEIGHT_PX, WIDTH_PX, week_chart
from memory.digest_facts import DayCount

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def week(*counts: tuple[int, int]) -> list[DayCount]:
    start = date(2026, 11, 18)
    return [DayCount(start + timedelta(days=i), ok, bad) for i, (ok, bad) in enumerate(counts)]


def ihdr(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking its CRC."""
    assert png[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", png[8:16])
    assert (length, kind) == (13, b"IHDR")
    data = png[16 : 16 + length]
    (crc,) = struct.unpack(">I", png[16 + length : 20 + length])
    assert crc == zlib.crc32(kind + data)
    width, height = struct.unpack(">II", data[:8])
    return width, height


def test_a_valid_png_of_the_expected_size() -> None:
    png = week_chart(week((12, 1), (9, 0), (0, 0), (15, 3), (7, 0), (11, 2), (4, 0)))
    assert ihdr(png) == (WIDTH_PX, HEIGHT_PX) == (800, 400)
    assert png.endswith(b"IEND\xaeB`\x82")
    assert len(png) < 100_000  # small enough for a chat photo


def test_different_data_gives_different_bytes_and_the_same_data_the_same() -> None:
    quiet = week(*[(0, 0)] * 7)
    busy = week(*[(5, 1)] * 7)
    assert week_chart(quiet) != week_chart(busy)
    assert week_chart(busy) == week_chart(busy)
    assert ihdr(week_chart(quiet)) == (800, 400)  # an empty week still draws
