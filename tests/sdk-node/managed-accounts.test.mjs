// The official Telnyx Node SDK against a real Steward.
//
// Every call goes through the SDK. The Node SDK does no response validation of its own, so
// every account it returns is checked here against the SDK's own type declarations (the
// required fields of `ManagedAccount` / `ManagedAccountListResponse`) before the assertions
// check the values Steward promises (see README, "The API"). Mirrors tests/sdk/test_sdk.py.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import Telnyx from 'telnyx';

import { MANAGER_CHANNEL_POOL, Steward } from './steward.mjs';

const FULL_KEY = /^KEY[0-9A-Fa-f]{32}_[0-9A-Fa-f]{64}$/;
const PUBLIC_KEY_ID = /^KEY[0-9A-Fa-f]{32}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const MONEY = /^-?\d+\.\d{2}$/;
const STATUSES = ['active', 'disabled', 'cancelled', 'blocked'];
const PASSWORD = 'correct horse battery staple';

// --- fixtures -----------------------------------------------------------------------------

let steward;
let manager; // the main manager, created before the server starts
let client; // the SDK as the main manager
let otherClient; // the SDK as a second manager, for isolation tests

before(async () => {
  steward = new Steward();
  manager = await steward.createManager();
  await steward.start();
  client = steward.client(manager.api_key);
  otherClient = steward.client((await steward.createManager()).api_key);
});

after(async () => {
  if (!steward) return;
  const { exit, log } = await steward.stop();
  assert.ok(
    exit && exit.code === 0,
    `steward serve did not stop cleanly on SIGTERM (${JSON.stringify(exit)}):\n${log}`,
  );
});

/** The SDK for a brand-new manager with no managed accounts yet. */
async function freshClient() {
  return steward.client((await steward.createManager()).api_key);
}

// --- helpers ------------------------------------------------------------------------------

const hex = (n) => randomUUID().replaceAll('-', '').slice(0, n);
const uniqueEmail = (prefix = 'customer') => `${prefix}-${hex(12)}@customer.example`;
const uniqueName = (prefix = 'Business') => `${prefix} ${hex(12)}`;

function assertString(object, field) {
  assert.equal(typeof object[field], 'string', `${field} should be a string: ${JSON.stringify(object)}`);
}

function assertTimestamps(object) {
  for (const field of ['created_at', 'updated_at']) {
    assertString(object, field);
    assert.match(object[field], ISO_8601, field);
    assert.ok(!Number.isNaN(Date.parse(object[field])), `${field} parses`);
  }
  assert.ok(Date.parse(object.created_at) <= Date.parse(object.updated_at), 'created_at <= updated_at');
}

function assertBalanceShape(balance) {
  assert.ok(balance && typeof balance === 'object', `balance object: ${JSON.stringify(balance)}`);
  assert.equal(balance.record_type, 'balance');
  for (const field of ['balance', 'credit_limit', 'available_credit']) {
    assertString(balance, field);
    assert.match(balance[field], MONEY, field);
  }
  assert.equal(balance.currency, 'USD');
}

/** Fields the SDK's `ManagedAccountListResponse` declares (required ones must be there). */
function assertListedAccountShape(account) {
  assert.ok(account && typeof account === 'object', `account object: ${JSON.stringify(account)}`);
  assert.equal(account.record_type, 'managed_account');
  for (const field of ['id', 'email', 'api_user', 'manager_account_id']) {
    assertString(account, field);
    assert.notEqual(account[field], '', `${field} should not be empty`);
  }
  assert.match(account.id, UUID);
  assertTimestamps(account);
  // Optional in the SDK, always sent by Steward.
  assertString(account, 'organization_name');
  assert.equal(typeof account.managed_account_allow_custom_pricing, 'boolean');
  assert.equal(typeof account.rollup_billing, 'boolean');
  // Extension.
  assert.ok(STATUSES.includes(account.status), `status ${account.status}`);
}

/** Every field the SDK's `ManagedAccount` declares, with its type. */
function assertManagedAccountShape(account) {
  assertListedAccountShape(account);
  for (const field of ['api_key', 'api_token']) {
    assertString(account, field);
  }
  if (account.rollup_billing) {
    assert.equal(account.balance ?? undefined, undefined, 'a rollup account has no balance');
  } else {
    assertBalanceShape(account.balance);
  }
  // Extension.
  assert.ok(Number.isInteger(account.channel_limit) && account.channel_limit >= 0, 'channel_limit');
}

