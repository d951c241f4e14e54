"""What `imgrec web` says about its keys as it starts."""

from __future__ import annotations

from imgrec.settings import Settings
from imgrec.web import key_warnings


def test_the_client_s_key_variable_on_a_service_is_said_at_its_start():
    (warning,) = key_warnings(Settings(api_keys=""), {"IMGREC_API_KEY": "k1"})
    assert "IMGREC_API_KEY is a client's key" in warning and "IMGREC_API_KEYS" in warning
    assert key_warnings(Settings(api_keys="k1"), {"IMGREC_API_KEY": "k1"}) == []
    assert key_warnings(Settings(), {}) == []


def test_no_keys_on_an_open_address_is_said_too():
    (warning,) = key_warnings(Settings(host="0.0.0.0"), {})
    assert warning.startswith("listening on 0.0.0.0 without API keys")
