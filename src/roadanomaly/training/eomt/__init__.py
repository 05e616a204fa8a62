"""EoMT training: Hungarian matching, mask-classification losses, mask annealing, optimiser and the Lightning module.

``matcher``, ``points`` and ``losses`` are plain torch functions, usable by any query-based head.
"""
