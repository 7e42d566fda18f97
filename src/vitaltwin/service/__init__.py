"""The clinical service side: what listens, stores, exports and (next) streams, above the
library."""

from vitaltwin.service.export import export_fhir
from vitaltwin.service.mllp import MllpServer

__all__ = ["MllpServer", "export_fhir"]
