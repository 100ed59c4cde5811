"""Server ids: the batch generator spells the same ULIDs as the ULID library."""

import time

from ulid import ULID

from db.ids import EVENT_PREFIX, hash_api_key_secret, new_api_key_secret, new_ids


def test_batch_ids_are_ulids_of_now_with_their_prefix() -> None:
    before = time.time()
    generated = new_ids(EVENT_PREFIX, 500)
    assert len(set(generated)) == 500
    for server_id in generated:
        assert server_id.startswith("evt_")
        parsed = ULID.from_str(server_id.removeprefix("evt_"))
        # Round trip through the library: the same 128 bits spell the same 26 characters.
        assert str(ULID.from_bytes(parsed.bytes)) == server_id.removeprefix("evt_")
        assert before - 0.01 <= parsed.timestamp <= time.time() + 0.01


def test_api_key_secrets_are_uek_and_43_url_safe_characters() -> None:
    secret = new_api_key_secret()
    assert secret.startswith("uek_")
    body = secret.removeprefix("uek_")
    assert len(body) == 43
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert hash_api_key_secret(secret) == hash_api_key_secret(secret)
    assert len(hash_api_key_secret(secret)) == 64
