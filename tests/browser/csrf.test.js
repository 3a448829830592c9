'use strict';
// User story: a page on another origin auto-submits forms to the demo while
// the victim is signed in. The demo answers 403 and nothing changes.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./helpers');

let browser;
let attacker; // { server, origin }

/** A tiny HTTP server on another loopback origin serving the attack pages. */
function startAttacker() {
  const pages = {
    '/preferences': `<form method="post" action="${h.BASE}/preferences">
        <input type="hidden" name="background_color" value="#ff0000">
        <input type="hidden" name="font_size" value="large">
        <input type="hidden" name="theme" value="dark">
      </form>`,
    '/logout': `<form method="post" action="${h.BASE}/logout"></form>`,
  };
  const server = http.createServer((req, res) => {
    const form = pages[req.url];
    if (!form) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>You won a prize</title>${form}<script>document.forms[0].submit()</script>`);
  });
  // 127.0.0.2 is another loopback host (another site); fall back to another
  // port on 127.0.0.1, which is cross-site too (http vs https).
  const listen = (host) => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => { server.off('error', reject); resolve(host); });
  });
  return listen('127.0.0.2').catch(() => listen('127.0.0.1')).then((host) => ({
    server,
    origin: `http://${host}:${server.address().port}`,
  }));
}

before(async () => {
  attacker = await startAttacker();
  browser = await h.launchBrowser();
});
after(async () => {
  await browser?.close();
  await new Promise((resolve) => (attacker ? attacker.server.close(resolve) : resolve()));
});

/** Loads an attack page and returns the demo's response to its forged POST. */
async function runAttack(page, attackPath, targetPath) {
  const posted = page.waitForResponse(
    (r) => r.request().method() === 'POST' && r.url() === h.url(targetPath),
  );
  await page.goto(attacker.origin + attackPath);
  const response = await posted;
  await page.waitForLoadState('load');
  return response;
}

test('csrf: forms auto-submitted from another origin get 403 and change nothing', { timeout: h.TEST_TIMEOUT }, async (t) => {
  t.diagnostic(`attack pages served from ${attacker.origin}`);
  const { context, page } = await h.newDevice(browser);
  try {
    const name = h.freshUsername('victim');
    await h.register(page, name);
    const prefs = { color: '#2a9d8f', theme: 'light', fontSize: 'medium' };
    await h.setPreferences(page, prefs);
    await page.goto(h.url('/'));
    await h.expectSignedIn(page, name);
    assert.equal(await h.bodyBackground(page), h.hexToRgb(prefs.color));
    const cookiesBefore = await context.cookies();

    for (const target of ['/preferences', '/logout']) {
      const response = await runAttack(page, target, target);
      const request = response.request();
      assert.equal(request.isNavigationRequest(), true, 'the forged POST is a top-level navigation');
      assert.equal((await request.allHeaders())['sec-fetch-site'], 'cross-site');
      assert.equal(response.status(), 403, `forged POST ${target} answered ${response.status()}`);
      assert.equal((await response.allHeaders())['set-cookie'], undefined, `a 403 to POST ${target} sets no cookie`);
      assert.match(await page.textContent('body'), /CSRF/);
    }

    // Nothing changed: same cookies, same colour, still signed in.
    assert.deepEqual(
      (await context.cookies()).map((c) => [c.name, c.value]),
      cookiesBefore.map((c) => [c.name, c.value]),
    );
    await page.goto(h.url('/'));
    await h.expectSignedIn(page, name);
    assert.equal(await h.bodyBackground(page), h.hexToRgb(prefs.color));
    // The page's CSP (default-src 'none') forbids fetch(), so ask with the context's cookies.
    const api = await (await context.request.get(h.url('/api/preferences'))).json();
    assert.deepEqual(
      [api.background_color, api.theme, api.font_size],
      [prefs.color, prefs.theme, prefs.fontSize],
    );
  } finally {
    await context.close();
  }
});

test('csrf: the demo\'s own form with a tampered csrf_token gets 403 and changes nothing', { timeout: h.TEST_TIMEOUT }, async () => {
  const { context, page } = await h.newDevice(browser);
  try {
    const name = h.freshUsername('tamper');
    await h.register(page, name);
    const before = await h.bodyBackground(page);

    await page.goto(h.url('/preferences'));
    await page.fill('input[name=background_color]', '#ff0000');
    await page.evaluate(() => {
      const input = document.querySelector('form[action="/preferences"] input[name=csrf_token]');
      input.value = input.value.slice(0, -4) + (input.value.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    });
    const response = await h.submit(page, 'form[action="/preferences"] button', '/preferences');
    assert.equal((await response.request().allHeaders())['sec-fetch-site'], 'same-origin');
    assert.equal(response.status(), 403, `POST /preferences with a bad token answered ${response.status()}`);
    assert.equal((await response.allHeaders())['set-cookie'], undefined, 'a 403 sets no cookie');

    await page.goto(h.url('/'));
    await h.expectSignedIn(page, name);
    assert.equal(await h.bodyBackground(page), before, 'colour unchanged');
  } finally {
    await context.close();
  }
});
