import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type ConsoleMessage, type Page } from 'puppeteer-core';
import { REPO_ROOT } from './cli.js';
import type { Scope } from './scope.js';

/*
 * Headless Chromium from Debian (`/usr/bin/chromium`) driven by puppeteer-core: nothing is
 * downloaded. One browser per test file; the scope closes it and then kills its process by
 * its pid, so a hung browser cannot outlive the tests.
 */

export const CHROMIUM = process.env.CAIRN_CHROMIUM ?? '/usr/bin/chromium';

/** Where the dashboard's screenshots go: the README's folder with CAIRN_SCREENSHOTS=1, else a temp folder. */
export const SCREENSHOT_DIR = process.env.CAIRN_SCREENSHOTS === '1' ? join(REPO_ROOT, 'docs', 'screenshots') : join(tmpdir(), 'cairn-screenshots');

export interface TestBrowser {
  browser: Browser;
  /** A new tab at 1280×800 that records console errors and failed requests (see `problems`). */
  newPage(): Promise<Page>;
  /** Console errors and CSP violations seen on any page so far. */
  problems: string[];
  /** Saves a full-page PNG as `<name>.png` into SCREENSHOT_DIR; returns its path. */
  screenshot(page: Page, name: string): Promise<string>;
}

export async function startBrowser(scope: Scope): Promise<TestBrowser> {
  const profile = await mkdtemp(join(tmpdir(), 'cairn-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check', '--font-render-hinting=none'],
    defaultViewport: { width: 1280, height: 800 },
    // The scope below ends it; puppeteer's own signal handlers would race the test runner's.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  const pid = browser.process()?.pid;
  scope.defer('remove the browser profile', () => rm(profile, { recursive: true, force: true }));
  scope.defer(`close chromium (pid ${pid})`, async () => {
    await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
    if (pid !== undefined && processAlive(pid)) process.kill(pid, 'SIGKILL');
  });
  const problems: string[] = [];
  const newPage = async () => {
    const page = await browser.newPage();
    page.on('console', (message: ConsoleMessage) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()} (${page.url()})`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${String(error)} (${page.url()})`));
    return page;
  };
  const screenshot = async (page: Page, name: string) => {
    await mkdir(SCREENSHOT_DIR, { recursive: true });
    const path = join(SCREENSHOT_DIR, `${name}.png`);
    await page.screenshot({ path: path as `${string}.png`, fullPage: false });
    return path;
  };
  return { browser, newPage, problems, screenshot };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until the page's text contains `text` (polled in the page). */
export async function waitForText(page: Page, text: string, timeoutMs = 30_000): Promise<void> {
  // A string, not a function: the test package has no DOM types, the page has the DOM.
  await page.waitForFunction(`document.body.innerText.includes(${JSON.stringify(text)})`, { timeout: timeoutMs, polling: 100 });
}
