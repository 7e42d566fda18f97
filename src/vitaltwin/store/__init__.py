"""Storage of the canonical record (DuckDB embedded by default)."""

from vitaltwin.store.duckdb_store import DuckDBStore, IngestCounts

__all__ = ["DuckDBStore", "IngestCounts"]
