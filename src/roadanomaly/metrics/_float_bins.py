"""Order-preserving bins for float32 scores, built from their IEEE-754 bit patterns.

The bits of a float32, read as a signed integer, sort like the floats for non-negative values and in reverse for
negative ones. Flipping the 31 low bits of negative values makes integer order equal float order over the whole
line (-inf < ... < -0 < +0 < ... < +inf), once -0.0 has been turned into +0.0. Keeping the top ``bits`` bits of
that key (sign, exponent, then the leading mantissa bits) gives bins that are monotone in the score, put equal
scores in the same bin, and have a relative width of ``2 ** -(bits - 9)`` whatever the sign or scale.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_BITS = 12
MAX_BITS = 22


def check_bits(bits: int) -> int:
    """Validate the number of key bits kept as the bin index."""
    if not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    return bits


def bins_in_place(canonical: Tensor, bits: int, scratch: Tensor) -> Tensor:
    """Overwrite a float32 tensor (with -0.0 already made +0.0) by its bin indices in ``[0, 2**bits)``, as int32.

    ``scratch`` is an int32 tensor of the same size used as workspace. Returns the int32 view of ``canonical``.
    """
    key = canonical.view(torch.int32)
    torch.bitwise_right_shift(key, 31, out=scratch)  # -1 for negative values, 0 otherwise
    scratch &= 0x7FFFFFFF
    key ^= scratch  # signed integer order == float order
    key >>= 32 - bits  # arithmetic shift: floor division by 2**(32 - bits), keeps the order
    key += 1 << (bits - 1)  # from [-2**(bits-1), 2**(bits-1)) to [0, 2**bits)
    return key

