"""vitaltwin."""
