"""The official Telnyx Python SDK, in strict response-validation mode, against a real Steward.

Every call goes through the SDK, so every response is checked against the SDK's own models;
the assertions then check the values Steward promises (see README, "The API").
"""

from __future__ import annotations

import collections
import itertools
import json
import re
import urllib.request
import uuid

import pytest
import telnyx

FULL_KEY = re.compile(r"^KEY[0-9A-Fa-f]{32}_[0-9A-Fa-f]{64}$")
PUBLIC_KEY_ID = re.compile(r"^KEY[0-9A-Fa-f]{32}$")
PASSWORD = "correct horse battery staple"


def unique_email(prefix: str = "customer") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@customer.example"


def unique_name(prefix: str = "Business") -> str:
    return f"{prefix} {uuid.uuid4().hex[:12]}"


def create_account(client: telnyx.Telnyx, **overrides):
    params = {"business_name": unique_name(), "email": unique_email()}
    params.update(overrides)
    return client.managed_accounts.create(**params).data


def first_error(error: telnyx.APIStatusError) -> dict:
    assert isinstance(error.body, dict), error.body
    return error.body["errors"][0]


def extension(model, field: str):
    """A field Steward adds to the Telnyx shape (kept by the SDK as an extra)."""
    return model.to_dict()[field]


@pytest.fixture
def account(client: telnyx.Telnyx):
    """A fresh non-rollup managed account of the main manager, as returned by create."""
    return create_account(client, password=PASSWORD, rollup_billing=False)


# --- create -------------------------------------------------------------------------------


def test_create_returns_the_new_account_with_its_full_key(client, manager):
    email = unique_email()
    name = unique_name("Larry's Cat Food")

    created = client.managed_accounts.create(
        business_name=name,
        email=email,
        password=PASSWORD,
        managed_account_allow_custom_pricing=False,
        rollup_billing=False,
    ).data

    assert created is not None
    assert created.id
    assert created.record_type == "managed_account"
    assert created.email == email
    assert created.organization_name == name
    assert FULL_KEY.match(created.api_key), created.api_key
    assert created.api_token == ""
    assert created.api_user == manager.email
    assert created.manager_account_id == manager.id
    assert created.managed_account_allow_custom_pricing is False
    assert created.rollup_billing is False
    assert created.balance is not None
    assert created.balance.balance == "0.00"
    assert created.balance.currency == "USD"
    assert extension(created, "status") == "active"
    assert extension(created, "channel_limit") == 0


def test_create_with_rollup_billing_has_no_balance_of_its_own(client):
    created = create_account(client, rollup_billing=True)

    assert created.rollup_billing is True
    assert created.balance is None


def test_create_without_email_generates_one_from_the_managers_email(client, manager):
    local, domain = manager.email.split("@")

    created = client.managed_accounts.create(business_name=unique_name()).data

    assert re.fullmatch(rf"{re.escape(local)}\+[0-9a-f]{{12}}@{re.escape(domain)}", created.email)
    assert client.managed_accounts.retrieve(created.id).data.email == created.email


def test_create_with_an_email_already_in_use_in_any_case_is_rejected(client, account):
    with pytest.raises(telnyx.UnprocessableEntityError) as raised:
        create_account(client, email=account.email.upper())

    assert raised.value.status_code == 422
    assert first_error(raised.value)["code"] == "10012"


# --- retrieve and update ------------------------------------------------------------------


def test_retrieve_shows_only_the_public_identifier_of_the_key(client, account):
    public_id = account.api_key.split("_")[0]

    retrieved = client.managed_accounts.retrieve(account.id).data

    assert retrieved.id == account.id
    assert retrieved.email == account.email
    assert PUBLIC_KEY_ID.match(retrieved.api_key), retrieved.api_key
    assert retrieved.api_key == public_id
    assert retrieved.balance is not None and retrieved.balance.balance == "0.00"


