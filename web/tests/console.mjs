// The console in headless Chromium, driven by playwright-core: run by tests/web_console.rs,
// which starts facedex and says what to check through the environment. Each scenario asserts
// what the page shows, writes screenshots to SCREENSHOT_DIR and prints a JSON report on its
// last line for the Rust side to check against the index.
//
//   node web/tests/console.mjs search-and-people   (QUERY_PHOTO, NEW_NAME)
//   node web/tests/console.mjs pipeline
//
// Also: CONSOLE_URL, READ_TOKEN, WRITE_TOKEN, CHROMIUM (the browser's executable).

import assert from 'node:assert/strict';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env('CONSOLE_URL');
const shots = env('SCREENSHOT_DIR');

const browser = await chromium.launch({ executablePath: env('CHROMIUM'), args: ['--no-sandbox'] });
try {
  const scenario = process.argv[2];
  const scenarios = { 'search-and-people': searchAndPeople, pipeline };
  if (!scenarios[scenario]) throw new Error(`no scenario ${scenario}`);
  // A phone-sized screen: the pages must work there too.
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  const report = await scenarios[scenario](page);
  assert.deepEqual(errors, [], 'no uncaught script errors');
  console.log(JSON.stringify(report));
} finally {
  await browser.close();
}

/** Signs in on the sign-in page with `token`. */
async function signIn(page, token) {
  await page.goto(url);
  await page.getByLabel('Access token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Search by photo' }).waitFor();
}

/** Loads every picture of the page, lazy ones included, so a screenshot shows them all. */
async function loadPictures(page) {
  await page.evaluate(() =>
    Promise.all(
      [...document.images].map((image) => {
        image.loading = 'eager';
        return image.decode().catch(() => {});
      }),
    ),
  );
}

/** Uploads the query photo and waits for the first hit's thumbnail to be shown. */
async function searchFirstHit(page) {
  await page.goto(`${url}#/search`);
  // The page renders once the server answered who may do what.
  await page.waitForLoadState('networkidle');
  await page.locator('#photo').setInputFiles(env('QUERY_PHOTO'));
  const first = page.locator('.hits li').first();
  await first.waitFor();
  await page.waitForFunction(() => {
    const image = document.querySelector('.hits li img');
    return image && image.complete && image.naturalWidth === 250;
  });
  return first;
}

async function searchAndPeople(page) {
  // A request without the token is refused, and the page asks for one.
  const refused = await page.request.get(`${url}api/people`);
  assert.equal(refused.status(), 401);
  await page.goto(url);
  await page.getByLabel('Access token').waitFor();
  await page.getByLabel('Access token').fill('wrong-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('not valid').waitFor();

  // The read token: search works, people edits are refused.
  await signIn(page, env('READ_TOKEN'));
  const first = await searchFirstHit(page);
  const firstHitFaceId = await first.getAttribute('data-face-id');
  await loadPictures(page);
  await page.screenshot({ path: join(shots, 'search.png'), fullPage: true });
  const face = await (await page.request.get(`${url}api/faces/${firstHitFaceId}`)).json();
  const personId = face.face.person_id;
  assert.ok(personId, 'the first hit is in a person');
  const readOnly = await page.request.put(`${url}api/people/${personId}/name`, { data: { name: 'x' } });
  assert.equal(readOnly.status(), 403);

  // Opening a hit shows its photo.
  await first.getByRole('button').click();
  const photo = page.locator('dialog.photo img');
  await page.waitForFunction(() => document.querySelector('dialog.photo img')?.naturalWidth > 0);
  assert.ok(await photo.isVisible());
  await page.getByRole('button', { name: 'Close' }).click();

  // The write token: the person page renames.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await signIn(page, env('WRITE_TOKEN'));
  await page.goto(`${url}#/people`);
  await page.locator('.people li').first().waitFor();
  await loadPictures(page);
  await page.screenshot({ path: join(shots, 'people.png'), fullPage: true });
  await page.locator(`.people li[data-person-id="${personId}"] a`).click();
  await page.getByLabel('Name', { exact: true }).fill(env('NEW_NAME'));
  await page.getByRole('button', { name: 'Save name' }).click();
  await page.getByRole('heading', { name: env('NEW_NAME') }).waitFor();
  await loadPictures(page);
  await page.screenshot({ path: join(shots, 'person.png'), fullPage: true });

  // Split one face off into a new person, then merge that person back.
  const faces = page.locator('.faces li');
  const before = await faces.count();
  assert.ok(before >= 2, `the person has faces to split (${before})`);
  await faces.first().getByLabel('Select').check();
  await page.getByRole('button', { name: 'Split selected faces into a new person' }).click();
  await page.waitForURL((address) => !address.hash.endsWith(personId));
  await page.getByRole('heading', { name: 'Unnamed person' }).waitFor();
  assert.equal(await page.locator('.faces li').count(), 1);
  const splitId = decodeURIComponent(new URL(page.url()).hash.split('/').at(-1));
  await page.goto(`${url}#/people/${personId}`);
  await page.getByRole('heading', { name: env('NEW_NAME') }).waitFor();
  await page.waitForFunction((count) => document.querySelectorAll('.faces li').length === count, before - 1);
  await page.locator('#merge-from option[value="' + splitId + '"]').waitFor({ state: 'attached' });
  await page.getByLabel('Merge into this person').selectOption(splitId);
  await page.getByRole('button', { name: 'Merge', exact: true }).click();
  await page.waitForFunction((count) => document.querySelectorAll('.faces li').length === count, before);

  // The name shows in the search results.
  const again = await searchFirstHit(page);
  const name = (await again.locator('.name').textContent()).trim();
  return { first_hit_face_id: firstHitFaceId, person_id: personId, first_hit_name_after_rename: name };
}

async function pipeline(page) {
  await signIn(page, env('READ_TOKEN'));
  await page.getByRole('link', { name: 'Pipeline' }).click();
  const done = page.locator('[data-counter="photos_done"] dd');
  await done.waitFor();
  // Watch the counter the page refreshes by itself until the run ends: the page shows it
  // finished, or says the server went away (the run's process exits when it is done).
  const seen = [];
  let screenshot = false;
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const [count, planned] = (await done.textContent()).split(' of ').map(Number);
    if (seen.at(-1) !== count) seen.push(count);
    if (!screenshot && count > 0 && count < planned) {
      await page.screenshot({ path: join(shots, 'pipeline.png'), fullPage: true });
      screenshot = true;
    }
    const gone = (await page.locator('#notice.error').count()) > 0;
    if ((count === planned && count > 0) || gone) break;
    await page.waitForTimeout(200);
  }
  assert.ok(screenshot, `a screenshot mid-run (seen ${seen})`);
  return { photos_done_seen: seen };
}
