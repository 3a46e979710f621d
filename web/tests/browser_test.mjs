// The real-browser test: Debian's Chromium, driven by Playwright, opens the demo page (served
// here on 127.0.0.1), runs an echo server and clients over the page's virtual network with a
// slow reader, and checks from the page that every byte came back in order, that the clients'
// transports paused and resumed, and that the page stayed responsive (no long task, i.e. none
// over 50 ms). Keeps a screenshot. Usage: node browser_test.mjs <build>/web [screenshot.png]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { launchChromium, serveStatic } from './harness.mjs';

const dir = resolve(process.argv[2] ?? '.');
const screenshot = process.argv[3] ?? join(dir, 'browser-demo.png');
const { server, url } = await serveStatic(dir);

const failures = [];
const check = (what, ok, detail) => { if (!ok) failures.push(`${what}: ${JSON.stringify(detail)}`); };

const { context, page, errors } = await launchChromium({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: true });
const result = {};
try {
  await page.goto(url);
  await page.evaluate(() => window.eddyDemo.ready);

  // A slow reader behind a short link: the clients' write buffers must cross the high water mark.
  await page.evaluate(() => { window.eddyLongTasks.length = 0; });
  const slow = await page.evaluate(() => window.eddyDemo.run({
    clients: 4, megabytes: 4, message: 16384, latencyMs: 2, bandwidth: 0, high: 65536, low: 16384, slowMs: 5 }));
  const longTasks = await page.evaluate(() => window.eddyLongTasks.slice());
  check('every byte came back intact and in order', slow.ok && slow.error === '', slow);
  check('bytes echoed == bytes expected', slow.echoed === slow.expected && slow.expected === 4 * 4 * 1024 * 1024,
        { echoed: slow.echoed, expected: slow.expected });
  check('the writers paused (pause_writing) at least once', slow.pauses >= 1, slow.pauses);
  check('every pause was followed by a resume', slow.resumes === slow.pauses, { pauses: slow.pauses, resumes: slow.resumes });
  check('the server napped (slow reader)', slow.server_pauses >= 1, slow.server_pauses);
  check('no client buffer grew far past the high water mark',
        slow.clients.every((c) => c.max_buffer <= 65536 + 16384 + 65536), slow.clients.map((c) => c.max_buffer));
  check('the page stayed responsive: no long task (> 50 ms)', longTasks.length === 0, longTasks);
  check('the driver batched passes into host tasks', slow.driver.passes > slow.driver.host_tasks, slow.driver);

  // A link change while running, then a bandwidth-limited run: it must take at least size/bandwidth.
  const paced = await page.evaluate(() => window.eddyDemo.run({
    clients: 1, megabytes: 0.25, message: 4096, latencyMs: 1, bandwidth: 1024 * 1024, high: 65536, low: 16384, slowMs: 0 }));
  check('bandwidth-limited run intact', paced.ok && paced.echoed === paced.expected, paced);
  check('1 MiB/s link: 256 KiB takes at least 0.25 s', paced.elapsed >= 0.25, paced.elapsed);

  // A real WebSocket server (Debian's python3-websockets) on 127.0.0.1, reached through a route:
  // plain (ws://) and over TLS (wss://, a throwaway certificate the browser is told to accept).
  const certDir = mkdtempSync(join(tmpdir(), 'eddy-wss-'));
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '2', '-subj', '/CN=127.0.0.1', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')],
    { stdio: 'ignore' });
  check('openssl made a test certificate', made.status === 0, made.status);
  for (const [scheme, extra] of [['ws', []], ['wss', [join(certDir, 'cert.pem'), join(certDir, 'key.pem')]]]) {
    const wsServer = spawn('/usr/bin/python3', [new URL('./ws_echo_server.py', import.meta.url).pathname, ...extra],
                           { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const wsPort = await new Promise((res, rej) => {
        wsServer.stdout.once('data', (d) => res(Number(String(d).trim())));
        wsServer.once('exit', (code) => rej(new Error(`WebSocket server exited: ${code}`)));
      });
      const ws = await page.evaluate((u) => window.eddyDemo.websocketEcho(u, 1 << 20), `${scheme}://127.0.0.1:${wsPort}/`);
      check(`1 MiB round-tripped through a real ${scheme}:// server`, ws.status === 'ok' && ws.bytes === 1 << 20, ws);
      result[scheme] = ws;
    } finally {
      wsServer.kill();
    }
  }

  check('no page errors', errors.length === 0, errors);
  await page.evaluate(() => window.eddyDemo.run({ clients: 4, megabytes: 2, message: 16384, latencyMs: 2, slowMs: 5 }));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ...result, slow: { pauses: slow.pauses, resumes: slow.resumes, mib_per_s: slow.mib_per_s,
    elapsed: slow.elapsed, driver: slow.driver }, paced: { elapsed: paced.elapsed }, screenshot }));
} finally {
  await context.close();
  server.close();
}
if (failures.length) {
  console.error('FAILED:\n  ' + failures.join('\n  '));
  process.exit(1);
}
console.log('browser test passed');
