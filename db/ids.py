"""Server ids (`bus_<ULID>`, `evt_<ULID>`, …) and API key secrets (SPEC §1)."""

import hashlib
import secrets

from ulid import ULID

BUSINESS_PREFIX = "bus_"
API_KEY_PREFIX = "key_"
CUSTOMER_PREFIX = "cus_"
EVENT_PREFIX = "evt_"
METER_PREFIX = "mtr_"
API_KEY_SECRET_PREFIX = "uek_"


def new_id(prefix: str) -> str:
    return f"{prefix}{ULID()}"


def new_api_key_secret() -> str:
    # 32 random bytes are 43 url-safe base64 characters.
    return API_KEY_SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_api_key_secret(secret: str) -> str:
    """Only this digest is stored; the secret itself is shown once, at creation."""
    return hashlib.sha256(secret.encode()).hexdigest()