async function createAccount(sdk, overrides = {}) {
  const response = await sdk.managedAccounts.create({
    business_name: uniqueName(),
    email: uniqueEmail(),
    ...overrides,
  });
  assertManagedAccountShape(response.data);
  return response.data;
}

async function retrieve(sdk, id) {
  const { data } = await sdk.managedAccounts.retrieve(id);
  assertManagedAccountShape(data);
  return data;
}

async function list(sdk, query) {
  const page = await sdk.managedAccounts.list(query);
  assert.ok(Array.isArray(page.data));
  page.data.forEach(assertListedAccountShape);
  return page;
}

/** A fresh non-rollup managed account of the main manager, as returned by create. */
const newAccount = () => createAccount(client, { password: PASSWORD, rollup_billing: false });

/** Awaits `promise`, expects it to fail with the SDK error `ErrorClass`; returns the error. */
async function expectError(promise, ErrorClass, status) {
  let caught;
  await assert.rejects(promise, (error) => {
    caught = error;
    return true;
  });
  assert.ok(
    caught instanceof ErrorClass,
    `expected ${ErrorClass.name}, got ${caught?.constructor?.name}: ${caught?.message}`,
  );
  assert.ok(caught instanceof Telnyx.APIError);
  assert.equal(caught.status, status);
  return caught;
}

/** The first error of the Telnyx error envelope, checked for shape. */
function firstError(error) {
  const body = error.error;
  assert.ok(body && Array.isArray(body.errors) && body.errors.length > 0, JSON.stringify(body));
  const first = body.errors[0];
  assertString(first, 'code');
  assertString(first, 'title');
  assertString(first, 'detail');
  return first;
}

// --- create -------------------------------------------------------------------------------

describe('create', () => {
  test('returns the new account with its full key', async () => {
    const email = uniqueEmail();
    const name = uniqueName("Larry's Cat Food");

    const { data: created } = await client.managedAccounts.create({
      business_name: name,
      email,
      password: PASSWORD,
      managed_account_allow_custom_pricing: false,
      rollup_billing: false,
    });

    assertManagedAccountShape(created);
    assert.equal(created.record_type, 'managed_account');
    assert.equal(created.email, email);
    assert.equal(created.organization_name, name);
    assert.match(created.api_key, FULL_KEY);
    assert.equal(created.api_token, '');
    assert.equal(created.api_user, manager.email);
    assert.equal(created.manager_account_id, manager.id);
    assert.equal(created.managed_account_allow_custom_pricing, false);
    assert.equal(created.rollup_billing, false);
    assert.equal(created.balance.balance, '0.00');
    assert.equal(created.balance.currency, 'USD');
    assert.equal(created.status, 'active');
    assert.equal(created.channel_limit, 0);
  });

  test('with rollup billing has no balance of its own', async () => {
    const created = await createAccount(client, { rollup_billing: true });

    assert.equal(created.rollup_billing, true);
    assert.equal(created.balance ?? undefined, undefined);
  });

  test("without email generates one from the manager's email", async () => {
    const [local, domain] = manager.email.split('@');

    const { data: created } = await client.managedAccounts.create({ business_name: uniqueName() });

    assertManagedAccountShape(created);
    assert.equal(created.email.split('+')[0], local);
    assert.match(created.email, /^[^+@]+\+[0-9a-f]{12}@[^@]+$/);
    assert.equal(created.email.split('@')[1], domain);
    assert.equal((await retrieve(client, created.id)).email, created.email);
  });

  test('with an email already in use in any case is rejected (422, 10012)', async () => {
    const account = await newAccount();

    const error = await expectError(
      createAccount(client, { email: account.email.toUpperCase() }),
      Telnyx.UnprocessableEntityError,
      422,
    );

    assert.equal(firstError(error).code, '10012');
  });

  test('without business_name is rejected (422, 10004)', async () => {
    const error = await expectError(
      client.managedAccounts.create({ email: uniqueEmail() }),
      Telnyx.UnprocessableEntityError,
      422,
    );

    assert.equal(firstError(error).code, '10004');
  });
});

// --- retrieve and update ------------------------------------------------------------------

