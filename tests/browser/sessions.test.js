'use strict';
// User stories: two browser contexts are two devices on one account; one
// device sees both sessions on /sessions and ends the other.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let browser;
before(async () => { browser = await h.launchBrowser(); });
after(async () => { await browser?.close(); });

// Device B presents itself as a phone, so the two rows are easy to tell apart.
const PHONE_UA = 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36';

const rows = (page) => page.locator('table.sessions tbody tr');

async function expectEndedOn(page) {
  await page.reload();
  await h.expectSignedOut(page);
  await page.goto(h.url('/account'));
  assert.equal(h.pathOf(page), '/login?next=%2Faccount');
}

test('sessions: device A revokes device B, which is signed out', { timeout: h.TEST_TIMEOUT }, async () => {
  const a = await h.newDevice(browser);
  const b = await h.newDevice(browser, { userAgent: PHONE_UA });
  try {
    const name = h.freshUsername('dev');
    await h.register(a.page, name);
    await h.login(b.page, name);
    await b.page.waitForURL(h.url('/'));
    await h.expectSignedIn(b.page, name);

    await a.page.goto(h.url('/sessions'));
    assert.equal(await rows(a.page).count(), 2, 'two sessions listed');
    const mine = rows(a.page).filter({ has: a.page.locator('.tag', { hasText: 'this device' }) });
    const other = rows(a.page).filter({ hasNot: a.page.locator('.tag') });
    assert.equal(await mine.count(), 1, 'exactly one row is "this device"');
    assert.equal(await other.count(), 1, 'exactly one other row');
    // The User-Agent is shown verbatim.
    assert.equal((await other.locator('td.agent').textContent()).trim(), PHONE_UA);
    // The revoke form carries a handle, never the session ID itself.
    const handle = await other.locator('input[name=session]').inputValue();
    const cookieB = (await b.context.cookies()).find((c) => c.name === '__Host-keycard').value;
    assert.ok(handle && handle !== cookieB && !handle.includes(cookieB) && !cookieB.includes(handle), 'handle is not the session ID');
    await h.screenshot(a.page, 'sessions');

    const response = await h.submit(a.page, other.locator('button').first(), '/sessions/revoke');
    assert.equal(response.status(), 303, `POST /sessions/revoke answered ${response.status()}`);
    await a.page.goto(h.url('/sessions'));
    assert.equal(await rows(a.page).count(), 1, 'one session left');
    assert.equal(await rows(a.page).locator('.tag', { hasText: 'this device' }).count(), 1);

    // Device B is no longer signed in.
    await expectEndedOn(b.page);

    // Device A still is.
    await a.page.goto(h.url('/'));
    await h.expectSignedIn(a.page, name);
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('sessions: "Log out everywhere else" ends every other device', { timeout: h.TEST_TIMEOUT }, async () => {
  const devices = [await h.newDevice(browser), await h.newDevice(browser), await h.newDevice(browser)];
  const [a, b, c] = devices;
  try {
    const name = h.freshUsername('all');
    await h.register(a.page, name);
    for (const d of [b, c]) {
      await h.login(d.page, name);
      await d.page.waitForURL(h.url('/'));
      await h.expectSignedIn(d.page, name);
    }

    await b.page.goto(h.url('/sessions'));
    assert.equal(await rows(b.page).count(), 3);
    const response = await h.submit(b.page, 'form[action="/sessions/revoke-others"] button', '/sessions/revoke-others');
    assert.equal(response.status(), 303, `POST /sessions/revoke-others answered ${response.status()}`);
    await b.page.goto(h.url('/sessions'));
    assert.equal(await rows(b.page).count(), 1);

    await expectEndedOn(a.page);
    await expectEndedOn(c.page);
    await b.page.goto(h.url('/'));
    await h.expectSignedIn(b.page, name);
  } finally {
    for (const d of devices) await d.context.close();
  }
});