def test_update_turns_on_custom_pricing(client, account):
    updated = client.managed_accounts.update(
        account.id, managed_account_allow_custom_pricing=True
    ).data

    assert updated.id == account.id
    assert updated.managed_account_allow_custom_pricing is True
    assert updated.api_key == account.api_key.split("_")[0]
    retrieved = client.managed_accounts.retrieve(account.id).data
    assert retrieved.managed_account_allow_custom_pricing is True


def test_update_that_would_change_rollup_billing_is_rejected(client, account):
    with pytest.raises(telnyx.UnprocessableEntityError) as raised:
        client.managed_accounts.update(account.id, extra_body={"rollup_billing": True})

    error = first_error(raised.value)
    assert error["code"] == "40003"
    assert error["source"]["pointer"] == "/rollup_billing"
    assert client.managed_accounts.retrieve(account.id).data.rollup_billing is False


def test_update_restating_rollup_billing_is_accepted(client, account):
    updated = client.managed_accounts.update(account.id, extra_body={"rollup_billing": False}).data

    assert updated.rollup_billing is False


# --- list ---------------------------------------------------------------------------------


def test_list_filters_by_email_substring_ignoring_case(client):
    token = uuid.uuid4().hex[:10]
    wanted = create_account(client, email=f"shop-{token}@customer.example")
    create_account(client)

    page = client.managed_accounts.list(filter={"email": {"contains": token.upper()}})

    assert [a.id for a in page.data] == [wanted.id]
    assert page.data[0].email == wanted.email
    assert page.data[0].record_type == "managed_account"


def test_list_filters_by_exact_organization_name(client):
    name = unique_name("Exact Org")
    wanted = create_account(client, business_name=name)
    create_account(client, business_name=name + " Ltd")

    page = client.managed_accounts.list(filter={"organization_name": {"eq": name}})

    assert [a.id for a in page.data] == [wanted.id]
    assert page.data[0].organization_name == name


def test_list_filters_by_disabled_status(fresh_client):
    disabled = create_account(fresh_client)
    create_account(fresh_client)
    fresh_client.managed_accounts.actions.disable(disabled.id)

    page = fresh_client.managed_accounts.list(filter={"status": {"eq": "disabled"}})

    assert [a.id for a in page.data] == [disabled.id]
    assert extension(page.data[0], "status") == "disabled"


def test_list_pages_by_page_size_and_sorts_by_email(fresh_client):
    emails = [unique_email(prefix) for prefix in ("charlie", "alpha", "echo", "bravo", "delta")]
    for email in emails:
        create_account(fresh_client, email=email)

    first = fresh_client.managed_accounts.list(page_size=2, sort="email")
    third = fresh_client.managed_accounts.list(page_size=2, page_number=3, sort="email")

    assert [a.email for a in first.data] == sorted(emails)[:2]
    assert [a.email for a in third.data] == sorted(emails)[4:]
    assert first.meta is not None
    assert (first.meta.page_number, first.meta.total_pages) == (1, 3)


def test_list_is_newest_first_by_default(fresh_client):
    ids = [create_account(fresh_client).id for _ in range(3)]

    page = fresh_client.managed_accounts.list()

    assert [a.id for a in page.data] == list(reversed(ids))


def test_list_shows_cancelled_accounts_only_when_asked(steward, fresh_client):
    kept = create_account(fresh_client)
    cancelled = create_account(fresh_client)
    steward.admin("cancel-account", "--account", cancelled.id)

    default = fresh_client.managed_accounts.list()
    everything = fresh_client.managed_accounts.list(include_cancelled_accounts=True)

    assert [a.id for a in default.data] == [kept.id]
    assert {a.id for a in everything.data} == {kept.id, cancelled.id}


