"""The portal in a real browser, against the real binary: a manager's day, told in order.

The tests share one server and run in file order; each leaves what the next needs in
`story` (the managed account it made, the credentials it set).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import PASSWORD, Manager, Steward, sign_in

STORY: dict[str, str] = {}

# Every way a rate in force could be written (4 and 9 decimals).
RATES = ["0.0137", "0.0029", "0.00731", "0.0419", "7.13"]
FORBIDDEN = RATES + [Decimal(r).quantize(Decimal("0.000000001")).to_eng_string() for r in RATES]


def shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def record_costs() -> list[str]:
    """The cost of each usage event ingested below, as a response could carry it."""
    per_minute = Decimal("0.0137")
    billed_s = 30 + -(-(61 - 30) // 6) * 6  # 30 s first block, then 6 s blocks: 66 s
    costs = [per_minute * billed_s / 60, Decimal("0.00731") * 3, Decimal("0.0419") * 2]
    forms = []
    for cost in costs:
        nine = cost.quantize(Decimal("0.000000001"), rounding=ROUND_HALF_UP)
        forms += [str(nine), str(nine).rstrip("0")]
    return forms


def test_a_manager_signs_in_and_creates_managed_accounts(
    page: Page, browser: Browser, steward: Steward, manager: Manager, screenshots: Path
) -> None:
    page.goto(steward.url("/"))
    expect(page).to_have_url(re.compile(r"/sign-in\?next="))
    shot(page, screenshots, "01-sign-in")
    sign_in(page, steward, manager.email)
    expect(page).to_have_url(steward.url("/dashboard"))
    expect(page.get_by_role("heading", name="Reseller Ltd")).to_be_visible()
    shot(page, screenshots, "02-dashboard-manager")

    # Without an email or password: a temporary email, and no sign-in yet.
    page.get_by_role("link", name="Managed accounts").click()
    page.get_by_role("link", name="Create a managed account").click()
    page.get_by_label("Business name").fill("Larry's Cat Food")
    shot(page, screenshots, "03-create-managed-account")
    page.get_by_role("button", name="Create").click()
    flash = page.locator(".flash-ok")
    expect(flash).to_contain_text("Its temporary email is")
    temporary = re.search(r"temporary email is (\S+@\S+?)\. ", flash.inner_text())
    assert temporary, flash.inner_text()
    STORY["temporary_email"] = temporary.group(1)
    STORY["customer_id"] = page.url.rsplit("/", 1)[1]
    expect(page.locator("body")).to_contain_text("No password yet")

    other = browser.new_context()
    stranger = other.new_page()
    sign_in(stranger, steward, STORY["temporary_email"], "any password at all")
    expect(stranger.get_by_role("alert")).to_contain_text("no password yet")
    other.close()

    # With rollup billing, warned that it is for good.
    page.goto(steward.url("/managed-accounts/new"))
    page.get_by_label("Business name").fill("Rollup Reseller Customer")
    page.get_by_label("Email (optional", exact=False).fill(f"rollup-{uuid.uuid4().hex[:8]}@customer.example")
    expect(page.locator("#rollup-warning")).to_contain_text("cannot be changed later")
    page.get_by_label("Rollup billing").check()
    page.get_by_role("button", name="Create").click()
    expect(page.locator("body")).to_contain_text("Rollup: its spend is charged to your balance")
    page.goto(steward.url("/managed-accounts"))
    expect(page.locator("#managed-count")).to_have_text("2 of 1000")
    shot(page, screenshots, "04-managed-accounts")


def test_disable_and_enable_with_confirmation(
    page: Page, browser: Browser, steward: Steward, manager: Manager, screenshots: Path
) -> None:
    sign_in(page, steward, manager.email)
    page.goto(steward.url("/managed-accounts"))
    row = page.locator(f"#account-{STORY['customer_id']}")
    page.evaluate("window.stillTheSamePage = true")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Disable").click()
    expect(row.locator(".status")).to_have_text("disabled")
    expect(page.locator(".flash-ok")).to_contain_text("is disabled")
    # Enhanced: the row changed in place, the page was not reloaded.
    assert page.evaluate("window.stillTheSamePage") is True
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Enable").click()
    expect(row.locator(".status")).to_have_text("disabled")

    # Without JavaScript, the server asks on a page of its own.
    plain = browser.new_context(java_script_enabled=False)
    nojs = plain.new_page()
    sign_in(nojs, steward, manager.email)
    nojs.goto(steward.url("/managed-accounts"))
    nojs.locator(f"#account-{STORY['customer_id']}").get_by_role("button", name="Enable").click()
    expect(nojs.get_by_role("heading", name="Please confirm")).to_be_visible()
    shot(nojs, screenshots, "05-confirm-without-javascript")
    nojs.get_by_role("button", name="Yes, go ahead").click()
    expect(nojs.locator(f"#account-{STORY['customer_id']} .status")).to_have_text("active")
    plain.close()


def test_acting_as_a_managed_account(
    page: Page, steward: Steward, manager: Manager, screenshots: Path
) -> None:
    customer = STORY["customer_id"]
    occurred = (datetime.now(timezone.utc) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = [
        {"id": f"pv-{uuid.uuid4()}", "account_id": customer, "product": "voice_outbound",
         "destination": "+442079460000", "quantity": 61, "occurred_at": occurred},
        {"id": f"ps-{uuid.uuid4()}", "account_id": customer, "product": "sms_outbound",
         "destination": "+447400123456", "quantity": 3, "occurred_at": occurred},
        {"id": f"pm-{uuid.uuid4()}", "account_id": customer, "product": "mms_outbound",
         "destination": "+14155550100", "quantity": 2, "occurred_at": occurred},
    ]
    answer = steward.api("POST", "/v2/usage_events", steward.ingest_key, {"events": events})
    assert [e["status"] for e in answer["data"]] == ["accepted"] * 3, answer

    sign_in(page, steward, manager.email)
    page.goto(steward.url("/managed-accounts"))
    page.locator(f"#account-{customer}").get_by_role("button", name="Log in as").click()
    banner = page.locator(".acting-banner")
    expect(banner).to_contain_text("You are acting as Larry's Cat Food")
    expect(page.get_by_role("link", name="Pricing")).to_have_count(0)
    shot(page, screenshots, "06-acting-dashboard")

    # No price on any page the managed account itself would see.
    forbidden = FORBIDDEN + record_costs()
    pages = ["/dashboard", "/billing", "/api-keys", "/settings", "/audit-log"]
    pages += [f"/usage?product={p}&date_range=this_month"
              for p in ("sip-trunking", "messaging", "number-rental")]
    for path in pages:
        page.goto(steward.url(path))
        expect(banner).to_be_visible()
        html = page.content()
        leaks = [n for n in forbidden if n in html]
        assert not leaks, f"{path} shows {leaks}"
    assert page.goto(steward.url("/pricing")).status == 404
    page.goto(steward.url("/usage?product=messaging&date_range=this_month"))
    expect(page.locator("table").first).to_contain_text("parts")
    shot(page, screenshots, "07-acting-usage")

    # General settings: a real email and a first password.
    new_email = f"larry-{uuid.uuid4().hex[:8]}@catfood.example"
    page.goto(steward.url("/settings"))
    page.get_by_label("Email (used to sign in)").fill(new_email)
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash-ok")).to_contain_text("saved")
    page.get_by_label("New password (8 to 256").fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    expect(page.locator(".flash-ok")).to_contain_text("The password is set")
    shot(page, screenshots, "08-acting-settings")
    STORY["customer_email"] = new_email

    # An API key for it, shown once, with a copy button.
    page.goto(steward.url("/api-keys"))
    page.get_by_role("button", name="Create an API key").click()
    key = page.locator("#minted-key").input_value()
    assert key.startswith("KEY"), key
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    shot(page, screenshots, "09-acting-api-key")
    assert steward.api("GET", "/v2/account", key)["data"]["email"] == new_email

    # The audit log names the manager.
    page.goto(steward.url("/audit-log"))
    rows = page.locator("table.audit tbody tr")
    for change in ("api_key.create", "password.set", "account.update"):
        row = rows.filter(has_text=change).first
        expect(row).to_contain_text("account_manager")
        expect(row).to_contain_text(manager.email)
    shot(page, screenshots, "10-acting-audit-log")

    # Its cards and top-ups, by its manager: a sandbox test card, then a top-up.
    page.goto(steward.url("/billing"))
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2031")
    page.get_by_label("Security code").fill("123")
    page.get_by_role("button", name="Save card").click()
    expect(page.locator(".flash-ok")).to_contain_text("ending 4242 is saved")
    page.get_by_label("Amount in dollars").fill("20.00")
    page.get_by_role("button", name="Top up").click()
    expect(page.locator(".flash-ok")).to_contain_text("$20.00 was charged")
    expect(page.locator("#top-ups")).to_contain_text("succeeded")
    shot(page, screenshots, "10b-acting-billing")
    html = page.content()
    assert not [n for n in forbidden if n in html], "the billing page shows a price"

    banner.get_by_role("button", name="Return to your account").click()
    expect(page.locator(".acting-banner")).to_have_count(0)
    expect(page.locator(".flash-ok")).to_contain_text("back in your own account")


def test_a_managed_account_downloads_its_usage_without_cost(
    page: Page, steward: Steward, screenshots: Path, tmp_path: Path
) -> None:
    sign_in(page, steward, STORY["customer_email"])
    expect(page).to_have_url(steward.url("/dashboard"))
    expect(page.get_by_role("link", name="Pricing")).to_have_count(0)
    expect(page.get_by_role("columnheader", name="Cost")).to_have_count(0)
    page.get_by_role("link", name="Usage", exact=True).click()
    page.get_by_label("Product", exact=True).select_option("messaging")
    page.get_by_role("button", name="Show report").click()
    expect(page.get_by_role("checkbox", name="cost")).to_have_count(0)
    shot(page, screenshots, "11-managed-usage")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    path = tmp_path / "usage.csv"
    download.value.save_as(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "date,count,parts", lines
    assert any(line.endswith(",2,5") for line in lines[1:]), lines
    assert "cost" not in path.read_text()


def test_sign_in_backs_off_and_forged_forms_change_nothing(
    page: Page, steward: Steward, manager: Manager, screenshots: Path
) -> None:
    victim = f"victim-{uuid.uuid4().hex[:8]}@reseller.example"
    steward.admin("create-account", "--email", victim, "--business-name", "Victim Co",
                  "--password", PASSWORD)
    for _ in range(5):
        sign_in(page, steward, victim, "wrong password")
        expect(page.get_by_role("alert")).to_contain_text("not right")
    sign_in(page, steward, victim)
    expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
    shot(page, screenshots, "12-sign-in-backoff")

    sign_in(page, steward, manager.email)
    page.goto(steward.url("/settings"))
    subject = page.locator('input[name="subject"]').first.get_attribute("value")
    forged = page.request.post(
        steward.url("/settings/profile"),
        form={"csrf_token": "0" * 64, "subject": subject or "",
              "email": "attacker@evil.example", "organization_name": "Owned"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "nothing was changed" in forged.text()
    page.goto(steward.url("/settings"))
    expect(page.get_by_label("Email (used to sign in)")).to_have_value(manager.email)


def test_the_dashboard_fits_a_phone(browser: Browser, steward: Steward, manager: Manager,
                                    screenshots: Path) -> None:
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    sign_in(page, steward, manager.email)
    page.goto(steward.url("/dashboard"))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px screen"
    shot(page, screenshots, "13-dashboard-phone")
    phone.close()
