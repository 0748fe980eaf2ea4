"""Invoices and charges through the official SDK, in strict mode.

The server runs on the real clock, so the month these tests invoice is a past one, closed
with the operator verb (`steward admin close-invoices`); the charges cover today's usage.
"""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import telnyx

PRICES = """product,prefix,rate,initial_increment_s,subsequent_increment_s
voice_outbound,,0.05,1,1
sms_outbound,,0.004,,
number_rental,,1.00,,
"""


def post_usage(steward, ingest_key: str, events: list[dict]) -> list[str]:
    """Sends usage events as a network element does (not an SDK call) and returns statuses."""
    request = urllib.request.Request(
        steward.base_url + "/usage_events",
        data=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return [result["status"] for result in json.load(response)["data"]]


def last_month() -> str:
    first = datetime.datetime.now(datetime.timezone.utc).date().replace(day=1)
    return (first - datetime.timedelta(days=1)).strftime("%Y-%m")


@pytest.fixture(scope="module")
def billed(steward, tmp_path_factory):
    """A manager with a managed account paying for itself and a rollup account, usage today,
    and last month closed for the manager and the managed account."""
    prices = Path(tmp_path_factory.mktemp("prices")) / "prices.csv"
    prices.write_text(PRICES)
    steward.admin(
        "import-price-list", "--file", str(prices), "--name", "sdk invoices",
        "--platform-default", "--effective-from", "2020-01-01T00:00:00Z",
    )
    ingest_key = steward.admin("create-ingest-key")["api_key"]
    manager = steward.create_manager()
    with steward.client(manager.api_key) as sdk:
        own = sdk.managed_accounts.create(business_name="Invoices Own").data
        rollup = sdk.managed_accounts.create(business_name="Invoices Rollup", rollup_billing=True).data
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    when = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    event = lambda account, product, destination, quantity: {  # noqa: E731
        "id": str(uuid.uuid4()), "account_id": account, "product": product,
        "destination": destination, "quantity": quantity, "occurred_at": when,
    }
    statuses = post_usage(steward, ingest_key, [
        event(manager.id, "voice_outbound", "+442079460000", 60),  # 0.05
        event(rollup.id, "number_rental", "+14155550123", 1),  # 1.00, on the manager
        event(own.id, "sms_outbound", "+442079460000", 2),  # 0.008
    ])
    assert statuses == ["accepted"] * 3
    period = last_month()
    closed = {
        who: steward.admin("close-invoices", "--period", period, "--account", account)
        for who, account in [("manager", manager.id), ("own", own.id)]
    }
    return {"manager": manager, "own": own, "rollup": rollup, "period": period, "closed": closed}


def test_invoices_list_and_link(steward, billed):
    with steward.client(billed["manager"].api_key) as sdk:
        invoices = list(sdk.invoices.list(sort="-period_start", page_size=1))
        assert len(invoices) == 1
        invoice = invoices[0]
        assert invoice.invoice_id == billed["closed"]["manager"]["id"]
        assert invoice.period_start.strftime("%Y-%m") == billed["period"]
        assert invoice.paid is True
        linked = sdk.invoices.retrieve(invoice.invoice_id, action="link").data
        assert linked.invoice_id == invoice.invoice_id
        assert linked.period_end == invoice.period_end
        # The link works without a key, as a browser download would.
        with urllib.request.urlopen(linked.download_url, timeout=10) as response:
            assert response.headers["Content-Type"] == "application/pdf"
            assert response.read().startswith(b"%PDF")
        plain = sdk.invoices.retrieve(invoice.invoice_id, action="json").data
        assert plain.download_url is None
        # The manager reads its managed account's invoice too.
        own = sdk.invoices.retrieve(billed["closed"]["own"]["id"]).data
        assert own.invoice_id == billed["closed"]["own"]["id"]
    with pytest.raises(urllib.error.HTTPError) as tampered:
        urllib.request.urlopen(linked.download_url.replace("signature=", "signature=00"), timeout=10)
    assert tampered.value.code == 403


def test_a_rollup_account_has_no_invoices_and_others_see_none_of_ours(steward, billed, other_client):
    with steward.client(billed["rollup"].api_key) as sdk:
        with pytest.raises(telnyx.PermissionDeniedError) as refused:
            sdk.invoices.list()
    assert "manager's invoice" in refused.value.body["errors"][0]["detail"]
    with pytest.raises(telnyx.NotFoundError):
        other_client.invoices.retrieve(billed["closed"]["manager"]["id"], action="link")


def test_charges_summary_of_today(steward, billed):
    today = datetime.datetime.now(datetime.timezone.utc).date()
    with steward.client(billed["manager"].api_key) as sdk:
        summary = sdk.charges_summary.retrieve(
            start_date=today, end_date=today + datetime.timedelta(days=1)
        ).data
    assert summary.user_id == billed["manager"].id
    assert summary.currency == "USD"
    assert summary.start_date == today
    by_alias = {line.alias: line for line in summary.summary.lines}
    assert by_alias["voice_outbound"].type == "simple"
    assert by_alias["voice_outbound"].amount == "0.05"
    rental = by_alias["number_rental"]
    assert rental.type == "comparative"
    assert rental.new_this_month.quantity == 1
    assert rental.new_this_month.mrc == "1.00"
    assert summary.total.grand_total == "1.05"
    with steward.client(billed["own"].api_key) as sdk:
        own = sdk.charges_summary.retrieve(
            start_date=today, end_date=today + datetime.timedelta(days=1)
        ).data
    assert own.total.other == "0.01"
    assert "rate" not in json.dumps(own.model_dump(mode="json"))


def test_charges_breakdown_per_number(steward, billed):
    today = datetime.datetime.now(datetime.timezone.utc).date()
    with steward.client(billed["manager"].api_key) as sdk:
        breakdown = sdk.charges_breakdown.retrieve(start_date=today).data
        assert breakdown.end_date > today
        [number] = breakdown.results
        assert number.tn == "+14155550123"
        assert number.service_owner_user_id == billed["rollup"].id
        assert number.services[0].cost == "1.00"
        assert number.services[0].cost_type == "MRC"
        csv = sdk.charges_breakdown.with_raw_response.retrieve(start_date=today, format="csv").text()
    assert csv.splitlines()[0].startswith("tn,charge_type")
    with steward.client(billed["own"].api_key) as sdk:
        with pytest.raises(telnyx.PermissionDeniedError) as refused:
            sdk.charges_breakdown.retrieve(start_date=today)
    assert "managed by its manager" in refused.value.body["errors"][0]["detail"]


def test_bad_ranges_are_refused(steward, billed):
    today = datetime.datetime.now(datetime.timezone.utc).date()
    with steward.client(billed["manager"].api_key) as sdk:
        with pytest.raises(telnyx.BadRequestError) as too_long:
            sdk.charges_summary.retrieve(start_date=today, end_date=today + datetime.timedelta(days=40))
    assert too_long.value.body["errors"][0]["source"] == {"parameter": "end_date"}
