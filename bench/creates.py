"""A quick look at the provisioned write path: N SCIM creates (8 clients) converged on the emulator.

    python -m bench.creates [N]            # default 1,000 users, ziti-scim on SQLite

Starts the emulator and ziti-scim (source kind authentik, ``max_in_flight`` 8) as section 5 does, sends N
``POST /Users`` with 8 clients, waits until every identity exists, then sends N (at most 500) PATCHes of
``displayName`` (each converged, no controller call: the identity does not change) and GETs. Prints
users converged per second (from the first request to the last identity), the server's CPU per user
(process user+system time, the steadiest figure on a shared machine) and controller calls per user.
Section 5 (``--only e2e``) is the measurement of record; this one isolates the create path at a size
between its quick (200) and full (5,000) runs.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bench.common import dumps, external_id, replace_display_body
from bench.load import run_load
from bench.procs import Workdir
from bench.s5_e2e import calls, post_users, start_stack


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    count = int(args[0]) if args else 1000
    workdir = Workdir()
    stack = start_stack("sqlite", workdir, "creates")
    ctl = stack.controller
    server = stack.target.server
    try:
        ctl.expect({external_id("e", i): [] for i in range(count)})
        ctl.reset()
        cpu = server.cpu()
        began = time.perf_counter()
        result, ids = asyncio.run(post_users(stack, "e", count, 8))
        scim_cpu = server.cpu() - cpu
        done, state = ctl.wait_converged(timeout=600)
        total, _, _ = calls(ctl.wait_quiet(quiet=1.0))
        cpu = server.cpu() - cpu
        rate = f"{count / (done - began):.0f}" if done else f"NOT converged ({state['matched']} of {count})"
        print(
            f"create: {count} users, SCIM {result.throughput:.0f} req/s, converged {rate} users/s, "
            f"server CPU {cpu / count * 1000:.2f} ms/user ({scim_cpu / count * 1000:.2f} while the creates "
            f"were sent), {total / count:.2f} controller calls/user"
        )
        n = min(count, 500)
        cpu = server.cpu()
        patched = asyncio.run(
            run_load(
                stack.target.base,
                stack.target.headers,
                lambda i: ("PATCH", f"/Users/{ids[i]}", dumps(replace_display_body(f"p {i}"))),
                n,
                8,
            )
        )
        ctl.wait_quiet(quiet=1.0)
        print(
            f"patch displayName: {patched.throughput:.0f} req/s, "
            f"server CPU {(server.cpu() - cpu) / n * 1000:.2f} ms/request (converge included)"
        )
        cpu = server.cpu()
        got = asyncio.run(
            run_load(stack.target.base, stack.target.headers, lambda i: ("GET", f"/Users/{ids[i]}", None), n, 8)
        )
        print(f"get: {got.throughput:.0f} req/s, server CPU {(server.cpu() - cpu) / n * 1000:.2f} ms/request")
    finally:
        stack.stop()
        workdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
