"""Storage of the canonical record: one interface, DuckDB (default) and PostgreSQL backends."""

from vitaltwin.store._base import TABLES, IngestCounts, Store, StoreInUseError
from vitaltwin.store._sealed import SEALED, ColumnCipher, SealError
from vitaltwin.store.duckdb_store import DuckDBStore
from vitaltwin.store.postgres_store import PostgresStore

__all__ = [
    "SEALED",
    "TABLES",
    "ColumnCipher",
    "DuckDBStore",
    "IngestCounts",
    "PostgresStore",
    "SealError",
    "Store",
    "StoreInUseError",
]
