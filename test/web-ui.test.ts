import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Page } from 'puppeteer-core';
import { beforeAll, describe, expect, test } from 'vitest';
import { startBrowser, waitForText, type TestBrowser } from './utils/browser.js';
import { startWebDaemon, WEB_FILES_TREE, type WebDaemon } from './utils/daemon-web.js';
import { attachLoop, describeWithLoopDevices, makeExt4, makeGptDisk, MiB, PASSWORD_ENV, parseJson, randomBytesFor, runCli, sameBytes, useScope, useSuiteScope, waitUntil, type Scope } from './utils/index.js';

/*
 * The dashboard in Debian's headless Chromium against a real `cairn daemon --web` with a
 * files job and a volume job (test/utils/daemon-web.ts). Every check looks at what the page
 * shows and at the daemon's real state (the CLI, the repository, the restored files).
 * Screenshots of each page go to docs/screenshots with CAIRN_SCREENSHOTS=1.
 */

interface SnapshotRow {
  id: string;
  job?: string;
  kind?: string;
}

/** The job's snapshots as `cairn snapshots --json` lists them (this job's only). */
async function cliSnapshots(web: WebDaemon, job: 'files' | 'volume'): Promise<string[]> {
  const result = await runCli(['snapshots', web.jobs[job].file, '--json'], { env: PASSWORD_ENV });
  return parseJson<SnapshotRow[]>(result)
    .filter((row) => row.job === web.jobs[job].name)
    .map((row) => row.id);
}

/** A GET of the API with the token, its JSON body. */
async function apiJson(web: WebDaemon, path: string): Promise<any> {
  const response = await web.api(path);
  expect(response.status, path).toBe(200);
  return response.json();
}

/** The `data-*` attribute of every element matching `selector`, in page order. */
async function attributes(page: Page, selector: string, attribute: string): Promise<string[]> {
  return page.$$eval(selector, (elements, name) => elements.map((element) => element.getAttribute(name as string) ?? ''), attribute);
}

async function textOf(page: Page, selector: string): Promise<string> {
  return page.$eval(selector, (element) => (element as unknown as { innerText: string }).innerText);
}

/** Clicks the button whose text is `label` inside `within` (a CSS selector). */
async function clickButton(page: Page, within: string, label: string): Promise<void> {
  const button = await page.waitForSelector(`${within} ::-p-text(${label})`, { visible: true });
  await button!.click();
}

/** Every file below `dir` with its bytes, by path relative to `dir`. */
async function readTree(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      const path = join(entry.parentPath, entry.name);
      files.set(relative(dir, path), await readFile(path));
    }
  }
  return files;
}

