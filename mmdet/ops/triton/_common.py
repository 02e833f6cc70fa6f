"""Launch helpers shared by the Triton kernels (their arguments are checked by the wrappers in
``mmdet.ops.sparse`` and ``mmdet.ops.gumbel_mask``)."""

import os

import triton
import triton.language as tl


def interpreted() -> bool:
    """True under Triton's CPU interpreter (``TRITON_INTERPRET=1``, read when kernels are defined)."""
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def autotune_enabled() -> bool:
    """False under the interpreter or with ``MMDET_TRITON_AUTOTUNE=0`` (each kernel then uses one tile)."""
    return not interpreted() and os.environ.get('MMDET_TRITON_AUTOTUNE', '1') != '0'


def block_size(n: int, lo: int, hi: int) -> int:
    """The power of two covering ``n``, clamped to [lo, hi]."""
    return max(lo, min(hi, triton.next_power_of_2(n)))


def patches(batch: int, height: int, width: int, block: int, tile_w: int) -> int:
    """The number of programs ``patch`` spreads a [batch, height, width] grid over."""
    return batch * triton.cdiv(height, block // tile_w) * triton.cdiv(width, tile_w)


@triton.jit
def patch(program, H, W, BLOCK: tl.constexpr, TILE_W: tl.constexpr):
    """Program ``program``'s BLOCK positions of a [B, H, W] grid: a (BLOCK / TILE_W) x TILE_W patch
    of one image (row-major within it; the patches row-major within an image, the images in
    turn). Returns (b, y, x, inside: the position is in the grid, position (b H + y) W + x)."""
    tiles_w = tl.cdiv(W, TILE_W)
    tiles = tl.cdiv(H, BLOCK // TILE_W) * tiles_w
    b = program // tiles
    tile = program % tiles
    i = tl.arange(0, BLOCK)
    y = (tile // tiles_w) * (BLOCK // TILE_W) + i // TILE_W
    x = (tile % tiles_w) * TILE_W + i % TILE_W
    return b, y, x, (y < H) & (x < W), (b * H + y) * W + x


@triton.jit
def dot(a, b, acc, IEEE: tl.constexpr):
    """acc + a @ b by ``tl.dot``, in full float32 precision where IEEE (float32 features: the
    default would round them to TF32)."""
    if IEEE:
        return tl.dot(a, b, acc, input_precision='ieee')
    return tl.dot(a, b, acc)


@triton.jit
def pointwise_tile(
    acc, a_ptr, a_rows, a_col, rows_ok, w_ptr, K, cols, col_ok, IEEE: tl.constexpr, BLOCK_K: tl.constexpr
):  # fmt: skip
    """acc + A @ W^T for one output tile: A's rows start at a_ptr + a_rows (K channels, a_col
    apart), W is [Cout, K] row-major and ``cols`` the tile's output channels."""
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        a = tl.load(
            a_ptr + a_rows[:, None] + ks[None, :] * a_col, mask=rows_ok[:, None] & k_ok[None, :], other=0
        )
        wt = tl.load(w_ptr + cols[None, :] * K + ks[:, None], mask=k_ok[:, None] & col_ok[None, :], other=0)
        acc = dot(a, wt, acc, IEEE)
    return acc
