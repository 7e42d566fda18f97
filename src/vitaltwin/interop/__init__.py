"""Adapters between outside formats (PhysioNet, FHIR, HL7 v2) and the canonical record."""