describe('retrieve and update', () => {
  test('retrieve shows only the public identifier of the key', async () => {
    const account = await newAccount();
    const publicId = account.api_key.split('_')[0];

    const retrieved = await retrieve(client, account.id);

    assert.equal(retrieved.id, account.id);
    assert.equal(retrieved.email, account.email);
    assert.equal(retrieved.organization_name, account.organization_name);
    assert.equal(retrieved.manager_account_id, manager.id);
    assert.equal(retrieved.api_user, manager.email);
    assert.equal(retrieved.api_token, '');
    assert.match(retrieved.api_key, PUBLIC_KEY_ID);
    assert.equal(retrieved.api_key, publicId);
    assert.equal(retrieved.balance.balance, '0.00');
    assert.equal(retrieved.created_at, account.created_at);
  });

  test('retrieve of an unknown id is a 404 (10005)', async () => {
    const error = await expectError(
      client.managedAccounts.retrieve(randomUUID()),
      Telnyx.NotFoundError,
      404,
    );

    assert.equal(firstError(error).code, '10005');
  });

  test('update turns on custom pricing', async () => {
    const account = await newAccount();

    const { data: updated } = await client.managedAccounts.update(account.id, {
      managed_account_allow_custom_pricing: true,
    });

    assertManagedAccountShape(updated);
    assert.equal(updated.id, account.id);
    assert.equal(updated.managed_account_allow_custom_pricing, true);
    assert.equal(updated.api_key, account.api_key.split('_')[0]);
    assert.equal((await retrieve(client, account.id)).managed_account_allow_custom_pricing, true);
  });

  test('update that would change rollup_billing is rejected (422, 40003)', async () => {
    const account = await newAccount();

    const error = await expectError(
      client.managedAccounts.update(account.id, { rollup_billing: true }),
      Telnyx.UnprocessableEntityError,
      422,
    );

    const first = firstError(error);
    assert.equal(first.code, '40003');
    assert.equal(first.source?.pointer, '/rollup_billing');
    assert.equal((await retrieve(client, account.id)).rollup_billing, false);
  });

  test('update restating rollup_billing is accepted', async () => {
    const account = await newAccount();

    const { data: updated } = await client.managedAccounts.update(account.id, {
      rollup_billing: false,
    });

    assertManagedAccountShape(updated);
    assert.equal(updated.rollup_billing, false);
  });
});

// --- list ---------------------------------------------------------------------------------

describe('list', () => {
  test('filters by email substring ignoring case', async () => {
    const token = hex(10);
    const wanted = await createAccount(client, { email: `shop-${token}@customer.example` });
    await createAccount(client);

    const page = await list(client, { filter: { email: { contains: token.toUpperCase() } } });

    assert.deepEqual(page.data.map((a) => a.id), [wanted.id]);
    assert.equal(page.data[0].email, wanted.email);
    assert.equal(page.data[0].api_user, manager.email);
    assert.equal(page.data[0].manager_account_id, manager.id);
  });

  test('filters by exact organization name', async () => {
    const name = uniqueName('Exact Org');
    const wanted = await createAccount(client, { business_name: name });
    await createAccount(client, { business_name: `${name} Ltd` });

    const page = await list(client, { filter: { organization_name: { eq: name } } });

    assert.deepEqual(page.data.map((a) => a.id), [wanted.id]);
    assert.equal(page.data[0].organization_name, name);
  });

  test('filters by disabled status', async () => {
    const fresh = await freshClient();
    const disabled = await createAccount(fresh);
    await createAccount(fresh);
    await fresh.managedAccounts.actions.disable(disabled.id);

    const page = await list(fresh, { filter: { status: { eq: 'disabled' } } });

    assert.deepEqual(page.data.map((a) => a.id), [disabled.id]);
    assert.equal(page.data[0].status, 'disabled');
  });

  test('pages by page[size] and page[number] and sorts by email', async () => {
    const fresh = await freshClient();
    const emails = ['charlie', 'alpha', 'echo', 'bravo', 'delta'].map((p) => uniqueEmail(p));
    for (const email of emails) {
      await createAccount(fresh, { email });
    }
    const sorted = [...emails].sort();

    const first = await list(fresh, { 'page[size]': 2, sort: 'email' });
    const third = await list(fresh, { 'page[size]': 2, 'page[number]': 3, sort: 'email' });

    assert.deepEqual(first.data.map((a) => a.email), sorted.slice(0, 2));
    assert.deepEqual(third.data.map((a) => a.email), sorted.slice(4));
    assert.equal(first.meta.page_number, 1);
    assert.equal(first.meta.page_size, 2);
    assert.equal(first.meta.total_pages, 3);
    assert.equal(first.meta.total_results, 5);
    assert.equal(third.meta.page_number, 3);
    assert.equal(first.hasNextPage(), true);
    assert.equal(third.hasNextPage(), false);
  });

  test('is newest first by default', async () => {
    const fresh = await freshClient();
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await createAccount(fresh)).id);

    const page = await list(fresh);

    assert.deepEqual(page.data.map((a) => a.id), ids.reverse());
  });

  test('shows cancelled accounts only when asked', async () => {
    const fresh = await freshClient();
    const kept = await createAccount(fresh);
    const cancelled = await createAccount(fresh);
    await steward.admin('cancel-account', '--account', cancelled.id);

    const byDefault = await list(fresh);
    const everything = await list(fresh, { include_cancelled_accounts: true });

    assert.deepEqual(byDefault.data.map((a) => a.id), [kept.id]);
    assert.deepEqual(new Set(everything.data.map((a) => a.id)), new Set([kept.id, cancelled.id]));
    assert.equal(everything.data.find((a) => a.id === cancelled.id).status, 'cancelled');
  });

  test('auto-pagination visits every account exactly once', async () => {
    const fresh = await freshClient();
    const created = new Set();
    for (let i = 0; i < 7; i++) created.add((await createAccount(fresh)).id);

    const seen = [];
    for await (const account of fresh.managedAccounts.list({ 'page[size]': 2 })) {
      assertListedAccountShape(account);
      seen.push(account.id);
      if (seen.length >= 50) break; // a server that never stops paging must not hang the test
    }

    assert.equal(seen.length, 7);
    assert.equal(new Set(seen).size, 7);
    assert.deepEqual(new Set(seen), created);

    let pages = 0;
    for await (const page of (await fresh.managedAccounts.list({ 'page[size]': 2 })).iterPages()) {
      pages += 1;
      assert.equal(page.meta.page_number, pages);
      assert.ok(page.data.length <= 2);
      if (pages >= 10) break;
    }
    assert.equal(pages, 4);
  });

  test('an unknown filter is a 400 (10015)', async () => {
    const error = await expectError(
      client.managedAccounts.list({ filter: { nonsense: { eq: 'x' } } }),
      Telnyx.BadRequestError,
      400,
    );

    assert.equal(firstError(error).code, '10015');
  });
});

