"""Repeated failed logins and unknown tokens are throttled per address (docs/contract.md "API"): 429 and a log line.

In-process, through Django's test client: django-axes keeps its counts in the accounts database, and the
token lockout in this process (logs/api/local_cache.py), which these tests read back through the API's answers.
"""

import re

import pytest
from django.core.management import call_command
from django.test import Client

LIMIT = 3


@pytest.fixture
def lockout_settings(settings):
    settings.AXES_FAILURE_LIMIT = settings.API_FAILED_LOGIN_LIMIT = LIMIT
    settings.API_BAD_TOKEN_LIMIT = LIMIT
    return settings


@pytest.fixture
def account(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("user-1", password="a long local password")


def log_in(password, *, username="user-1", address="198.51.100.1"):
    browser = Client(enforce_csrf_checks=True, REMOTE_ADDR=address)
    page = browser.get("/api-auth/login/").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    return browser.post("/api-auth/login/", {"username": username, "password": password, "csrfmiddlewaretoken": csrf},
                        REMOTE_ADDR=address)


def test_repeated_wrong_passwords_lock_that_username_from_that_address_out_with_a_json_429(lockout_settings, account,
                                                                                           caplog):
    from axes.models import AccessAttempt

    assert [log_in("wrong").status_code for _ in range(LIMIT - 1)] == [200] * (LIMIT - 1)  # the form again
    locked = log_in("wrong")
    assert locked.status_code == 429 and locked.json()["detail"].startswith("Too many failed logins")
    assert int(locked["Retry-After"]) == lockout_settings.API_LOGIN_LOCKOUT_SECONDS
    # Locked out even with the right password; the same account from another address, and another account
    # from this address, may still log in.
    assert log_in("a long local password").status_code == 429
    assert log_in("a long local password", address="198.51.100.2").status_code == 302
    assert AccessAttempt.objects.get(username="user-1", ip_address="198.51.100.1").failures_since_start >= LIMIT
    # Logged for the operator: axes' warning per failure and lockout, at WARNING whatever LOG_LEVEL quiets.
    assert any(record.name.startswith("axes") and record.levelname == "WARNING" for record in caplog.records)


def test_an_operator_unlocks_the_account_with_axes_reset_username(lockout_settings, account):
    for _ in range(LIMIT):
        log_in("wrong")
    assert log_in("a long local password").status_code == 429
    call_command("axes_reset_username", "user-1")
    assert log_in("a long local password").status_code == 302


def test_unknown_tokens_from_one_address_are_refused_429_then_even_a_good_token_from_it(lockout_settings, db):
    from logs.api.accounts import issue_api_token

    token = f"Token {issue_api_token(username='support', all_users=True).key}"
    bad = Client(HTTP_AUTHORIZATION="Token " + "0" * 40, REMOTE_ADDR="198.51.100.9")
    assert [bad.get("/user-logs").status_code for _ in range(LIMIT)] == [401] * LIMIT
    refused = bad.get("/user-logs")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert Client(HTTP_AUTHORIZATION=token, REMOTE_ADDR="198.51.100.9").get("/user-logs").status_code == 429
    assert Client(HTTP_AUTHORIZATION=token, REMOTE_ADDR="198.51.100.10").get("/user-logs/unknown").status_code == 404
