"""The zitadel identity provider: see :mod:`app.idp.zitadel.provider`."""
