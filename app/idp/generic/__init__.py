"""The generic identity provider: see :mod:`app.idp.generic.provider`."""
