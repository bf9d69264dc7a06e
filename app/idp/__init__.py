"""One home per identity provider: ``app.idp.<kind>`` holds its SCIM quirks, webhook and API adapters."""
