"""The entra identity provider: see :mod:`app.idp.entra.provider`."""
