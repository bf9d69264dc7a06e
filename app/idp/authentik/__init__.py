"""The authentik identity provider: see :mod:`app.idp.authentik.provider`."""
