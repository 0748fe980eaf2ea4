// Invoices and charges through the official Telnyx Node SDK against a real Steward. Mirrors
// tests/sdk/test_invoices.py: the server runs on the real clock, so the invoiced month is a
// past one closed with `steward admin close-invoices`; the charges cover today's usage.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import Telnyx from 'telnyx';

import { Steward } from './steward.mjs';

const PRICES = `product,prefix,rate,initial_increment_s,subsequent_increment_s
voice_outbound,,0.05,1,1
sms_outbound,,0.004,,
number_rental,,1.00,,
`;

let steward;
let manager;
let own;
let rollup;
let closed;
let period;

/** Sends usage as a network element does (not an SDK call); answers the statuses. */
async function postUsage(ingestKey, events) {
  const response = await fetch(`${steward.baseURL}/usage_events`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${ingestKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ events }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).data.map((result) => result.status);
}

const today = () => new Date().toISOString().slice(0, 10);
const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);

before(async () => {
  steward = new Steward();
  const prices = join(steward.tmpDir, 'prices.csv');
  writeFileSync(prices, PRICES);
  await steward.admin(
    'import-price-list', '--file', prices, '--name', 'node invoices',
    '--platform-default', '--effective-from', '2020-01-01T00:00:00Z',
  );
  const ingestKey = (await steward.admin('create-ingest-key')).api_key;
  manager = await steward.createManager();
  await steward.start();
  const sdk = steward.client(manager.api_key);
  own = (await sdk.managedAccounts.create({ business_name: 'Node Invoices Own' })).data;
  rollup = (await sdk.managedAccounts.create({ business_name: 'Node Invoices Rollup', rollup_billing: true })).data;
  const when = new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
  const event = (account, product, destination, quantity) => ({
    id: randomUUID(), account_id: account, product, destination, quantity, occurred_at: when,
  });
  const statuses = await postUsage(ingestKey, [
    event(manager.id, 'voice_outbound', '+442079460000', 60),
    event(rollup.id, 'number_rental', '+14155550123', 1),
    event(own.id, 'sms_outbound', '+442079460000', 2),
  ]);
  assert.deepEqual(statuses, ['accepted', 'accepted', 'accepted']);
  const firstOfMonth = new Date(`${today().slice(0, 7)}-01T00:00:00Z`);
  period = new Date(firstOfMonth.getTime() - 86_400_000).toISOString().slice(0, 7);
  closed = {
    manager: await steward.admin('close-invoices', '--period', period, '--account', manager.id),
    own: await steward.admin('close-invoices', '--period', period, '--account', own.id),
  };
});

after(async () => {
  if (!steward) return;
  const { exit, log } = await steward.stop();
  assert.ok(exit && exit.code === 0, `steward serve did not stop cleanly (${JSON.stringify(exit)}):\n${log}`);
});

test('invoices list, and a link that downloads the PDF without a key', async () => {
  const sdk = steward.client(manager.api_key);
  const invoices = [];
  for await (const invoice of sdk.invoices.list({ sort: '-period_start', 'page[size]': 1 })) {
    invoices.push(invoice);
  }
  assert.equal(invoices.length, 1);
  assert.equal(invoices[0].invoice_id, closed.manager.id);
  assert.equal(invoices[0].period_start.slice(0, 7), period);
  const linked = (await sdk.invoices.retrieve(closed.manager.id, { action: 'link' })).data;
  const download = await fetch(linked.download_url);
  assert.equal(download.status, 200);
  assert.equal(download.headers.get('content-type'), 'application/pdf');
  assert.equal(Buffer.from(await download.arrayBuffer()).subarray(0, 4).toString(), '%PDF');
  const tampered = await fetch(linked.download_url.replace('signature=', 'signature=00'));
  assert.equal(tampered.status, 403);
  const ownInvoice = (await sdk.invoices.retrieve(closed.own.id)).data;
  assert.equal(ownInvoice.account_id, own.id);
});

test('a rollup account has no invoices, and is told why', async () => {
  await assert.rejects(
    steward.client(rollup.api_key).invoices.list(),
    (error) => error instanceof Telnyx.PermissionDeniedError && /manager's invoice/.test(error.error.errors[0].detail),
  );
});

test('charges summary and breakdown of today', async () => {
  const sdk = steward.client(manager.api_key);
  const summary = (await sdk.chargesSummary.retrieve({ start_date: today(), end_date: tomorrow() })).data;
  assert.equal(summary.user_id, manager.id);
  assert.equal(summary.total.grand_total, '1.05');
  const rental = summary.summary.lines.find((line) => line.alias === 'number_rental');
  assert.equal(rental.type, 'comparative');
  assert.equal(rental.new_this_month.quantity, 1);
  const breakdown = (await sdk.chargesBreakdown.retrieve({ start_date: today() })).data;
  assert.deepEqual(breakdown.results.map((r) => r.tn), ['+14155550123']);
  assert.equal(breakdown.results[0].service_owner_user_id, rollup.id);
  const csv = await sdk.chargesBreakdown.retrieve({ start_date: today(), format: 'csv' });
  assert.match(csv, /^tn,charge_type/);
  await assert.rejects(
    steward.client(own.api_key).chargesBreakdown.retrieve({ start_date: today() }),
    (error) => error instanceof Telnyx.PermissionDeniedError,
  );
  await assert.rejects(
    sdk.chargesSummary.retrieve({ start_date: today(), end_date: '2999-01-01' }),
    (error) => error instanceof Telnyx.BadRequestError,
  );
});
