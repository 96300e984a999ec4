"""AYLA: a power-law transformation of the loss, L = sign(l)·|l|ⁿ, in front of any PyTorch optimizer."""

from ayla.transform import ayla_exponent, ayla_factor, ayla_loss, check_exponents
from ayla.wrapper import AYLA, find_ayla

__all__ = ["AYLA", "find_ayla", "ayla_exponent", "ayla_factor", "ayla_loss", "check_exponents"]
__version__ = "0.1.0"