// --- disable and enable -------------------------------------------------------------------

describe('disable and enable', () => {
  test("a disabled account's key is refused until enabled", async () => {
    const account = await newAccount();
    const own = steward.client(account.api_key);
    assert.equal((await own.balance.retrieve()).data.balance, '0.00');

    const { data: disabled } = await client.managedAccounts.actions.disable(account.id);
    assertManagedAccountShape(disabled);
    assert.equal(disabled.id, account.id);
    assert.equal(disabled.status, 'disabled');
    const error = await expectError(own.balance.retrieve(), Telnyx.PermissionDeniedError, 403);
    assert.equal(firstError(error).code, '10010');

    const { data: enabled } = await client.managedAccounts.actions.enable(account.id, {
      reenable_all_connections: true,
    });
    assertManagedAccountShape(enabled);
    assert.equal(enabled.id, account.id);
    assert.equal(enabled.status, 'active');
    assert.equal((await own.balance.retrieve()).data.currency, 'USD');
  });

  test('disable and enable are idempotent', async () => {
    const account = await newAccount();

    await client.managedAccounts.actions.disable(account.id);
    const { data: disabledAgain } = await client.managedAccounts.actions.disable(account.id);
    assertManagedAccountShape(disabledAgain);
    assert.equal(disabledAgain.status, 'disabled');
    assert.equal((await retrieve(client, account.id)).status, 'disabled');

    await client.managedAccounts.actions.enable(account.id);
    const { data: enabledAgain } = await client.managedAccounts.actions.enable(account.id);
    assertManagedAccountShape(enabledAgain);
    assert.equal(enabledAgain.status, 'active');
    assert.equal((await retrieve(client, account.id)).status, 'active');
  });

  test('a cancelled account cannot be enabled (422, 40004)', async () => {
    const account = await newAccount();
    await steward.admin('cancel-account', '--account', account.id);

    const error = await expectError(
      client.managedAccounts.actions.enable(account.id),
      Telnyx.UnprocessableEntityError,
      422,
    );

    assert.equal(firstError(error).code, '40004');
  });
});

// --- global outbound channels -------------------------------------------------------------