def test_auto_pagination_visits_every_account_exactly_once(fresh_client):
    created = {create_account(fresh_client).id for _ in range(7)}

    seen = [a.id for a in itertools.islice(fresh_client.managed_accounts.list(page_size=2), 50)]

    assert len(seen) == 7
    assert collections.Counter(seen) == collections.Counter(created)


# --- disable and enable -------------------------------------------------------------------


def test_disabled_account_key_is_refused_until_enabled(client, client_for, account):
    own = client_for(account.api_key)
    assert own.balance.retrieve().data.balance == "0.00"

    disabled = client.managed_accounts.actions.disable(account.id).data
    assert disabled.id == account.id
    assert extension(disabled, "status") == "disabled"
    with pytest.raises(telnyx.PermissionDeniedError):
        own.balance.retrieve()

    enabled = client.managed_accounts.actions.enable(account.id, reenable_all_connections=True).data
    assert enabled.id == account.id
    assert extension(enabled, "status") == "active"
    assert own.balance.retrieve().data.currency == "USD"


def test_disable_and_enable_are_idempotent(client, account):
    client.managed_accounts.actions.disable(account.id)
    again = client.managed_accounts.actions.disable(account.id).data
    assert extension(again, "status") == "disabled"

    client.managed_accounts.actions.enable(account.id)
    again = client.managed_accounts.actions.enable(account.id).data
    assert extension(again, "status") == "active"


# --- global outbound channels -------------------------------------------------------------


def test_allocatable_channels_report_the_managers_pool(client):
    data = client.managed_accounts.get_allocatable_global_outbound_channels().data

    assert data is not None
    assert data.allocatable_global_outbound_channels == 20


def test_channel_limit_within_the_pool_is_allocated(fresh_client):
    created = create_account(fresh_client)

    data = fresh_client.managed_accounts.update_global_channel_limit(created.id, channel_limit=5).data

    assert data is not None
    assert data.id == created.id
    assert data.email == created.email
    assert data.channel_limit == 5
    pool = fresh_client.managed_accounts.get_allocatable_global_outbound_channels().data
    assert pool.allocatable_global_outbound_channels == 20
    assert pool.total_global_channels_allocated == 5
    assert extension(fresh_client.managed_accounts.retrieve(created.id).data, "channel_limit") == 5


def test_channel_limit_beyond_the_pool_is_rejected_with_a_pointer(client, account):
    with pytest.raises(telnyx.UnprocessableEntityError) as raised:
        client.managed_accounts.update_global_channel_limit(account.id, channel_limit=21)

    assert first_error(raised.value)["source"]["pointer"] == "/channel_limit"
    assert extension(client.managed_accounts.retrieve(account.id).data, "channel_limit") == 0


# --- balance ------------------------------------------------------------------------------


def test_balance_of_a_new_account_is_zero_dollars(client_for, account):
    data = client_for(account.api_key).balance.retrieve().data

    assert data is not None
    assert data.record_type == "balance"
    assert data.balance == "0.00"
    assert data.currency == "USD"


# --- who may do what ----------------------------------------------------------------------


def test_another_manager_cannot_see_the_account(other_client, account):
    with pytest.raises(telnyx.NotFoundError):
        other_client.managed_accounts.retrieve(account.id)

    listed = other_client.managed_accounts.list(filter={"email": {"eq": account.email}})
    assert listed.data == []


def test_another_manager_cannot_change_the_account(client, other_client, account):
    with pytest.raises(telnyx.NotFoundError):
        other_client.managed_accounts.actions.disable(account.id)

    assert extension(client.managed_accounts.retrieve(account.id).data, "status") == "active"


def test_a_managed_accounts_key_cannot_manage_accounts(client_for, account):
    own = client_for(account.api_key)

    with pytest.raises(telnyx.PermissionDeniedError) as raised:
        own.managed_accounts.list()

    assert raised.value.status_code == 403
    assert first_error(raised.value)["code"] == "10010"


