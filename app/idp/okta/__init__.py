"""The okta identity provider: see :mod:`app.idp.okta.provider`."""
