"""Where each quantized tensor sits in the video frames.

A tensor becomes a matrix (output channels as rows), is cut into tiles no larger than the codec
allows, and the tiles are packed onto shelves in frames. Every tile starts on a multiple of the
codec's block size, so no coding block mixes two tensors; the padding is the neutral value 128,
which costs almost nothing to code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Arrangement = Literal["rows", "kernel_blocks"]
ARRANGEMENTS = ("rows", "kernel_blocks")
PIXEL_OFFSET = 128  # an 8-bit frame stores symbol s as pixel s + 128; a 10-bit one as s + 512
# Upper bound on a frame side even where the codec allows more: bounds one ffmpeg call's memory and
# leaves several frames for large models to encode in parallel.
FRAME_SIDE_CAP = 4096


def as_matrix(symbols: np.ndarray, arrangement: Arrangement = "rows") -> np.ndarray:
    """2-D view of a tensor: one row per output channel, or k x k kernels kept as k x k blocks."""
    if symbols.ndim == 0:
        return symbols.reshape(1, 1)
    if arrangement == "kernel_blocks" and symbols.ndim == 4:
        out_channels, in_channels, kernel_h, kernel_w = symbols.shape
        return symbols.transpose(0, 2, 1, 3).reshape(out_channels * kernel_h, in_channels * kernel_w)
    return symbols.reshape(symbols.shape[0], -1) if symbols.ndim > 1 else symbols.reshape(1, -1)


def from_matrix(matrix: np.ndarray, shape: tuple[int, ...], arrangement: Arrangement = "rows") -> np.ndarray:
    if arrangement == "kernel_blocks" and len(shape) == 4:
        out_channels, in_channels, kernel_h, kernel_w = shape
        blocks = matrix.reshape(out_channels, kernel_h, in_channels, kernel_w)
        return np.ascontiguousarray(blocks.transpose(0, 2, 1, 3))
    return matrix.reshape(shape)


def matrix_shape(shape: tuple[int, ...], arrangement: Arrangement = "rows") -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if arrangement == "kernel_blocks" and len(shape) == 4:
        return shape[0] * shape[2], shape[1] * shape[3]
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], int(np.prod(shape[1:]))


@dataclass(frozen=True)
class Region:
    """matrix[row:row+height, col:col+width] sits at (x, y) of frame `frame`."""

    frame: int
    x: int
    y: int
    row: int
    col: int
    width: int
    height: int

    def to_dict(self) -> dict:
        return {
            "frame": self.frame,
            "x": self.x,
            "y": self.y,
            "row": self.row,
            "col": self.col,
            "width": self.width,
            "height": self.height,
        }


@dataclass(frozen=True)
class FrameLimits:
    block_size: int
    min_size: int
    max_width: int
    max_height: int

    @property
    def tile_width(self) -> int:
        return _floor_to(min(self.max_width, FRAME_SIDE_CAP), self.block_size)

    @property
    def tile_height(self) -> int:
        return _floor_to(min(self.max_height, FRAME_SIDE_CAP), self.block_size)


@dataclass(frozen=True)
class Packing:
    frame_sizes: list[tuple[int, int]]  # (width, height) per frame
    regions: list[list[Region]]  # per matrix, in the order given


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _floor_to(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


def pack(matrix_shapes: list[tuple[int, int]], limits: FrameLimits) -> Packing:
    """Shelf-pack the matrices' tiles into frames; deterministic for the same shapes and limits."""
    tiles = []  # (matrix index, row, col, height, width)
    for index, (rows, cols) in enumerate(matrix_shapes):
        for row in range(0, rows, limits.tile_height):
            for col in range(0, cols, limits.tile_width):
                tiles.append((index, row, col, min(limits.tile_height, rows - row), min(limits.tile_width, cols - col)))
    block = limits.block_size
    frame_width = max(_ceil_to(max(width for *_, width in tiles), block), _ceil_to(limits.min_size, block))
    # Tallest first keeps shelves full; ties keep the model's order.
    order = sorted(range(len(tiles)), key=lambda t: (-_ceil_to(tiles[t][3], block), t))
    regions: list[list[Region]] = [[] for _ in matrix_shapes]
    frame_heights: list[int] = []
    shelf_y = shelf_x = shelf_height = 0
    frame = -1
    for t in order:
        index, row, col, height, width = tiles[t]
        padded_w, padded_h = _ceil_to(width, block), _ceil_to(height, block)
        if frame < 0 or shelf_x + padded_w > frame_width:
            shelf_y, shelf_x, shelf_height = shelf_y + shelf_height, 0, padded_h
            if frame < 0 or shelf_y + shelf_height > limits.tile_height:
                frame, shelf_y = frame + 1, 0
                frame_heights.append(0)
        regions[index].append(Region(frame, shelf_x, shelf_y, row, col, width, height))
        shelf_x += padded_w
        frame_heights[frame] = max(frame_heights[frame], shelf_y + padded_h)
    sizes = [(frame_width, max(height, _ceil_to(limits.min_size, block))) for height in frame_heights]
    return Packing(sizes, regions)


def pixel_offset(bit_depth: int) -> int:
    """The luma value that stands for symbol 0: mid-range, so the symbols' signs fit either side."""
    return 1 << (bit_depth - 1)


def symbol_dtype(bits: int):
    """How symbols of `bits` bits (a frame's depth, or a quantizer's) are held: int8 up to 8, else int16."""
    return np.int8 if bits <= 8 else np.int16


def render_frame(size: tuple[int, int], placed: list[tuple[np.ndarray, Region]], bit_depth: int = 8) -> np.ndarray:
    """One luma plane (uint8, or uint16 for 10-bit) holding matrix tiles at their regions, padded with
    the neutral value (symbol 0)."""
    width, height = size
    offset = pixel_offset(bit_depth)
    frame = np.full((height, width), offset, dtype=np.uint8 if bit_depth == 8 else np.uint16)
    for matrix, r in placed:
        tile = matrix[r.row : r.row + r.height, r.col : r.col + r.width].astype(np.int32) + offset
        frame[r.y : r.y + r.height, r.x : r.x + r.width] = tile
    return frame


def render(packing: Packing, matrices: list[np.ndarray], bit_depth: int = 8) -> list[np.ndarray]:
    """Luma planes holding the symbol matrices, frame by frame."""
    placed: list[list] = [[] for _ in packing.frame_sizes]
    for matrix, regions in zip(matrices, packing.regions):
        for r in regions:
            placed[r.frame].append((matrix, r))
    return [render_frame(size, items, bit_depth) for size, items in zip(packing.frame_sizes, placed)]


def extract(
    frames: dict[int, np.ndarray], regions: list[Region], rows: int, cols: int, bit_depth: int = 8
) -> np.ndarray:
    """The symbol matrix whose tiles sit at `regions` of the decoded frames."""
    matrix = np.empty((rows, cols), dtype=symbol_dtype(bit_depth))
    offset = pixel_offset(bit_depth)
    for r in regions:
        pixels = frames[r.frame][r.y : r.y + r.height, r.x : r.x + r.width]
        matrix[r.row : r.row + r.height, r.col : r.col + r.width] = pixels.astype(np.int32) - offset
    return matrix
