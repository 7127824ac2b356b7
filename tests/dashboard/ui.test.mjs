// The dashboard's pure pieces under Node: CSV cells that a spreadsheet
// cannot run, NDJSON rows, the overview's windows and chart columns, the
// checkpoint comparison, and what a violation may become.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { csvCell, toCsv, toNdjson, COLUMNS } from '../../web/js/events.js';
import { windowOf, columns, agreement, RANGES } from '../../web/js/overview.js';
import { nextStatuses } from '../../web/js/violations.js';
import { tenantList } from '../../web/js/admin.js';

test('CSV cells are quoted as RFC 4180 says and formulas are defused', () => {
  assert.equal(csvCell('plain'), 'plain');
  assert.equal(csvCell(null), '');
  assert.equal(csvCell(42), '42');
  assert.equal(csvCell('a,b'), '"a,b"');
  assert.equal(csvCell('say "hi"'), '"say ""hi"""');
  assert.equal(csvCell('line\nbreak'), '"line\nbreak"');
  for (const f of ['=1+1', '+1', '-1', '@SUM(A1)', '\tx']) assert.equal(csvCell(f)[0] === "'" || csvCell(f)[1] === "'", true, f);
  assert.equal(csvCell('=HYPERLINK("x")'), '"\'=HYPERLINK(""x"")"');
});

test('a CSV has a header and one line per row, an NDJSON one object per line', () => {
  const rows = [{ index: 1, time: 't', tenant: 'acme', actor: 'a,b' }, { index: 2, action: '=cmd' }];
  const csv = toCsv(rows).split('\r\n');
  assert.equal(csv[0], COLUMNS.join(','));
  assert.equal(csv.length, 4); // header, two rows, and the final line break
  assert.ok(csv[1].startsWith('1,t,acme,"a,b",'));
  assert.ok(csv[2].includes(",'=cmd,"));
  assert.deepEqual(toNdjson(rows).trim().split('\n').map((l) => JSON.parse(l)), rows);
  assert.equal(toNdjson([]), '');
});

test('windows end on a bucket boundary and span their range', () => {
  const now = Date.parse('2026-12-04T10:07:31Z');
  for (const [name, r] of Object.entries(RANGES)) {
    const w = windowOf(name, now);
    assert.equal(w.to.getTime() % (r.step * 1000), 0, name);
    assert.ok(w.to.getTime() >= now && w.to.getTime() - now < r.step * 1000, name);
    assert.equal(w.to - w.from, r.seconds * 1000, name);
    assert.ok(r.seconds / r.step <= 120, `${name}: at most 120 points`);
  }
  assert.equal(windowOf('1h', now).to.toISOString(), '2026-12-04T10:08:00.000Z');
});

test('chart columns add failures and denials, and violations of every severity', () => {
  const c = columns({ buckets: [
    { start: '2026-12-04T10:00:00Z', events: 5, failures: 1, denied: 2, violations: { high: 1, low: 3 } },
    { start: '2026-12-04T10:01:00Z', events: 0, failures: 0, denied: 0, violations: {} },
  ] });
  assert.deepEqual(c, { t: [1796378400, 1796378460], events: [5, 0], failures: [3, 0], violations: [4, 0] });
});

test('info and checkpoint are compared only when both answers are fresh and of one size', () => {
  const root = 'AAAA';
  const cp = { size: 5, root: new Uint8Array([0, 0, 0]) };
  assert.equal(agreement({ size: 5, root }, null, cp, null), null);
  assert.equal(agreement({ size: 5, root: 'AAAB' }, null, cp, null).ok, false);
  assert.equal(agreement({ size: 5, root: 'AAAB' }, new Date(), cp, null).ok, null);
  assert.equal(agreement({ size: 5, root: 'AAAB' }, null, cp, new Date()).ok, null);
  assert.equal(agreement({ size: 6, root: 'AAAB' }, null, cp, null).ok, null);
});

test('a violation moves forward only', () => {
  assert.deepEqual(nextStatuses('open'), ['acknowledged', 'resolved']);
  assert.deepEqual(nextStatuses('acknowledged'), ['resolved']);
  assert.deepEqual(nextStatuses('resolved'), []);
});

test('tenants are typed as a list separated by commas or spaces', () => {
  assert.deepEqual(tenantList(' acme, globex  initech,,'), ['acme', 'globex', 'initech']);
  assert.deepEqual(tenantList('*'), ['*']);
  assert.deepEqual(tenantList('  '), []);
});
