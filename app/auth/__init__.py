"""Authentication of callers: SCIM bearer tokens (static, hashed) and IdP-issued JWTs (RFC 6750, RFC 9068)."""
