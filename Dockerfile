# syntax=docker/dockerfile:1
#
# ziti-scim: SCIM 2.0 service provider that provisions OpenZiti identities.
#
#   docker build -t ziti-scim:0.1.0 .
#   docker run --rm -p 8080:8080 -v "$PWD/config.toml:/etc/ziti-scim/config.toml:ro" \
#       --env-file ziti-scim.env ziti-scim:0.1.0
#
# Secrets never go into the image or the config file: the controller password comes from password_env /
# password_file, bearer tokens from ZITI_SCIM_SOURCE_<NAME>_TOKENS (see app/config.py).
# The same image runs the other commands, e.g. `docker run ... ziti-scim:0.1.0 doctor`.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ZITI_SCIM_CONFIG=/etc/ziti-scim/config.toml

# A fixed numeric uid, so that Kubernetes runAsNonRoot can verify it (deploy/kubernetes/deployment.yaml).
RUN groupadd --system --gid 10001 ziti-scim \
 && useradd --system --uid 10001 --gid ziti-scim --no-create-home --home-dir /var/lib/ziti-scim \
        --shell /usr/sbin/nologin ziti-scim \
 && install -d -o ziti-scim -g ziti-scim -m 0750 /var/lib/ziti-scim \
 && install -d -m 0755 /etc/ziti-scim

WORKDIR /opt/ziti-scim
COPY pyproject.toml README.md* ./
COPY app ./app
# The controller emulator ships in the same distribution (`ziti-scim demo` / `emulator` in the image).
COPY ziti_emulator ./ziti_emulator
COPY schemas ./schemas
# The package reads schemas/ (SCIM discovery, mapping presets) from beside app/, so it is installed in
# place (editable) from this root-owned, read-only tree; the smoke test fails the build if a preset is missing.
RUN pip install -e . \
 && python -c "from app.mapping import available_presets, load_mapping; [load_mapping({'preset': p}) for p in available_presets()]"

USER 10001:10001
WORKDIR /var/lib/ziti-scim
VOLUME ["/var/lib/ziti-scim"]
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

ENTRYPOINT ["ziti-scim"]
CMD ["serve", "--config", "/etc/ziti-scim/config.toml"]
