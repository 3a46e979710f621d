// What the Playwright tests share: a static file server on 127.0.0.1 (serves `dir`, index.html
// for /, nothing outside it, with the types a WebAssembly page needs) and Debian's Chromium,
// launched headless with a page that collects its errors.
import { chromium } from 'playwright-core';
import { mkdtempSync, readFile } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import { join, normalize, resolve } from 'node:path';

const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.png': 'image/png' };

// `isolated`: send COOP/COEP, so that the page is cross-origin isolated (SharedArrayBuffer, threads).
export async function serveStatic(directory, { isolated = false } = {}) {
  const dir = resolve(directory);
  const server = http.createServer((req, res) => {
    let p = new URL(req.url, 'http://127.0.0.1').pathname;
    if (p === '/') p = '/index.html';
    const file = join(dir, normalize(p));
    if (!file.startsWith(dir)) { res.writeHead(403).end(); return; }
    readFile(file, (err, data) => {
      if (err) { res.writeHead(404).end(); return; }
      const headers = { 'Content-Type': types[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' };
      if (isolated) Object.assign(headers, { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' });
      res.writeHead(200, headers);
      res.end(data);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

export async function launchChromium({ viewport, extraArgs = [], ignoreHTTPSErrors = false }) {
  const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'eddy-pw-')), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors,
    viewport,
    args: ['--no-sandbox', '--disable-gpu', ...extraArgs, '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] ?? await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  return { context, page, errors };
}
