"""The SCIM 2.0 source adapter (RFC 7643/7644) on scim2-server's sans-IO core."""
