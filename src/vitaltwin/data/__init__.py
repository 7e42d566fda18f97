"""The canonical clinical record (Arrow schemas every adapter produces and every store keeps) and
the clinical vocabulary every layer reads codes, units and plausible ranges from."""

from vitaltwin.data.schema import (
    OBSERVATIONS,
    PATIENTS,
    QUARANTINE,
    Record,
    age_years,
    observations_table,
    parse_birth_date,
)
from vitaltwin.data.vocabulary import CODES, HOURLY_VARIABLES, Code, by_name, code

__all__ = [
    "CODES",
    "HOURLY_VARIABLES",
    "OBSERVATIONS",
    "PATIENTS",
    "QUARANTINE",
    "Code",
    "Record",
    "age_years",
    "by_name",
    "code",
    "observations_table",
    "parse_birth_date",
]
