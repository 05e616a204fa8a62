"""Order-preserving bins for float32 scores, computed from their IEEE-754 bit patterns.

Read as a signed integer, the bits ``x`` of a float32 sort like the floats for non-negative values and in reverse for
negative ones. ``k = x ^ ((x >> 31) & 0x7FFFFFFF)`` flips the magnitude bits of negative values: ``k`` is a signed
integer that sorts exactly like the floats over the whole line (-inf ... +inf), one key per float32 value.

A *coarse bin* keeps the top ``bits`` bits of ``k`` (sign, exponent, then leading mantissa bits), offset to
``[0, 2**bits)``: bins monotone in the score, equal scores always in the same bin, with a relative width of
``2 ** -(bits - 9)`` whatever the sign or scale. Its *sub-bin* is the next ``sub_bits`` bits of ``k``: a refined
coarse bin splits into ``2**sub_bits`` sub-bins, each a single float32 value when ``bits + sub_bits == 32``.

The lowest and highest coarse bins are reached only by NaN bit patterns. -0.0 lands in the last sub-bin of coarse bin
``C - 1`` (``C = 2**(bits - 1)``, with negative subnormals of magnitude below ``2**(32 - bits) * 2**-149``) and +0.0
in the first sub-bin of bin ``C`` (with the positive ones): those two cells are to be read as one, zero.
"""

from __future__ import annotations

import numpy as np

MIN_BITS = 12
MAX_BITS = 22  # a refined state holds 2 * 2**bits entries per label: label 255 (void) * that + entry fits int32
#: Sub-bins per refined coarse bin: 2**10, which at 22 bits resolves every float32 value.
MAX_SUB_BITS = 10


def check_bits(bits: int) -> int:
    """Validate the number of key bits kept as the coarse bin index."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    return bits


def sub_bits_for(bits: int) -> int:
    """Sub-bin bits of a refined coarse bin: the float32 bits left below the coarse ones, at most ``MAX_SUB_BITS``."""
    return min(MAX_SUB_BITS, 32 - bits)


def zero_bin(bits: int) -> int:
    """The coarse bin of +0.0; bin ``zero_bin(bits) - 1`` (holding -0.0) belongs with it."""
    return 1 << (bits - 1)


def significant_bits(bits: int) -> int:
    """Significant bits a coarse bin resolves: two values with at most this many fall in different bins."""
    return bits - 8


def float_keys(values: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Write the order-preserving int32 keys of float32 ``values`` (read only) into ``out``, using int32 ``scratch``."""
    bits = values.view(np.int32)
    np.right_shift(bits, 31, out=scratch)  # -1 where negative, else 0
    scratch &= 0x7FFFFFFF
    return np.bitwise_xor(bits, scratch, out=out)


def coarse_bins(keys: np.ndarray, bits: int, out: np.ndarray) -> np.ndarray:
    """Coarse bins in ``[0, 2**bits)`` of int32 ``keys`` (see :func:`float_keys`), written into ``out`` (any
    integer dtype)."""
    np.right_shift(keys, 32 - bits, out=out, dtype=out.dtype)
    out += zero_bin(bits)
    return out
