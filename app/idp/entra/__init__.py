"""The entra identity provider (see :mod:`app.idp.registry`)."""
