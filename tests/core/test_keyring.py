from __future__ import annotations

import secrets

import pytest

from core.keyring import KeyUnwrapError, unwrap_secret, wrap_secret


def test_wrapped_secret_opens_only_with_its_master_key_and_row() -> None:
    master = secrets.token_bytes(32)
    secret = secrets.token_bytes(32)
    wrapped = wrap_secret(master, key_id=7, tenant_id=1, secret=secret)
    assert secret not in wrapped
    assert unwrap_secret(master, key_id=7, tenant_id=1, wrapped=wrapped) == secret
    with pytest.raises(KeyUnwrapError, match="YIMA_MASTER_KEY"):
        unwrap_secret(secrets.token_bytes(32), key_id=7, tenant_id=1, wrapped=wrapped)
    # Copied onto another key id or another tenant, it does not open.
    with pytest.raises(KeyUnwrapError):
        unwrap_secret(master, key_id=8, tenant_id=1, wrapped=wrapped)
    with pytest.raises(KeyUnwrapError):
        unwrap_secret(master, key_id=7, tenant_id=2, wrapped=wrapped)
