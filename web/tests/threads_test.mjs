// The wasm-threads build in a real browser: Debian's Chromium opens web/threads/ served cross-origin
// isolated; run_in_executor jobs must run on several Web Workers (never on the page's thread), an
// exception must come back from a worker, and the page's loop must keep firing its timer while the
// jobs run. Keeps a screenshot. Usage: node threads_test.mjs <build>/web/threads [screenshot.png]
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { launchChromium, serveStatic } from './harness.mjs';

const dir = resolve(process.argv[2] ?? '.');
const screenshot = process.argv[3] ?? join(dir, 'browser-threads.png');
const { server, url } = await serveStatic(dir, { isolated: true });
const failures = [];
const check = (what, ok, detail) => { if (!ok) failures.push(`${what}: ${JSON.stringify(detail)}`); };

const { context, page, errors } = await launchChromium({ viewport: { width: 800, height: 200 } });
let result = {};
try {
  await page.goto(url);
  check('the page is cross-origin isolated', await page.evaluate(() => self.crossOriginIsolated), false);
  result = await page.evaluate(() => Promise.race([
    window.threadsResult, new Promise((r) => setTimeout(() => r({ ok: false, error: 'timed out' }), 30000))]));
  check('main() returned', result.ok, result);
  check('jobs ran on at least 2 Web Workers (negative: a check in the page failed)', result.value >= 2, result);
  check('the page kept running its loop meanwhile', result.ticks >= 3, result);
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot });
} catch (e) {
  failures.push(String(e));
} finally {
  check('no page errors', errors.length === 0, errors);
  await context.close();
  server.close();
}
if (failures.length) {
  console.error('FAILED:\n  ' + failures.join('\n  '));
  process.exit(1);
}
console.log('browser threads test: OK', JSON.stringify(result));
