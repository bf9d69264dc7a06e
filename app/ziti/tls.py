"""TLS client context for the controller.

Controllers serve a certificate issued by the network's own PKI (controller-api.md §1 and §9: the Helm chart
publishes it as ConfigMap ``<fullname>-ctrl-plane-cas``, key ``ctrl-plane-cas.crt``; it can also be fetched
from ``/.well-known/est/cacerts``), so verification is against a configured CA bundle. The context is built
here rather than with httpx's ``verify=<path>`` / ``cert=`` arguments, which httpx 0.28 deprecates.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from app.ziti.session import CertCredentials

__all__ = ["build_ssl_context"]


def build_ssl_context(
    *,
    ca_bundle: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    client_cert: CertCredentials | None = None,
) -> ssl.SSLContext:
    """Return a client :class:`ssl.SSLContext`.

    * ``ca_bundle``: PEM file (or directory of hashed certs) with the controller's CA; None means the
      system trust store.
    * ``insecure``: no certificate or host-name verification (the caller logs the warning).
    * ``client_cert``: certificate chain + key presented for ``method=cert``.

    Unreadable files raise :class:`ValueError` naming the file, never the key password.
    """
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca_bundle is not None:
        path = Path(ca_bundle)
        try:
            if path.is_dir():
                ctx = ssl.create_default_context(capath=str(path))
            else:
                ctx = ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load Ziti controller CA bundle {str(path)!r}: {exc}") from exc
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        try:
            ctx.load_cert_chain(
                certfile=os.fspath(client_cert.cert_file),
                keyfile=os.fspath(client_cert.key_file),
                password=client_cert.key_password,
            )
        except (OSError, ssl.SSLError) as exc:
            # str(exc) from OpenSSL never contains the password.
            raise ValueError(
                f"cannot load Ziti client certificate {os.fspath(client_cert.cert_file)!r} / key "
                f"{os.fspath(client_cert.key_file)!r}: {exc}"
            ) from exc
    return ctx
