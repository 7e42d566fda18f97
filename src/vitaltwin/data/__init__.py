"""The canonical clinical record: Arrow schemas every adapter produces and every store keeps."""

from vitaltwin.data.schema import (
    OBSERVATIONS,
    PATIENTS,
    QUARANTINE,
    age_years,
    observations_table,
    parse_birth_date,
)

__all__ = [
    "OBSERVATIONS",
    "PATIENTS",
    "QUARANTINE",
    "age_years",
    "observations_table",
    "parse_birth_date",
]