describe('global outbound channels', () => {
  test("allocatable channels report the manager's pool", async () => {
    const fresh = await freshClient();

    const { data } = await fresh.managedAccounts.getAllocatableGlobalOutboundChannels();

    assert.ok(data && typeof data === 'object');
    assert.equal(typeof data.record_type, 'string');
    assert.equal(data.allocatable_global_outbound_channels, MANAGER_CHANNEL_POOL);
    assert.equal(data.total_global_channels_allocated, 0);
    assert.equal(typeof data.managed_account_allow_custom_pricing, 'boolean');
  });

  test('a channel limit within the pool is allocated', async () => {
    const fresh = await freshClient();
    const created = await createAccount(fresh);

    const { data } = await fresh.managedAccounts.updateGlobalChannelLimit(created.id, {
      channel_limit: 5,
    });

    assert.ok(data && typeof data === 'object');
    assert.equal(typeof data.record_type, 'string');
    assert.equal(data.id, created.id);
    assert.equal(data.email, created.email);
    assert.equal(data.manager_account_id, created.manager_account_id);
    assert.equal(data.channel_limit, 5);
    const { data: pool } = await fresh.managedAccounts.getAllocatableGlobalOutboundChannels();
    assert.equal(pool.allocatable_global_outbound_channels, MANAGER_CHANNEL_POOL);
    assert.equal(pool.total_global_channels_allocated, 5);
    assert.equal((await retrieve(fresh, created.id)).channel_limit, 5);
  });

  test('a channel limit beyond the pool is rejected with a pointer (422)', async () => {
    const account = await newAccount();

    const error = await expectError(
      client.managedAccounts.updateGlobalChannelLimit(account.id, {
        channel_limit: MANAGER_CHANNEL_POOL + 1,
      }),
      Telnyx.UnprocessableEntityError,
      422,
    );

    assert.equal(firstError(error).source?.pointer, '/channel_limit');
    assert.equal((await retrieve(client, account.id)).channel_limit, 0);
  });
});

// --- balance ------------------------------------------------------------------------------

describe('balance', () => {
  test('the balance of a new account is zero dollars', async () => {
    const account = await newAccount();

    const { data } = await steward.client(account.api_key).balance.retrieve();

    assertBalanceShape(data);
    assert.equal(data.balance, '0.00');
    assert.equal(data.credit_limit, '0.00');
    assert.equal(data.available_credit, '0.00');
    assertString(data, 'pending');
    assert.match(data.pending, MONEY);
    assert.equal(data.currency, 'USD');
  });
});

// --- who may do what ----------------------------------------------------------------------

describe('who may do what', () => {
  test('another manager cannot see the account', async () => {
    const account = await newAccount();

    const error = await expectError(
      otherClient.managedAccounts.retrieve(account.id),
      Telnyx.NotFoundError,
      404,
    );
    assert.equal(firstError(error).code, '10005');

    const listed = await list(otherClient, { filter: { email: { eq: account.email } } });
    assert.deepEqual(listed.data, []);
  });

  test('another manager cannot change the account', async () => {
    const account = await newAccount();

    await expectError(
      otherClient.managedAccounts.actions.disable(account.id),
      Telnyx.NotFoundError,
      404,
    );
    await expectError(
      otherClient.managedAccounts.update(account.id, { managed_account_allow_custom_pricing: true }),
      Telnyx.NotFoundError,
      404,
    );
    await expectError(
      otherClient.managedAccounts.updateGlobalChannelLimit(account.id, { channel_limit: 1 }),
      Telnyx.NotFoundError,
      404,
    );

    const unchanged = await retrieve(client, account.id);
    assert.equal(unchanged.status, 'active');
    assert.equal(unchanged.managed_account_allow_custom_pricing, false);
    assert.equal(unchanged.channel_limit, 0);
  });

  test("a managed account's key cannot manage accounts (403, 10010)", async () => {
    const account = await newAccount();
    const own = steward.client(account.api_key);

    const error = await expectError(own.managedAccounts.list(), Telnyx.PermissionDeniedError, 403);

    assert.equal(firstError(error).code, '10010');
  });

  test('an unknown key is not authenticated (401, 10009)', async () => {
    const stranger = steward.client(`KEY${'0'.repeat(32)}_${'0'.repeat(64)}`);

    const error = await expectError(
      stranger.managedAccounts.list(),
      Telnyx.AuthenticationError,
      401,
    );

    assert.equal(firstError(error).code, '10009');
  });
});

// --- payments -----------------------------------------------------------------------------
// Cards are entered at the sandbox gateway's card entry (a processor's hosted fields in
// production) and saved by token; the SDK has no calls for either, so these two steps use
// fetch. Each test uses its own test card: one card tops up at most three accounts a day.

