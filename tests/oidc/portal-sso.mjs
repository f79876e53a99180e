// The portal's "Sign in with …" in a real headless Chromium (Debian's, driven by
// playwright-core), run by tests/sso.rs against the running connector and the test provider:
// the sign-in page offers the provider, the provider's login and consent pages are filled in,
// the browser comes back signed in as the provider's user (the session cookie HttpOnly and
// SameSite=Strict), a callback whose state this browser did not start is refused, and signing
// out ends the session (its cookie no longer works).
//
// Environment: PORTAL_URL, LOGIN (the provider's user), EMAIL (theirs), OUT (screenshots).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env('PORTAL_URL');
const LOGIN = env('LOGIN');
const EMAIL = env('EMAIL');
const SHOTS = join(env('OUT'), 'screenshots');
mkdirSync(SHOTS, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}
const shot = (page, name) => page.screenshot({ path: join(SHOTS, `sso-${name}.png`), fullPage: true });

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const context = await browser.newContext({ baseURL: BASE });
  const page = await context.newPage();
  await page.goto('/ui/');
  check(page.url().endsWith('/ui/sign-in'), `without a session /ui/ goes to sign-in (${page.url()})`);
  await shot(page, 'sign-in');
  await page.getByRole('link', { name: 'Sign in with Corp SSO' }).click();
  // The provider's pages (oidc-provider's development interactions).
  await page.locator('input[name="login"]').fill(LOGIN);
  await page.locator('input[name="password"]').fill('any-password');
  await shot(page, 'provider-login');
  await page.locator('button[type="submit"]').first().click();
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(`${BASE}/ui/`);
  await page.getByRole('heading', { name: 'My access' }).waitFor();
  check((await page.locator('.who').textContent()).trim() === EMAIL, 'signed in as the provider\'s user');
  await shot(page, 'signed-in');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'apono_portal');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');
  check(!cookies.some((c) => c.name === 'apono_sso_state'), 'the state cookie is gone once used');

  // A callback this browser did not start (no state cookie) is refused.
  const other = await browser.newContext({ baseURL: BASE });
  const forged = await other.newPage();
  const answer = await forged.goto('/ui/sso/callback?state=made-up&code=made-up');
  check(answer.status() === 403, `a callback without the browser's state is refused (${answer.status()})`);
  await other.close();

  // Sign-out ends the session.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${BASE}/ui/sign-in`);
  const stale = await browser.newContext({ baseURL: BASE });
  await stale.addCookies([session]);
  const after = await stale.newPage();
  await after.goto('/ui/');
  check(after.url().endsWith('/ui/sign-in'), 'the signed-out session\'s cookie no longer works');
  await stale.close();
  console.log('portal sso walk passed');
} finally {
  await browser.close();
}
