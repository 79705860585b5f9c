"""Training methods, one module each; importing this package registers them all."""

from . import agm, dgl, gblend, mmpareto, multiloss, ogm_ge, umt  # noqa: F401
from .base import METHODS, Method, build_method, check_data, check_options

__all__ = ["METHODS", "Method", "build_method", "check_data", "check_options"]