describe('the dashboard in a browser', () => {
  const scope: Scope = useSuiteScope();
  let web: WebDaemon;
  let browser: TestBrowser;
  let page: Page;

  beforeAll(async () => {
    web = await startWebDaemon(scope);
    browser = await startBrowser(scope);
    page = await browser.newPage();
    // The address `cairn ui` prints: the token becomes a cookie and the address loses it.
    const response = await page.goto(web.loginUrl, { waitUntil: 'domcontentloaded' });
    expect(response!.ok()).toBe(true);
    expect(page.url()).toBe(`${web.url}/`);
  }, 240_000);

  test('the jobs page lists the jobs with their schedule, last run and buttons', async () => {
    await page.waitForSelector(`article[data-job="${web.jobs.files.name}"]`);
    await page.waitForSelector(`article[data-job="${web.jobs.volume.name}"]`);
    expect(await attributes(page, 'article.job-card', 'data-job')).toEqual([web.jobs.files.name, web.jobs.volume.name]);
    const card = await textOf(page, `article[data-job="${web.jobs.files.name}"]`);
    expect(card).toContain(web.jobs.files.sourceDir);
    expect(card).toContain(web.jobs.files.repository);
    const summary = (await apiJson(web, '/api/jobs')).jobs.find((job: any) => job.name === web.jobs.files.name);
    expect(summary.tasks.backup.schedule).toContain('0 3 1 1 *');
    expect(card).toContain(summary.tasks.backup.schedule);
    expect(card).toContain('Back up now');
    await waitForText(page, 'live');
  });

  test('a page left for another closes its event stream: after eight pages in one tab the next still loads', async () => {
    // Chromium keeps a page it may show again on "back" with its event stream open, and opens
    // at most six connections to one HTTP/1.1 server: without closing, the seventh page hung.
    for (const path of ['/', '/checks', '/log', '/', '/checks', '/log', '/', '/checks']) {
      await page.goto(`${web.url}${path}`);
      await page.waitForSelector('.dot-on');
    }
    await page.goto(`${web.url}/jobs/${web.jobs.files.name}`);
    await page.waitForSelector('tr[data-snapshot]', { timeout: 10_000 });
    await page.waitForSelector('.dot-on', { timeout: 10_000 });
  });

  test('a request without the token is refused: the page says how to sign in, the API answers 401', async () => {
    const context = await browser.browser.createBrowserContext();
    try {
      const stranger = await context.newPage();
      const response = await stranger.goto(`${web.url}/jobs/${web.jobs.files.name}`);
      expect(response!.status()).toBe(401);
      const text = await stranger.evaluate('document.body.innerText');
      expect(text).toContain('cairn ui');
      // No part of the app came along: the refusal is the server's own small page.
      expect(await stranger.$('#app')).toBeNull();
      await browser.screenshot(stranger, 'refused');
      const api = (await stranger.evaluate(`fetch('/api/jobs').then(async (r) => ({ status: r.status, body: await r.json() }))`)) as { status: number; body: any };
      expect(api.status).toBe(401);
      expect(api.body.error.code).toBe('CAIRN_UNAUTHORIZED');
      // A wrong token is no better.
      const wrong = await stranger.goto(`${web.url}/?token=${'A'.repeat(43)}`);
      expect(wrong!.status()).toBe(401);
      expect(await stranger.evaluate('document.cookie')).toBe('');
    } finally {
      await context.close();
    }
  });

  test('a page whose session is gone says how to sign in again instead of showing stale data', async () => {
    const context = await browser.browser.createBrowserContext();
    try {
      const visitor = await context.newPage();
      await visitor.goto(web.loginUrl);
      await visitor.waitForSelector('article.job-card');
      const cookies = await context.cookies();
      expect(cookies.map((cookie) => [cookie.name, cookie.httpOnly, cookie.sameSite])).toEqual([['cairn_session', true, 'Strict']]);
      await context.deleteCookie(...cookies);
      await (await visitor.waitForSelector('.sidebar ::-p-text(Checks)'))!.click();
      await waitForText(visitor, 'Not signed in');
      expect(await visitor.evaluate('document.body.innerText')).toContain('cairn ui');
      expect(await visitor.$('table.checks-table')).toBeNull();
    } finally {
      await context.close();
    }
  });

  test('a cross-site POST is refused and changes nothing', async () => {
    const before = await cliSnapshots(web, 'files');
    const stateBefore = await apiJson(web, '/api/jobs');
    const target = `${web.url}/api/jobs/${web.jobs.files.name}/run`;
    // Another site on this machine (same host, other port: the session cookie is sent along).
    const evil = createServer((req, res) => {
      res.setHeader('Content-Type', 'text/html');
      res.end(`<!doctype html><body>
        <form id="f" method="POST" action="${target}" enctype="text/plain" target="sink"><input name='{"task":"backup","x":"' value='"}'></form>
        <iframe name="sink"></iframe>
        <script>
          window.results = {};
          fetch(${JSON.stringify(target)}, { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'Content-Type': 'text/plain' }, body: '{"task":"backup"}' })
            .then((r) => (results.noCors = r.type), (e) => (results.noCors = 'error ' + e));
          fetch(${JSON.stringify(target)}, { method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/json', 'X-Cairn-Request': '1' }, body: '{"task":"backup"}' })
            .then((r) => (results.withHeader = r.status), (e) => (results.withHeader = 'blocked'));
          document.getElementById('f').submit();
        </script></body>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    scope.defer('close the cross-site server', () => new Promise((resolve) => evil.close(resolve)));
    const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`;
    const attacker = await browser.browser.newPage(); // the same browser profile: it holds the session cookie
    const statuses: number[] = [];
    attacker.on('response', (response) => {
      if (response.url() === target && response.request().method() === 'POST') statuses.push(response.status());
    });
    await attacker.goto(evilUrl);
    await waitUntil('both requests of the other site ended', async () => {
      const results = (await attacker.evaluate('window.results')) as Record<string, unknown>;
      return results.noCors !== undefined && results.withHeader !== undefined && statuses.length >= 2;
    }, 20_000);
    // The form post and the no-cors fetch reached the daemon and were refused; the fetch with
    // the custom header needs a preflight, which the daemon never approves: it never went out.
    expect(statuses).toEqual([403, 403]);
    expect(((await attacker.evaluate('window.results')) as Record<string, unknown>).withHeader).toBe('blocked');
    await attacker.close();
    await sleep(2000);
    expect(await cliSnapshots(web, 'files')).toEqual(before);
    const stateAfter = await apiJson(web, '/api/jobs');
    const files = (state: any) => state.jobs.find((job: any) => job.name === web.jobs.files.name);
    expect(files(stateAfter).tasks).toEqual(files(stateBefore).tasks);
    expect(files(stateAfter).history).toEqual(files(stateBefore).history);
    expect(files(stateAfter).running).toBeUndefined();
  });

  test('"back up now" on the snapshots page adds the new snapshot to the list without reloading', async () => {
    const before = await cliSnapshots(web, 'files');
    await page.goto(`${web.url}/`);
    await (await page.waitForSelector(`article[data-job="${web.jobs.files.name}"] h2 a`))!.click();
    await page.waitForSelector('tr[data-snapshot]');
    expect(await attributes(page, 'tr[data-snapshot]', 'data-snapshot')).toEqual([...before].reverse());
    await page.evaluate('window.notReloaded = true');
    await clickButton(page, '.page-head', 'Back up now');
    await page.waitForFunction(`document.querySelectorAll('tr[data-snapshot]').length === ${before.length + 1}`, { timeout: 60_000 });
    expect(await page.evaluate('window.notReloaded')).toBe(true);
    const after = await cliSnapshots(web, 'files');
    expect(after).toHaveLength(before.length + 1);
    // Newest first: the new snapshot heads the list.
    expect(await attributes(page, 'tr[data-snapshot]', 'data-snapshot')).toEqual([...after].reverse());
    await browser.screenshot(page, 'snapshots');
    // The jobs page shows the run the daemon recorded, with its sparklines.
    await page.goto(`${web.url}/`);
    const card = `article[data-job="${web.jobs.files.name}"]`;
    await page.waitForSelector(`${card} .fact-last-run .badge-success`);
    expect(await page.$$(`${card} .sparkline svg`)).toHaveLength(2);
  });

  test('a running backup shows live progress; the volume snapshot draws its partitions with used and free space', async () => {
    // The volume job now backs up a GPT disk with two ext4 partitions in used mode; an `after`
    // command keeps the task running a little, so the progress stays on screen to be seen.
    const disk = join(web.dir, 'gpt-disk.img');
    const boot = await makeExt4(web.dir, 'boot', 8 * MiB, { seed: 1, randomBytes: 2 * MiB, textBytes: 200_000 });
    const data = await makeExt4(web.dir, 'data', 40 * MiB, { seed: 2, randomBytes: 24 * MiB, textBytes: 500_000 });
    await makeGptDisk(disk, 60 * MiB, [
      { image: boot.image, size: 8 * MiB, name: 'boot' },
      { image: data.image, size: 40 * MiB, name: 'data' },
    ]);
    const jobFile = JSON.parse(await readFile(web.jobs.volume.file, 'utf8'));
    jobFile.source = { type: 'volume', path: disk, mode: 'used' };
    jobFile.hooks = { after: [['sleep', '3']] };
    await writeFile(web.jobs.volume.file, JSON.stringify(jobFile, null, 2));
    await waitUntil('the daemon took the edited job file', async () => {
      const jobs = (await apiJson(web, '/api/jobs')).jobs;
      return jobs.find((job: any) => job.name === web.jobs.volume.name)?.source.path === disk;
    });
    const before = await cliSnapshots(web, 'volume');
    await page.goto(`${web.url}/`);
    const card = `article[data-job="${web.jobs.volume.name}"]`;
    await (await page.waitForSelector(`${card} [data-action="run-backup"]`))!.click();
    await page.waitForSelector(`${card} .task-progress .throughput`, { timeout: 60_000 });
    await page.waitForFunction(`/\\/s$/.test(document.querySelector('${card} .task-progress .throughput').innerText)`, { timeout: 30_000 });
    // The bar is drawn as wide as the percentage it states (once its short transition is over).
    await page.waitForFunction(
      `(() => { const bar = document.querySelector('${card} .bar'); const fill = bar.querySelector('.bar-fill');
        const percent = Number(bar.getAttribute('aria-valuenow'));
        return percent > 0 && Math.abs(fill.getBoundingClientRect().width / bar.getBoundingClientRect().width * 100 - percent) < 1.5; })()`,
      { timeout: 10_000 },
    );
    const progress = await textOf(page, `${card} .task-progress`);
    expect(progress).toContain('Backing up');
    expect(progress).toMatch(/of \d+(\.\d+)? MiB/);
    await browser.screenshot(page, 'progress');
    // The progress goes away by itself when the daemon says the task ended.
    await page.waitForSelector(`${card} .task-progress`, { hidden: true, timeout: 60_000 });
    const after = await cliSnapshots(web, 'volume');
    expect(after).toHaveLength(before.length + 1);
    const id = after.at(-1)!;

    await page.goto(`${web.url}/jobs/${web.jobs.volume.name}/snapshots/${id}`);
    await page.waitForSelector('.disk-part[data-partition="p2"]');
    const show = parseJson<any>(await runCli(['show', web.jobs.volume.file, id, '--json'], { env: PASSWORD_ENV }));
    expect(await attributes(page, '.disk-part', 'data-partition')).toEqual(['gap-0', 'p1', 'p2', expect.stringMatching(/^gap-/)]);
    const widths = (await page.$$eval('.disk-part', (parts) =>
      parts.map((part) => [part.getBoundingClientRect().width, part.querySelector('.disk-used')!.getBoundingClientRect().width]),
    )) as Array<[number, number]>;
    for (const partition of show.layout.partitions) {
      const [whole, used] = widths[partition.index]!;
      // The used part of each partition's box is as wide as its share of used bytes (±2 px).
      expect(Math.abs(used - (whole - 2) * (partition.usedBytes / partition.size))).toBeLessThan(3);
      expect(used).toBeLessThan(whole - 2);
      expect(await textOf(page, `.disk-part[data-partition="p${partition.index}"]`)).toContain('ext4');
    }
    expect(await textOf(page, '.disk table')).toContain('data');
    await browser.screenshot(page, 'snapshot-volume');

    // Its files: the daemon mounts the snapshot read-only (cairn mount), one folder per partition.
    await (await page.waitForSelector('button[data-action="browse-image"]'))!.click();
    await page.waitForSelector('tr[data-entry="p2"]', { timeout: 60_000 });
    expect(await attributes(page, 'tr[data-entry]', 'data-entry')).toEqual(['p1', 'p2']);
    await (await page.waitForSelector('tr[data-entry="p2"] button'))!.click();
    await page.waitForSelector('tr[data-entry="lost+found"]', { timeout: 30_000 });
    await browser.screenshot(page, 'snapshot-volume-files');
  });

  test("a file snapshot's folders are browsed through /files", async () => {
    const [id] = await cliSnapshots(web, 'files');
    await page.goto(`${web.url}/jobs/${web.jobs.files.name}/snapshots/${id}`);
    await page.waitForSelector('tr[data-entry="docs"]');
    expect(await attributes(page, 'tr[data-entry]', 'data-entry')).toEqual(['docs', 'photo.raw']);
    await (await page.waitForSelector('tr[data-entry="docs"] button'))!.click();
    await page.waitForSelector('tr[data-entry="readme.txt"]');
    expect(await attributes(page, 'tr[data-entry]', 'data-entry')).toEqual(['sub', 'readme.txt', 'report.bin']);
    expect(page.url()).toContain(`?path=${encodeURIComponent(join(web.jobs.files.sourceDir, 'docs'))}`);
    expect(await textOf(page, 'tr[data-entry="report.bin"]')).toContain('195 KiB');
    await browser.screenshot(page, 'snapshot-files');
  });

  test("a restore of a file snapshot's folder through the wizard writes identical files", async () => {
    const [id] = await cliSnapshots(web, 'files');
    const to = join(web.dir, 'restored');
    const sourceDir = web.jobs.files.sourceDir;
    // One file is there already, with other bytes: the preview must name it.
    const stale = join(to, sourceDir, 'docs', 'readme.txt');
    await mkdir(join(stale, '..'), { recursive: true });
    await writeFile(stale, 'an older version\n');

    await page.goto(`${web.url}/jobs/${web.jobs.files.name}/restore?snapshot=${id}`);
    await page.waitForSelector(`label.choice.chosen[data-snapshot="${id}"]`);
    await page.click('[data-action="next"]');
    await page.waitForSelector('tr[data-entry="docs"] input[type="checkbox"]');
    await page.click('tr[data-entry="docs"] input[type="checkbox"]');
    await waitForText(page, join(sourceDir, 'docs'));
    await page.click('[data-action="next"]');
    await page.type('input[name="to"]', to);
    await page.click('[data-action="preview"]');
    await page.waitForSelector('[data-overwrites]');
    expect(await attributes(page, '[data-overwrites]', 'data-overwrites')).toEqual(['1']);
    expect(await textOf(page, '.overwrites')).toBe(stale);
    await browser.screenshot(page, 'restore-preview');
    await page.click('[data-action="start-restore"]');
    await page.waitForSelector('[data-restore-state="done"], [data-restore-state="failed"]', { timeout: 60_000 });
    expect(await attributes(page, '[data-restore-state]', 'data-restore-state')).toEqual(['done']);
    await browser.screenshot(page, 'restore-done');

    const restored = await readTree(join(to, sourceDir));
    const expected = new Map(Object.entries(WEB_FILES_TREE).filter(([path]) => path.startsWith('docs/')));
    expect([...restored.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [path, bytes] of expected) expect(restored.get(path)!.equals(bytes), path).toBe(true);
    const source = await readTree(join(sourceDir, 'docs'));
    for (const [path, bytes] of source) expect(restored.get(join('docs', path))!.equals(bytes), path).toBe(true);
  });

  describeWithLoopDevices('onto a block device', () => {
    test('restoring a volume snapshot to a block device asks for its name, typed, and writes the image', async () => {
      const testScope = useScope();
      const [id] = await cliSnapshots(web, 'volume'); // the first: the job's 4 MiB image, imaged exactly
      const backing = join(web.dir, 'device.img');
      await writeFile(backing, Buffer.alloc(4 * MiB));
      const device = await attachLoop(testScope, backing);

      await page.goto(`${web.url}/jobs/${web.jobs.volume.name}/restore?snapshot=${id}`);
      await page.waitForSelector(`label.choice.chosen[data-snapshot="${id}"]`);
      await page.click('[data-action="next"]');
      await page.type('input[name="to"]', device);
      await page.click('[data-action="preview"]');
      await page.waitForSelector('input[name="confirm-device"]');
      const preview = await textOf(page, '.wizard');
      expect(preview).toContain('a block device');
      expect(preview).toContain('4.00 MiB');
      expect(await textOf(page, '.overwrites')).toBe(device);
      const startDisabled = () => page.$eval('[data-action="start-restore"]', (button) => (button as unknown as { disabled: boolean }).disabled);
      expect(await startDisabled()).toBe(true);
      await page.type('input[name="confirm-device"]', device.slice(0, -1));
      expect(await startDisabled()).toBe(true);
      await page.type('input[name="confirm-device"]', device.slice(-1));
      expect(await startDisabled()).toBe(false);
      await browser.screenshot(page, 'restore-device');
      await page.click('[data-action="start-restore"]');
      await page.waitForSelector('[data-restore-state="done"], [data-restore-state="failed"]', { timeout: 60_000 });
      expect(await attributes(page, '[data-restore-state]', 'data-restore-state')).toEqual(['done']);
      expect(await sameBytes(device, web.jobs.volume.image)).toBe(true);
    });
  });

  test('forgetting a snapshot asks for its id prefix, typed', async () => {
    const before = await cliSnapshots(web, 'files');
    const victim = before[0]!;
    await page.goto(`${web.url}/jobs/${web.jobs.files.name}`);
    await page.waitForSelector(`tr[data-snapshot="${victim}"]`);
    await page.click(`tr[data-snapshot="${victim}"] [data-action="forget"]`);
    await page.waitForSelector('dialog[open] input[name="confirm"]');
    await page.type('dialog[open] input[name="confirm"]', victim.slice(0, 7));
    expect(await page.$eval('[data-action="confirm-forget"]', (button) => (button as unknown as { disabled: boolean }).disabled)).toBe(true);
    await page.type('dialog[open] input[name="confirm"]', victim.slice(7, 8));
    await browser.screenshot(page, 'forget');
    await page.click('[data-action="confirm-forget"]');
    await page.waitForSelector(`tr[data-snapshot="${victim}"]`, { hidden: true, timeout: 30_000 });
    expect(await cliSnapshots(web, 'files')).toEqual(before.slice(1));
  });

  test('the checks page starts a check and shows its result', async () => {
    await page.goto(`${web.url}/checks`);
    const row = `tr[data-job="${web.jobs.files.name}"]`;
    await page.waitForSelector(`${row} [data-action="run-check"]`);
    expect(await textOf(page, row)).toContain('never run');
    await page.click(`${row} [data-action="run-check"]`);
    await page.waitForSelector(`${row} .badge-success`, { timeout: 60_000 });
    const checks = (await apiJson(web, '/api/checks')).checks;
    expect(checks.find((check: any) => check.job === web.jobs.files.name).lastRun.result).toBe('success');
    await browser.screenshot(page, 'checks');
  });

  test('the log page shows the recent lines and then new ones as they come', async () => {
    await page.goto(`${web.url}/log`);
    await page.waitForSelector('.log-line');
    const count = (await page.$$('.log-line')).length;
    await page.evaluate('window.notReloaded = true');
    expect((await web.api(`/api/jobs/${web.jobs.volume.name}/run`, { body: { task: 'check' } })).status).toBe(202);
    await page.waitForFunction(`document.querySelectorAll('.log-line').length > ${count}`, { timeout: 30_000 });
    await page.waitForFunction(`[...document.querySelectorAll('.log-line')].some((line) => line.innerText.includes('${web.jobs.volume.name}') && line.innerText.includes('check'))`, { timeout: 30_000 });
    expect(await page.evaluate('window.notReloaded')).toBe(true);
    await browser.screenshot(page, 'log');
  });

  test('after a few runs the jobs page draws sparklines of durations and bytes added', async () => {
    const files = web.jobs.files.name;
    const history = async () => (await apiJson(web, '/api/jobs')).jobs.find((job: any) => job.name === files).history as any[];
    for (const [i, size] of [300_000, 40_000].entries()) {
      const runs = (await history()).length;
      await writeFile(join(web.jobs.files.sourceDir, `new-${i}.bin`), randomBytesFor(`web-ui-${i}`, size));
      expect((await web.api(`/api/jobs/${files}/run`, { body: { task: 'backup' } })).status).toBe(202);
      await waitUntil(`backup ${i + 1} is in the history`, async () => (await history()).length > runs);
    }
    const runs = (await history()).filter((run) => run.task === 'backup' && run.result === 'success');
    expect(runs.length).toBeGreaterThanOrEqual(3);
    await page.goto(`${web.url}/`);
    const card = `article[data-job="${files}"]`;
    await page.waitForSelector(`${card} .sparkline`);
    // The sizes come from each job's snapshot list, a little later than the rest.
    await page.waitForFunction(`[...document.querySelectorAll('.fact-size dd')].every((size) => /\\d/.test(size.innerText))`, { timeout: 30_000 });
    const titles = await attributes(page, `${card} .sparkline`, 'title');
    expect(titles).toHaveLength(2);
    expect(titles[0]).toContain(`over ${runs.length} runs`);
    expect(titles[1]).toMatch(new RegExp(`^bytes added: last .* over ${runs.length} runs$`));
    // The line has a point per run.
    const points = await page.$eval(`${card} .sparkline polyline`, (line) => line.getAttribute('points')!.split(' ').length);
    expect(points).toBe(runs.length);
    await browser.screenshot(page, 'jobs');
  });

  test('no page logged an error or broke the Content-Security-Policy', () => {
    expect(browser.problems).toEqual([]);
  });

  test('the daemon stops cleanly and unmounts the image snapshot it mounted for browsing', async () => {
    expect((await web.stop()).exitCode).toBe(0);
    expect(await readFile('/proc/self/mounts', 'utf8')).not.toContain(join(web.stateDir, 'mounts'));
  });
});
