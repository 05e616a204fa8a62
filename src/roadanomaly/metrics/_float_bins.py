"""Order-preserving bins for float32 scores, computed from their IEEE-754 bit patterns.

Read as a signed integer, the bits of a float32 sort like the floats for non-negative values and in reverse for
negative ones. Keep the top ``bits`` bits, ``u = bits >> (32 - bits)`` (sign, exponent, then leading mantissa bits),
and map ``u >= 0`` to ``u + C`` and ``u < 0`` to ``~u`` (``C = 2**(bits - 1)``): bins in ``[0, 2 * C)`` that are
monotone in the score over the whole line (-inf ... +inf), put equal scores in the same bin and have a relative
width of ``2 ** -(bits - 9)`` whatever the sign or scale.

The lowest and highest bins are reached only by NaN bit patterns. -0.0 lands in bin ``C - 1`` (with negative
subnormals of magnitude below ``2**(32 - bits) * 2**-149``) and +0.0 in bin ``C`` (with the positive ones): those
two bins are to be read as one, around zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_BITS = 12
MAX_BITS = 22  # keeps bin + 255 * 2**bits (a void label's offset) inside int32


def check_bits(bits: int) -> int:
    """Validate the number of key bits kept as the bin index."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    return bits


def zero_bin(bits: int) -> int:
    """The bin of +0.0; bin ``zero_bin(bits) - 1`` (holding -0.0) belongs with it."""
    return 1 << (bits - 1)


def float_bins(values: Tensor, bits: int, out: Tensor, scratch: Tensor) -> Tensor:
    """Write the bins of float32 ``values`` (read only) into the int32 tensor ``out``, using int32 ``scratch``."""
    torch.bitwise_right_shift(values.view(torch.int32), 32 - bits, out=out)  # u, in [-C, C)
    torch.bitwise_right_shift(out, 31, out=scratch)  # -1 where u < 0, else 0
    scratch |= zero_bin(bits)  # C where u >= 0, else -1 (all ones)
    out ^= scratch  # u ^ C == u + C for u >= 0;  u ^ -1 == ~u for u < 0
    return out
