// Drives the demo clinic app (www/demo/) the way a nurse does: keyboard and clicks only.
import { join } from 'node:path';
import { ARTIFACTS } from './browser.mjs';

/** Types into the login form and submits with Enter; resolves with the header's login text. */
export async function loginUI(page, { username, password }, mode) {
  await page.locator('#username').fill(username);
  await page.locator('#password').fill(password);
  await page.locator('#password').press('Enter');
  await page.locator('#who').filter({ hasText: `(${username})` }).waitFor({ timeout: 30000 });
  if (mode) await page.locator('#who').filter({ hasText: mode === 'online' ? 'Logged in online' : 'Logged in offline' }).waitFor({ timeout: 5000 });
  return page.locator('#who').textContent();
}

/** "Switch user", then the next user logs in (the session stays open until then). */
export async function switchUserUI(page, user, mode) {
  await page.locator('#switch-btn').click();
  await page.locator('#shift-help').waitFor();
  return loginUI(page, user, mode);
}

/** "Switch user", then "Log out": nobody is logged in. */
export async function logoutUI(page) {
  await page.locator('#switch-btn').click();
  await page.locator('#logout-btn').click();
  await page.locator('#login-form').waitFor();
  await page.locator('#switch-btn').waitFor({ state: 'hidden' });
}

export async function searchUI(page, text) {
  await page.locator('#search').fill(text);
  await page.locator('#search').press('Enter');
}

/** Types a value into a visit field, then Tab (the app saves on change); waits for the mark. */
export async function typeValue(page, de, value, expect = /Saved/) {
  const input = page.locator(`#de-${de}`);
  await input.focus();
  await input.fill('');
  await page.keyboard.type(value);
  await page.keyboard.press('Tab');
  if (expect) await page.locator(`#de-${de}-state`).filter({ hasText: expect }).waitFor({ timeout: 15000 });
}

let shot = 0;
/** Saves a numbered screenshot of the page into tests/artifacts/. */
export async function screenshot(page, name) {
  shot += 1;
  const path = join(ARTIFACTS, `clinic-day-${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** Polls the library's status in the page until `predicate(status)` holds. */
export async function waitForStatus(page, predicate, timeout = 30000) {
  const started = Date.now();
  for (;;) {
    const status = await page.evaluate(() => window.trackerOffline?.status());
    if (status && predicate(status)) return status;
    if (Date.now() - started > timeout) throw new Error(`status never matched: ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}
