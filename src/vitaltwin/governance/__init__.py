"""Security and governance: who may connect (directory, tokens), who may see what (roles,
scopes, patient assignment), what was done (the audit trail), with the keys behind them, and
de-identified research exports, and TLS contexts.

The library holds no HTTP: :mod:`vitaltwin.service.access` applies these to the service's
routes. Design and threat model: docs/security.md.
"""

from vitaltwin.governance._audit import (
    AuditError,
    AuditRecord,
    AuditTrail,
    TrailCheck,
    audit_event,
    read_trail,
    verify_trail,
)
from vitaltwin.governance._deid import (
    AGE_CAP,
    RESTRICTED_ZIP3,
    RULES,
    Deidentifier,
    KAnonymity,
    ResearchExport,
    export_research,
    k_anonymity,
    scrub,
    zip3,
)
from vitaltwin.governance._directory import (
    MIN_PASSWORD,
    Client,
    Device,
    Directory,
    DirectoryError,
    User,
)
from vitaltwin.governance._envelope import (
    ENVELOPE_STATE,
    STORE_KEY,
    encrypt_store,
    is_encrypted,
    rotate_store_data_key,
    rotate_store_key,
)
from vitaltwin.governance._keys import (
    EnvironmentKeys,
    FileKeys,
    KeyProvider,
    KeyProviderError,
    public_key,
    signing_key,
)
from vitaltwin.governance._roles import ROLES, SCOPE, Identity, Role, granted, identity_for
from vitaltwin.governance._tls import client_context, development_certificate, server_context
from vitaltwin.governance._tokens import (
    ASSERTION_TYPE,
    TokenError,
    TokenPair,
    TokenService,
)

__all__ = [
    "AGE_CAP",
    "ASSERTION_TYPE",
    "ENVELOPE_STATE",
    "MIN_PASSWORD",
    "RESTRICTED_ZIP3",
    "ROLES",
    "RULES",
    "SCOPE",
    "STORE_KEY",
    "AuditError",
    "AuditRecord",
    "AuditTrail",
    "Client",
    "Deidentifier",
    "Device",
    "Directory",
    "DirectoryError",
    "EnvironmentKeys",
    "FileKeys",
    "Identity",
    "KAnonymity",
    "KeyProvider",
    "KeyProviderError",
    "ResearchExport",
    "Role",
    "TokenError",
    "TokenPair",
    "TokenService",
    "TrailCheck",
    "User",
    "audit_event",
    "client_context",
    "development_certificate",
    "encrypt_store",
    "export_research",
    "granted",
    "identity_for",
    "is_encrypted",
    "k_anonymity",
    "public_key",
    "read_trail",
    "rotate_store_data_key",
    "rotate_store_key",
    "scrub",
    "server_context",
    "signing_key",
    "verify_trail",
    "zip3",
]
