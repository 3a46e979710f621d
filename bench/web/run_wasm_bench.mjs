// The WebAssembly benchmarks side by side with the native build, in one run: bench/micro natively,
// micro.js under Node and micro.js in Chromium (a Web Worker of a cross-origin-isolated page, where
// the loop may sleep), plus the demo page's virtual-network echo at 64 KiB messages on the page's
// main thread. Prints a Markdown table of times and ratios (wasm / native). Each wasm program runs
// twice: as V8 runs it by default (baseline code first, the optimising compiler catching up while
// the timed part runs, which weighs heavily in runs of tens of milliseconds) and "optimised up
// front" (--no-liftoff --no-wasm-lazy-compilation: every function compiled by TurboFan before
// main starts, what a long-running loop executes once V8 has tiered it up).
//   node bench/web/run_wasm_bench.mjs build/native-release build/wasm-release [repeats]
// Needs web/node_modules (scripts/setup.sh); never run by the tests.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFile } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join, normalize, resolve } from 'node:path';

// playwright-core lives in web/node_modules (installed by scripts/setup.sh).
const { chromium } = createRequire(new URL('../../web/package.json', import.meta.url))('playwright-core');

const nativeDir = resolve(process.argv[2] ?? 'build/native-release');
const wasmDir = resolve(process.argv[3] ?? 'build/wasm-release');
const repeats = Number(process.argv[4] ?? 3);
const tests = [['call_soon_chain', 1000000], ['call_soon_batch', 1000000], ['timers', 200000], ['tasks', 200000],
               ['pingpong_future', 200000], ['pingpong_queue', 200000]];

const best = (runs) => Math.min(...runs);
function runNative(test, n) {
  const r = spawnSync(join(nativeDir, 'bench/micro'), [test, String(n)], { encoding: 'utf8' });
  return JSON.parse(r.stdout.trim().split('\n').pop()).seconds;
}
const upFront = ['--no-liftoff', '--no-wasm-lazy-compilation'];
// micro.js asks for the optimising tier itself under Node (bench/node_optimizing_tier.js) unless
// EDDY_WASM_BASELINE is set: the default column sets it.
function runNode(test, n, flags = []) {
  const env = flags.length ? process.env : { ...process.env, EDDY_WASM_BASELINE: '1' };
  const r = spawnSync('node', [...flags, join(wasmDir, 'bench/micro.js'), test, String(n)], { encoding: 'utf8', env });
  return JSON.parse(r.stdout.trim().split('\n').pop()).seconds;
}

// One static server for both the bench folder (worker) and the demo page; isolated for Atomics.wait.
const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
const workerJs = `self.onmessage = (e) => {
  self.Module = { arguments: e.data, print: (t) => postMessage({ line: t }), printErr: (t) => postMessage({ err: t }) };
  importScripts('/bench/micro.js');
};`;
const server = http.createServer((req, res) => {
  const p = new URL(req.url, 'http://127.0.0.1').pathname;
  const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
  if (p === '/bench/worker.js') { res.writeHead(200, { ...headers, 'Content-Type': 'text/javascript' }).end(workerJs); return; }
  if (p === '/bench/') { res.writeHead(200, { ...headers, 'Content-Type': 'text/html' }).end('<!doctype html><title>micro</title>'); return; }
  const file = join(wasmDir, normalize(p === '/web/' ? '/web/index.html' : p));
  if (!file.startsWith(wasmDir)) { res.writeHead(403).end(); return; }
  readFile(file, (err, data) => {
    if (err) { res.writeHead(404).end(); return; }
    res.writeHead(200, { ...headers, 'Content-Type': types[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' }).end(data);
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}`;
const launch = (jsFlags) => chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'eddy-bench-')), {
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update',
         ...(jsFlags.length ? [`--js-flags=${jsFlags.join(' ')}`] : [])],
});
const context = await launch([]), eagerContext = await launch(upFront);
const page = context.pages()[0] ?? await context.newPage();
const eagerPage = eagerContext.pages()[0] ?? await eagerContext.newPage();
await page.goto(`${base}/bench/`);
await eagerPage.goto(`${base}/bench/`);
async function runChromium(page, test, n) {
  return page.evaluate(([t, count]) => new Promise((res, rej) => {
    const w = new Worker('/bench/worker.js');
    w.onmessage = (e) => {
      if (e.data.line && e.data.line.startsWith('{')) { w.terminate(); res(JSON.parse(e.data.line).seconds); }
      else if (e.data.err) { w.terminate(); rej(new Error(e.data.err)); }
    };
    w.onerror = (e) => rej(new Error(e.message));
    w.postMessage([t, String(count)]);
  }), [test, n]);
}

const rows = [];
for (const [test, n] of tests) {
  const r = { test, n, native: [], node: [], nodeEager: [], chromium: [], chromiumEager: [] };
  for (let i = 0; i < repeats; ++i) {  // interleaved, so noise hits all of them alike
    r.native.push(runNative(test, n));
    r.node.push(runNode(test, n));
    r.nodeEager.push(runNode(test, n, upFront));
    r.chromium.push(await runChromium(page, test, n));
    r.chromiumEager.push(await runChromium(eagerPage, test, n));
  }
  rows.push(r);
}
// The demo page's echo: one client, 64 MiB in 64 KiB messages, no latency, no naps.
await page.goto(`${base}/web/`);
await page.evaluate(() => window.eddyDemo.ready);
const echo = [];
for (let i = 0; i < repeats; ++i)
  echo.push(await page.evaluate(() => window.eddyDemo.run({ clients: 1, megabytes: 64, message: 65536, latencyMs: 0,
                                                           bandwidth: 0, high: 262144, low: 65536, slowMs: 0 })));
await context.close();
await eagerContext.close();
server.close();

const fmt = (s) => (s * 1000).toFixed(1);
console.log('wasm / native, best of each; "up front": wasm optimised before main starts (see the top of this file)\n');
console.log('| test | N | native ms | node ms | node up front ms | chromium ms | chromium up front ms | node | node up front | chromium | chromium up front |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  const native = best(r.native);
  const wasm = [r.node, r.nodeEager, r.chromium, r.chromiumEager].map(best);
  console.log(`| ${r.test} | ${r.n} | ${fmt(native)} | ${wasm.map(fmt).join(' | ')} | ` +
              `${wasm.map((w) => (w / native).toFixed(2)).join(' | ')} |`);
}
const mib = echo.map((s) => s.mib_per_s);
console.log(`\nvirtual-network echo in the page (1 client, 64 MiB, 64 KiB messages): best ${Math.max(...mib).toFixed(1)} MiB/s ` +
            `(runs: ${mib.map((x) => x.toFixed(1)).join(', ')}; every byte intact: ${echo.every((s) => s.ok)})`);
