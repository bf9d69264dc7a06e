"""ziti-scim's benchmark suite: ``python -m bench.run [--quick] [--db sqlite|postgres|both]``.

Every number is measured over loopback HTTP against real uvicorn servers running in their own
processes (the server under test, scim2-server's in-memory reference, the controller emulator);
the clients are ``httpx.AsyncClient`` instances in the bench process. See ``bench/README.md``.
"""
