"""Draw the Teams app icons (run once; the PNGs are committed): `python teams/make_icons.py`.

`color.png` is 192x192, the card's blue with a white list glyph (like `card/icon.png`); `outline.png` is 32x32,
the same glyph in white on a transparent background, as Teams asks. Plain zlib, no imaging library.
"""

import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLUE = (0x25, 0x57, 0xD6, 0xFF)
WHITE = (0xFF, 0xFF, 0xFF, 0xFF)
CLEAR = (0, 0, 0, 0)

Pixel = tuple[int, int, int, int]


def png(size: int, pixel: "PixelAt") -> bytes:
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(size)) for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


class PixelAt:
    """Three horizontal bars (a list) inside a square of `size`, on `background`."""

    def __init__(self, size: int, background: Pixel, inset: float) -> None:
        self.size = size
        self.background = background
        self.left = round(size * inset)
        self.right = size - self.left
        bar = max(2, round(size * 0.09))
        gap = round(size * (1 - 2 * inset) / 4)
        middle = size // 2
        self.bars = [(middle + offset - bar // 2, middle + offset - bar // 2 + bar) for offset in (-gap, 0, gap)]

    def __call__(self, x: int, y: int) -> Pixel:
        if self.left <= x < self.right and any(top <= y < bottom for top, bottom in self.bars):
            return WHITE
        return self.background


def main() -> None:
    (HERE / "color.png").write_bytes(png(192, PixelAt(192, BLUE, 0.25)))
    (HERE / "outline.png").write_bytes(png(32, PixelAt(32, CLEAR, 0.16)))


if __name__ == "__main__":
    main()
