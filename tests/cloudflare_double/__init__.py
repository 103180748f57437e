"""A local double of the Cloudflare API (see README.md)."""

from .server import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_TOKEN,
    DEFAULT_TUNNEL_ID,
    DEFAULT_ZONE_ID,
    CloudflareDouble,
    Fault,
    State,
    default_state,
)

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_TOKEN",
    "DEFAULT_TUNNEL_ID",
    "DEFAULT_ZONE_ID",
    "CloudflareDouble",
    "Fault",
    "State",
    "default_state",
]
