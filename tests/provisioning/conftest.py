"""The stack fixtures live in :mod:`tests.support.stack` (a plugin every test folder can use)."""

from tests.paths import SPEC
from tests.support.stack import ADMIN_PASSWORD, TOKEN, Stack, add_signer, make_stack_config

__all__ = ["ADMIN_PASSWORD", "SPEC", "TOKEN", "Stack", "add_signer", "make_stack_config"]
