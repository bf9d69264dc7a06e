"""Level-triggered reconciliation: converge each dirty user's OpenZiti identity to its desired state."""
