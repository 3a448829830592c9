'use strict';
// User stories: register, log in through the form, log out.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let browser;
before(async () => { browser = await h.launchBrowser(); });
after(async () => { await browser?.close(); });

test('register: a new user lands on / signed in', { timeout: h.TEST_TIMEOUT }, async () => {
  const { context, page } = await h.newDevice(browser);
  try {
    const name = h.freshUsername('reg');
    await h.register(page, name);
    assert.equal(h.pathname(page), '/');
    await h.expectSignedIn(page, name);
    await h.screenshot(page, 'home');

    await page.goto(h.url('/account'));
    assert.equal(h.pathOf(page), '/account');
    await page.locator('dd', { hasText: name }).first().waitFor();
    await h.screenshot(page, 'account');
  } finally {
    await context.close();
  }
});

test('login: after logging out, the login form signs the user back in', { timeout: h.TEST_TIMEOUT }, async () => {
  const { context, page } = await h.newDevice(browser);
  try {
    const name = h.freshUsername('login');
    await h.register(page, name);
    await h.logout(page);
    await h.expectSignedOut(page);

    await page.goto(h.url('/login'));
    await h.screenshot(page, 'login');

    // A wrong password: 401 and the one generic message.
    const failed = await h.login(page, name, 'not the password');
    assert.equal(failed.status(), 401);
    await page.getByText('Invalid username or password.').waitFor();
    assert.equal(h.pathOf(page), '/login');

    const ok = await h.login(page, name);
    assert.equal(ok.status(), 303);
    await page.waitForURL(h.url('/'));
    await h.expectSignedIn(page, name);
  } finally {
    await context.close();
  }
});

test('login: an anonymous visit to /account goes through /login and back to /account', { timeout: h.TEST_TIMEOUT }, async () => {
  const { context, page } = await h.newDevice(browser);
  try {
    const name = h.freshUsername('next');
    await h.register(page, name);
    await h.logout(page);

    await page.goto(h.url('/account'));
    assert.equal(h.pathOf(page), '/login?next=%2Faccount');
    const ok = await h.login(page, name);
    assert.equal(ok.status(), 303);
    assert.equal(ok.headers().location, '/account');
    await page.waitForURL(h.url('/account'));
    await page.locator('dd', { hasText: name }).first().waitFor();
  } finally {
    await context.close();
  }
});

test('logout: "Signed in as" is gone and /account redirects to /login?next=%2Faccount', { timeout: h.TEST_TIMEOUT }, async () => {
  const { context, page } = await h.newDevice(browser);
  try {
    const name = h.freshUsername('out');
    await h.register(page, name);
    await h.expectSignedIn(page, name);

    const response = await h.logout(page);
    assert.equal(response.headers().location, '/');
    assert.equal(h.pathOf(page), '/');
    await h.expectSignedOut(page);

    // Reloading does not bring the session back.
    await page.reload();
    await h.expectSignedOut(page);

    const account = await page.goto(h.url('/account'));
    assert.equal(h.pathOf(page), '/login?next=%2Faccount');
    assert.equal(account.status(), 200);
    const redirect = await account.request().redirectedFrom()?.response();
    assert.equal(redirect?.status(), 303, 'GET /account answers 303');
    await page.locator('h1', { hasText: 'Log in' }).waitFor();
  } finally {
    await context.close();
  }
});
