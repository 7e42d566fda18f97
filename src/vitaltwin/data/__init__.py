"""The canonical clinical record: Arrow schemas every adapter produces and every store keeps."""

from vitaltwin.data.schema import OBSERVATIONS, PATIENTS, QUARANTINE, observations_table

__all__ = ["OBSERVATIONS", "PATIENTS", "QUARANTINE", "observations_table"]
