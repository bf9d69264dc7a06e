"""Durable desired state: SCIM resources, memberships and the dirty marks of the reconciler."""