async function postJson(url, apiKey, body) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, `${url}: ${await response.clone().text()}`);
  return response.json();
}

async function saveSandboxCard(apiKey, number, cvc = '739') {
  const root = steward.baseURL.replace(/\/v2$/, '');
  const card = { number, exp_month: 12, exp_year: 2030, cvc };
  const { data: tokenized } = await postJson(`${root}/sandbox/v1/tokens`, apiKey, card);
  const { data: saved } = await postJson(`${steward.baseURL}/payment_methods`, apiKey, {
    token: tokenized.token,
  });
  return saved.id;
}

/** Every field the SDK's stored payment transaction declares, with its type. */
function assertTransactionShape(transaction) {
  assert.equal(transaction.record_type, 'transaction');
  assert.equal(transaction.transaction_processing_type, 'stored_payment');
  assertString(transaction, 'id');
  assert.ok(Number.isInteger(transaction.amount_cents), 'amount_cents');
  assert.equal(transaction.amount_currency, 'USD');
  assert.equal(typeof transaction.auto_recharge, 'boolean');
  assertString(transaction, 'processor_status');
  assert.match(transaction.created_at, ISO_8601);
}

/** Every field the SDK's `AutoRechargePref` declares, with its type. */
function assertPrefShape(pref) {
  assert.equal(pref.record_type, 'auto_recharge_pref');
  assertString(pref, 'id');
  assert.equal(typeof pref.enabled, 'boolean');
  assert.equal(typeof pref.invoice_enabled, 'boolean');
  assert.ok(['credit_paypal', 'ach'].includes(pref.preference), pref.preference);
  assert.match(pref.threshold_amount, MONEY);
  assert.match(pref.recharge_amount, MONEY);
}

describe('payments', () => {
  test('a stored payment transaction charges the card and credits the balance', async () => {
    const account = await newAccount();
    await saveSandboxCard(account.api_key, '6011111111111117');
    const own = steward.client(account.api_key);

    const { data: paid } = await own.payment.createStoredPaymentTransaction({ amount: '120.00' });

    assertTransactionShape(paid);
    assert.equal(paid.amount_cents, 12000);
    assert.equal(paid.processor_status, 'submitted_for_settlement');
    assert.equal(paid.auto_recharge, false);
    assert.equal((await own.balance.retrieve()).data.balance, '120.00');
  });

  test('a declined card is refused with the reason (422, 40021) and moves nothing', async () => {
    const account = await newAccount();
    await saveSandboxCard(account.api_key, '4000000000000069');
    const own = steward.client(account.api_key);

    const error = await expectError(
      own.payment.createStoredPaymentTransaction({ amount: '120.00' }),
      Telnyx.UnprocessableEntityError,
      422,
    );

    assert.equal(firstError(error).code, '40021');
    assert.match(firstError(error).detail, /expired/);
    assert.equal((await own.balance.retrieve()).data.balance, '0.00');
  });

  test('an amount without cents is Telnyx error 10027', async () => {
    const own = steward.client((await newAccount()).api_key);

    const error = await expectError(
      own.payment.createStoredPaymentTransaction({ amount: '120' }),
      Telnyx.UnprocessableEntityError,
      422,
    );

    assert.equal(firstError(error).code, '10027');
  });

  test('auto-recharge preferences are read and updated', async () => {
    const account = await newAccount();
    const own = steward.client(account.api_key);

    const { data: initial } = await own.payment.autoRechargePrefs.list();
    await saveSandboxCard(account.api_key, '378282246310005', '7391');
    const { data: updated } = await own.payment.autoRechargePrefs.update({
      enabled: true,
      threshold_amount: '10.00',
      recharge_amount: '50.00',
      preference: 'credit_paypal',
    });

    assertPrefShape(initial);
    assert.equal(initial.enabled, false);
    assertPrefShape(updated);
    assert.equal(updated.enabled, true);
    assert.equal(updated.recharge_amount, '50.00');
    assert.equal((await own.payment.autoRechargePrefs.list()).data.threshold_amount, '10.00');
  });

  test('a rollup account has no auto-recharge and is told why (422, 40004)', async () => {
    const rollup = await createAccount(client, { rollup_billing: true });
    const own = steward.client(rollup.api_key);

    const error = await expectError(
      own.payment.autoRechargePrefs.update({ enabled: true }),
      Telnyx.UnprocessableEntityError,
      422,
    );

    assert.match(firstError(error).detail, /rollup billing/);
  });
});