def test_an_unknown_key_is_not_authenticated(client_for):
    stranger = client_for("KEY" + "0" * 32 + "_" + "0" * 64)

    with pytest.raises(telnyx.AuthenticationError) as raised:
        stranger.managed_accounts.list()

    assert raised.value.status_code == 401
    assert first_error(raised.value)["code"] == "10009"


# --- payments -----------------------------------------------------------------------------
# Cards are entered at the sandbox gateway's card entry (a processor's hosted fields in
# production) and saved by token; the Telnyx SDK has no calls for either, so these two steps
# use plain HTTP. Each test uses its own test card: one card tops up at most three accounts a
# day (carding defence).


def post_json(url: str, api_key: str, body: dict) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def save_sandbox_card(steward, api_key: str, number: str, cvc: str = "739") -> str:
    root = steward.base_url.removesuffix("/v2")
    card = {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": cvc}
    token = post_json(f"{root}/sandbox/v1/tokens", api_key, card)["data"]["token"]
    saved = post_json(f"{steward.base_url}/payment_methods", api_key, {"token": token})
    return saved["data"]["id"]


def test_a_stored_payment_transaction_charges_the_card_and_credits_the_balance(
    steward, client_for, account
):
    save_sandbox_card(steward, account.api_key, "4242424242424242")
    own = client_for(account.api_key)

    paid = own.payment.create_stored_payment_transaction(amount="120.00").data

    assert paid is not None
    assert paid.record_type == "transaction"
    assert paid.transaction_processing_type == "stored_payment"
    assert paid.amount_cents == 12000
    assert paid.amount_currency == "USD"
    assert paid.auto_recharge is False
    assert paid.processor_status == "submitted_for_settlement"
    assert paid.created_at is not None
    assert extension(paid, "status") == "succeeded"
    assert own.balance.retrieve().data.balance == "120.00"


def test_a_declined_card_is_refused_with_the_reason_and_moves_nothing(
    steward, client_for, account
):
    save_sandbox_card(steward, account.api_key, "4000000000009995")
    own = client_for(account.api_key)

    with pytest.raises(telnyx.UnprocessableEntityError) as raised:
        own.payment.create_stored_payment_transaction(amount="120.00")

    error = first_error(raised.value)
    assert error["code"] == "40021"
    assert "insufficient funds" in error["detail"]
    assert own.balance.retrieve().data.balance == "0.00"


def test_an_amount_without_cents_is_telnyx_error_10027(client_for, account):
    with pytest.raises(telnyx.UnprocessableEntityError) as raised:
        client_for(account.api_key).payment.create_stored_payment_transaction(amount="120")

    error = first_error(raised.value)
    assert error["code"] == "10027"
    assert error["source"]["pointer"] == "/amount"


def test_auto_recharge_prefs_are_read_and_updated(steward, client_for, account):
    own = client_for(account.api_key)

    initial = own.payment.auto_recharge_prefs.list().data
    save_sandbox_card(steward, account.api_key, "5555555555554444")
    updated = own.payment.auto_recharge_prefs.update(
        enabled=True,
        threshold_amount="10.00",
        recharge_amount="50.00",
        preference="credit_paypal",
        invoice_enabled=False,
    ).data

    assert initial is not None and updated is not None
    assert initial.record_type == "auto_recharge_pref"
    assert initial.enabled is False
    assert initial.preference == "credit_paypal"
    assert updated.enabled is True
    assert (updated.threshold_amount, updated.recharge_amount) == ("10.00", "50.00")
    assert own.payment.auto_recharge_prefs.list().data.recharge_amount == "50.00"


def test_a_rollup_account_has_no_auto_recharge_and_is_told_why(client, client_for):
    rollup = create_account(client, rollup_billing=True)

    with pytest.raises(telnyx.UnprocessableEntityError) as raised:
        client_for(rollup.api_key).payment.auto_recharge_prefs.update(enabled=True)

    assert "rollup billing" in first_error(raised.value)["detail"]
