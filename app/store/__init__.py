"""Durable state, behind typed operations: nothing outside this package sees a table or a SQL statement.

One module per concept: :mod:`~app.store.storage` (SCIM resources and memberships, scim2-server's storage),
:mod:`~app.store.queue` (the dirty queue), :mod:`~app.store.provisioning` (what is known of each user's
identity), :mod:`~app.store.audit`, :mod:`~app.store.settings`, :mod:`~app.store.desired` (what the
reconciler reads of a user), :mod:`~app.store.webhook_state` (IdP event state), :mod:`~app.store.locks`,
:mod:`~app.store.errors`; their types in :mod:`~app.store.types`, which also says how transactions work.
"""
