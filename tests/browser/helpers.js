'use strict';
// Shared helpers for the keycard-demo browser tests.
// run.sh starts the demo and passes its URL in KEYCARD_BASE_URL.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const BASE = (process.env.KEYCARD_BASE_URL || '').replace(/\/+$/, '');
if (!BASE) {
  throw new Error('KEYCARD_BASE_URL is not set: run these tests through tests/browser/run.sh');
}

const CHROMIUM = process.env.KEYCARD_CHROMIUM || '/usr/bin/chromium';
const SCREENSHOTS = process.env.KEYCARD_SCREENSHOTS === '1';
const SCREENSHOT_DIR = path.resolve(__dirname, '..', '..', 'docs', 'screenshots');
const VIEWPORT = { width: 1200, height: 800 };
// Per-test budget (node:test `timeout`), and Playwright's per-action budget.
const TEST_TIMEOUT = 45_000;
const ACTION_TIMEOUT = 10_000;

function launchBrowser() {
  // playwright-core gives each launch a fresh temporary user-data dir.
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
    timeout: 30_000,
  });
}

/** A fresh browser context: one "device" with its own cookie jar. */
async function newDevice(browser, options = {}) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: VIEWPORT, ...options });
  context.setDefaultTimeout(ACTION_TIMEOUT);
  context.setDefaultNavigationTimeout(15_000);
  const page = await context.newPage();
  return { context, page };
}

/** A username that no other test (or earlier run) uses. */
function freshUsername(prefix = 'user') {
  return `${prefix}_${crypto.randomBytes(5).toString('hex')}`;
}

const PASSWORD = 'correct horse battery staple';

function url(p) {
  return BASE + p;
}

function pathname(page) {
  return new URL(page.url()).pathname;
}

function pathOf(page) {
  const u = new URL(page.url());
  return u.pathname + u.search;
}

/**
 * Clicks a submit button and waits for the resulting document: the POST's
 * response is returned (its status is what the server answered to the form,
 * before any redirect is followed) and the page has loaded what came after.
 */
async function submit(page, button, actionPath) {
  const posted = page.waitForResponse(
    (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === actionPath,
  );
  await (typeof button === 'string' ? page.locator(button) : button).click();
  const response = await posted;
  await page.waitForLoadState('load');
  return response;
}

async function register(page, username, password = PASSWORD) {
  await page.goto(url('/register'));
  await page.fill('form[action="/register"] input[name=username]', username);
  await page.fill('form[action="/register"] input[name=password]', password);
  const response = await submit(page, 'form[action="/register"] button', '/register');
  assert.equal(response.status(), 303, `POST /register answered ${response.status()}`);
  await page.waitForURL((u) => u.pathname === '/'); // the demo adds ?m=registered
}

async function login(page, username, password = PASSWORD, { remember = false } = {}) {
  if (new URL(page.url()).pathname !== '/login') await page.goto(url('/login'));
  await page.fill('form[action="/login"] input[name=username]', username);
  await page.fill('form[action="/login"] input[name=password]', password);
  if (remember) await page.check('form[action="/login"] input[name=remember]');
  return submit(page, 'form[action="/login"] button', '/login');
}

async function logout(page) {
  const response = await submit(page, 'form[action="/logout"] button', '/logout');
  assert.equal(response.status(), 303, `POST /logout answered ${response.status()}`);
  return response;
}

/** Waits until the page shows "Signed in as NAME". */
async function expectSignedIn(page, username) {
  await page.locator('h1', { hasText: `Signed in as ${username}` }).waitFor();
  assert.equal(await page.locator('form[action="/logout"] button').count(), 1, 'a Log out button in the header');
}

/** Waits for the anonymous home page and checks nobody is signed in. */
async function expectSignedOut(page) {
  await page.locator('h1', { hasText: 'Welcome to keycard' }).waitFor();
  assert.equal(await page.getByText('Signed in as').count(), 0, '"Signed in as" must be gone');
  assert.equal(await page.locator('form[action="/logout"]').count(), 0, 'no Log out button');
}

/** The body's computed background colour, e.g. "rgb(42, 157, 143)". */
function bodyBackground(page) {
  return page.evaluate(() => getComputedStyle(document.body).backgroundColor);
}

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return `rgb(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255})`;
}

/** Sets the preferences through the /preferences form. */
async function setPreferences(page, { color, theme, fontSize }) {
  await page.goto(url('/preferences'));
  const form = 'form[action="/preferences"]';
  if (color) await page.fill(`${form} input[name=background_color]`, color);
  if (theme) await page.selectOption(`${form} select[name=theme]`, theme);
  if (fontSize) await page.selectOption(`${form} select[name=font_size]`, fontSize);
  const response = await submit(page, `${form} button`, '/preferences');
  assert.ok(response.status() < 400, `POST /preferences answered ${response.status()}`);
  return response;
}

/** Saves a PNG of the page under docs/screenshots/ when KEYCARD_SCREENSHOTS=1. */
async function screenshot(page, name) {
  if (!SCREENSHOTS) return;
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), type: 'png' });
}

module.exports = {
  BASE,
  PASSWORD,
  TEST_TIMEOUT,
  bodyBackground,
  expectSignedIn,
  expectSignedOut,
  freshUsername,
  hexToRgb,
  launchBrowser,
  login,
  logout,
  newDevice,
  pathOf,
  pathname,
  register,
  screenshot,
  setPreferences,
  submit,
  url,
};
