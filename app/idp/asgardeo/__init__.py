"""The asgardeo identity provider: see :mod:`app.idp.asgardeo.provider`."""
