'use strict';
// User stories: preferences (background colour, theme, font size) apply on
// every page, for a signed-in user and an anonymous visitor, and survive login.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let browser;
before(async () => { browser = await h.launchBrowser(); });
after(async () => { await browser?.close(); });

async function expectPrefsApplied(page, { color, theme, fontSize }) {
  assert.equal(await h.bodyBackground(page), h.hexToRgb(color), 'computed body background-color');
  const classes = await page.evaluate(() => document.body.className.split(/\s+/));
  if (theme) assert.ok(classes.includes(`theme-${theme}`), `body has theme-${theme}: ${classes}`);
  if (fontSize) assert.ok(classes.includes(`font-${fontSize}`), `body has font-${fontSize}: ${classes}`);
}

test('preferences: a signed-in user\'s colour, theme and font apply on /', { timeout: h.TEST_TIMEOUT }, async () => {
  const { context, page } = await h.newDevice(browser);
  try {
    const name = h.freshUsername('prefs');
    await h.register(page, name);
    const before = await h.bodyBackground(page);

    const prefs = { color: '#1f4e79', theme: 'dark', fontSize: 'large' };
    await h.setPreferences(page, prefs);
    assert.notEqual(h.hexToRgb(prefs.color), before, 'the chosen colour differs from the default');

    // The form shows the saved values.
    assert.equal(await page.inputValue('input[name=background_color]'), prefs.color);
    assert.equal(await page.inputValue('select[name=theme]'), prefs.theme);
    assert.equal(await page.inputValue('select[name=font_size]'), prefs.fontSize);

    await page.goto(h.url('/preferences'));
    await h.screenshot(page, 'preferences');

    await page.goto(h.url('/'));
    await h.expectSignedIn(page, name);
    await expectPrefsApplied(page, prefs);
    // font-large is 20px in app.css.
    assert.equal(await page.evaluate(() => getComputedStyle(document.body).fontSize), '20px');

    // The page's CSP (default-src 'none') forbids fetch(), so ask with the context's cookies.
    const api = await (await context.request.get(h.url('/api/preferences'))).json();
    assert.equal(api.background_color, prefs.color);
    assert.equal(api.theme, prefs.theme);
    assert.equal(api.font_size, prefs.fontSize);
  } finally {
    await context.close();
  }
});

test('preferences: work for an anonymous visitor', { timeout: h.TEST_TIMEOUT }, async () => {
  const { context, page } = await h.newDevice(browser);
  try {
    const prefs = { color: '#e9c46a', theme: 'light', fontSize: 'small' };
    await h.setPreferences(page, prefs);
    await page.goto(h.url('/'));
    await h.expectSignedOut(page);
    await expectPrefsApplied(page, prefs);

    // Another visitor (another browser) is not affected.
    const other = await h.newDevice(browser);
    try {
      await other.page.goto(h.url('/'));
      assert.notEqual(await h.bodyBackground(other.page), h.hexToRgb(prefs.color));
    } finally {
      await other.context.close();
    }
  } finally {
    await context.close();
  }
});

test('preferences: set anonymously, they survive logging in', { timeout: h.TEST_TIMEOUT }, async () => {
  const name = h.freshUsername('keep');
  // The account is made on another device, so this one starts anonymous.
  const setup = await h.newDevice(browser);
  try {
    await h.register(setup.page, name);
  } finally {
    await setup.context.close();
  }

  const { context, page } = await h.newDevice(browser);
  try {
    const prefs = { color: '#2a9d8f', theme: 'dark', fontSize: 'medium' };
    await h.setPreferences(page, prefs);
    await page.goto(h.url('/'));
    await h.expectSignedOut(page);
    await expectPrefsApplied(page, prefs);
    const anonymousCookie = (await context.cookies()).find((c) => c.name === '__Host-keycard')?.value;

    const response = await h.login(page, name);
    assert.equal(response.status(), 303);
    await page.waitForURL(h.url('/'));
    await h.expectSignedIn(page, name);
    await expectPrefsApplied(page, prefs);

    // Logging in rotates the session ID.
    const loggedInCookie = (await context.cookies()).find((c) => c.name === '__Host-keycard')?.value;
    assert.ok(loggedInCookie, 'a session cookie after login');
    assert.notEqual(loggedInCookie, anonymousCookie, 'the session ID changes at login');

    await page.goto(h.url('/account'));
    await expectPrefsApplied(page, prefs);
  } finally {
    await context.close();
  }
});
