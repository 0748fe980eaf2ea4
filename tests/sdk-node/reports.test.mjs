// Usage reports, report jobs and the audit trail through the official Telnyx Node SDK against
// a real Steward. Mirrors tests/sdk/test_reports.py.

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
`;

let steward;
let manager;
let own;
let rollup;

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

before(async () => {
  steward = new Steward();
  const prices = join(steward.tmpDir, 'prices.csv');
  writeFileSync(prices, PRICES);
  await steward.admin(
    'import-price-list', '--file', prices, '--name', 'node reports',
    '--platform-default', '--effective-from', '2020-01-01T00:00:00Z',
  );
  const ingestKey = (await steward.admin('create-ingest-key')).api_key;
  manager = await steward.createManager();
  await steward.start();
  const sdk = steward.client(manager.api_key);
  own = (await sdk.managedAccounts.create({ business_name: 'Node Reports Own' })).data;
  rollup = (await sdk.managedAccounts.create({ business_name: 'Node Reports Rollup', rollup_billing: true })).data;
  const when = new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
  const event = (account, product, quantity) => ({
    id: randomUUID(), account_id: account, product, destination: '+442079460000', quantity, occurred_at: when,
  });
  const statuses = await postUsage(ingestKey, [
    event(own.id, 'voice_outbound', 60),
    event(own.id, 'sms_outbound', 2),
    event(rollup.id, 'voice_outbound', 120),
  ]);
  assert.deepEqual(statuses, ['accepted', 'accepted', 'accepted']);
});

after(async () => {
  if (!steward) return;
  const { exit, log } = await steward.stop();
  assert.ok(exit && exit.code === 0, `steward serve did not stop cleanly (${JSON.stringify(exit)}):\n${log}`);
});

test('a manager reports cost per managed account', async () => {
  const sdk = steward.client(manager.api_key);
  const rows = [];
  for await (const row of sdk.usageReports.list({
    product: 'sip-trunking', dimensions: ['product'], metrics: ['count', 'call_sec', 'cost'],
    managed_accounts: true, date_range: 'last_1_days',
  })) {
    rows.push(row);
  }
  const byAccount = Object.fromEntries(rows.map((row) => [row.user_id, row]));
  assert.equal(byAccount[own.id].call_sec, 60);
  assert.equal(byAccount[own.id].cost, 0.05);
  assert.equal(byAccount[rollup.id].cost, 0.1);
});

test('a managed account reports without prices, and options offer none', async () => {
  const sdk = steward.client(own.api_key);
  const page = await sdk.usageReports.list({
    product: 'messaging', dimensions: ['message_type'], metrics: ['count', 'parts'], date_range: 'last_1_days',
  });
  assert.deepEqual(page.data, [{ message_type: 'SMS', count: 1, parts: 2 }]);
  await assert.rejects(
    sdk.usageReports.list({ product: 'messaging', dimensions: ['date'], metrics: ['cost'], date_range: 'last_1_days' }),
    (error) => error instanceof Telnyx.PermissionDeniedError && /pricing is managed/.test(error.message),
  );
  const options = (await sdk.usageReports.getOptions()).data;
  assert.deepEqual(options.map((o) => o.product).sort(), ['messaging', 'number-rental', 'sip-trunking']);
  for (const option of options) {
    assert.ok(!option.product_metrics.includes('cost') && !option.product_metrics.includes('billed_sec'));
  }
});

test('legacy voice report jobs run in the background and link their CSV', async () => {
  const sdk = steward.client(manager.api_key);
  const today = new Date();
  today.setUTCHours(0, 0, 0, 0);
  const day = 24 * 3600 * 1000;
  const created = (await sdk.legacy.reporting.usageReports.voice.create({
    start_time: new Date(today.getTime() - day).toISOString(),
    end_time: new Date(today.getTime() + day).toISOString(),
    aggregation_type: 0,
    select_all_managed_accounts: true,
  })).data;
  let report;
  for (let i = 0; i < 100; i += 1) {
    report = (await sdk.legacy.reporting.usageReports.voice.retrieve(created.id)).data;
    if (report.status !== 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(report.status, 2);
  assert.deepEqual(new Set(report.result.rows.map((r) => r.user_id)), new Set([own.id, rollup.id]));
  const csv = await (await fetch(report.report_url)).text();
  assert.match(csv, /^user_id,direction,count,call_sec,billed_sec,cost\n/);
  const listed = [];
  for await (const job of sdk.legacy.reporting.usageReports.voice.list({ per_page: 5 })) listed.push(job.id);
  assert.ok(listed.includes(created.id));
  assert.equal((await sdk.legacy.reporting.usageReports.voice.delete(created.id)).data.id, created.id);
});

test('a legacy messaging report of a managed account has no cost', async () => {
  const sdk = steward.client(own.api_key);
  const created = (await sdk.legacy.reporting.usageReports.messaging.create({ aggregation_type: 0 })).data;
  let report;
  for (let i = 0; i < 100; i += 1) {
    report = (await sdk.legacy.reporting.usageReports.messaging.retrieve(created.id)).data;
    if (report.status !== 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(report.status, 2);
  assert.equal(report.result.rows[0].parts, 2);
  assert.ok(!('cost' in report.result.rows[0]));
});

test('the audit trail shows what the manager changed', async () => {
  await steward.client(manager.api_key).managedAccounts.update(own.id, { managed_account_allow_custom_pricing: true });
  const events = [];
  for await (const event of steward.client(own.api_key).auditEvents.list({ sort: 'asc' })) events.push(event);
  const update = events.find((e) => e.change_type === 'managed_account.update');
  assert.ok(update, JSON.stringify(events));
  assert.equal(update.change_made_by, 'account_manager');
  assert.deepEqual(update.changes[0], { field: 'managed_account_allow_custom_pricing', from: false, to: true });
  assert.ok(events.some((e) => e.change_type === 'managed_account.create'));
});
