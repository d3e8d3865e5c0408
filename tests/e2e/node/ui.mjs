// The web UI in a real browser, for tests/e2e/ui_browser_test.py: Debian's
// chromium driven by playwright-core. Prints one JSON line with what it
// saw; saves a screenshot of each page into OUT_DIR.
//
//   node ui.mjs BASE_URL OUT_DIR full       models, Load, playground,
//                                           activity, logs
//   node ui.mjs BASE_URL OUT_DIR key KEY    the API key form, then the models
import { chromium } from 'playwright-core';

const [base, outDir, mode, key] = process.argv.slice(2);
const origin = new URL(base).origin;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const result = { requests: [], outside: [], console: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 800 } });
  const page = await context.newPage();
  // Everything the page fetches: none of it may leave the proxy.
  page.on('request', (r) => {
    const url = r.url();
    result.requests.push(url);
    if (!url.startsWith(`${origin}/`) && !url.startsWith('data:') && !url.startsWith('blob:')) {
      result.outside.push(url);
    }
  });
  page.on('console', (m) => {
    if (m.type() === 'error') result.console.push(m.text());
  });
  page.on('pageerror', (e) => result.console.push(String(e)));
  const shot = (name) => page.screenshot({ path: `${outDir}/${name}.png` });

  await page.goto(`${base}/`);
  result.url = page.url();

  if (mode === 'key') {
    await page.waitForSelector('#key-page:not([hidden])');
    result.modelsHiddenWithoutKey = await page.locator('#models-page').isHidden();
    result.rowsWithoutKey = await page.locator('tr[data-model]').count();
    await shot('key');
    await page.fill('#key-input', 'wrong');
    await page.click('#key-form button');
    await page.waitForFunction(() => document.getElementById('key-error').textContent !== '');
    result.wrongKeyError = await page.textContent('#key-error');
    await page.fill('#key-input', key);
    await page.click('#key-form button');
    await page.waitForSelector('tr[data-model="chat"]');
    result.modelsWithKey = await page.locator('tr[data-model]').count();
  } else {
    // Models: the state of each, live.
    await page.waitForSelector('tr[data-model="chat"] .state.stopped');
    result.models = await page.$$eval('tr[data-model]', (rows) => rows.map((r) => r.dataset.model));
    await shot('models-stopped');
    // Load: the state turns ready; when it did is for the test to weigh
    // against the manager's event.
    await page.click('tr[data-model="chat"] button.load');
    await page.waitForSelector('tr[data-model="chat"] .state.ready', { timeout: 20000 });
    result.readyAtMs = Date.now();
    result.pid = await page.textContent('tr[data-model="chat"] td.pid');
    await page.waitForFunction(() => {
      const cell = document.querySelector('tr[data-model="chat"] td.uptime');
      return cell && cell.textContent !== '–';
    });
    await shot('models');

    // Playground: a streamed chat, through the loading of "other".
    await page.click('nav a[data-page="playground"]');
    await page.selectOption('#pg-model', 'other');
    await page.fill('#pg-input', 'hello there');
    // Every status line the page shows (the loading state among them).
    await page.evaluate(() => {
      const el = document.getElementById('pg-status');
      window.statuses = [];
      new MutationObserver(() => window.statuses.push(el.textContent))
        .observe(el, { childList: true, characterData: true, subtree: true });
    });
    await page.click('#pg-send');
    await page.waitForFunction(() => document.getElementById('pg-status').textContent.includes('tok/s'),
      null, { timeout: 30000 });
    result.statuses = await page.evaluate(() => window.statuses);
    result.chat = await page.textContent('#pg-output .msg.assistant');
    result.chatStatus = await page.textContent('#pg-status');
    await shot('playground');

    // Activity: the chat's row, with its tokens/s.
    await page.click('nav a[data-page="activity"]');
    await page.waitForSelector('tr.activity-row[data-model="other"]');
    result.activity = await page.$$eval('tr.activity-row', (rows) => rows.map((r) => ({
      model: r.dataset.model,
      cells: [...r.querySelectorAll('td')].map((c) => c.textContent),
    })));
    await shot('activity');
    // CSV export: a real download.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#activity-csv')]);
    const path = await download.path();
    const fs = await import('node:fs');
    result.csv = fs.readFileSync(path, 'utf8');

    // Logs: the model's output.
    await page.click('nav a[data-page="models"]');
    await page.click('tr[data-model="chat"] a.logs-link');
    await page.waitForFunction(() => document.getElementById('log-text').textContent.includes('listening on'),
      null, { timeout: 20000 });
    result.log = await page.textContent('#log-text');
    await shot('logs');
  }
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
