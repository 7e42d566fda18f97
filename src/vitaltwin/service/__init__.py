"""The clinical service side: what listens, stores and (next) streams, above the library."""

from vitaltwin.service.mllp import MllpServer

__all__ = ["MllpServer"]
