// The browser inspector in Debian's Chromium under Playwright. Two modes:
//   node inspector_test.mjs page <build>/web/inspector [shot.png]
//     serves the page on 127.0.0.1; the page runs the demo workload on its own virtual network
//     and inspects it in-process.
//   node inspector_test.mjs url http://127.0.0.1:PORT/#token=T [shot.png]
//     a page served by a native process's agent, attached to that process over WebSocket.
// Either way the test reads, from the app's model, the numbers its views showed: the ready-queue
// depth, a transport above its high water mark, pause_writing markers; pauses and scrubs back.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium, serveStatic } from './harness.mjs';

const [mode, target, shotArg] = process.argv.slice(2);
if (mode !== 'page' && mode !== 'url') {
  console.error('usage: inspector_test.mjs page <dir> [shot.png] | url <agent url> [shot.png]');
  process.exit(2);
}
let server = null;
let url = target;
if (mode === 'page') {
  const served = await serveStatic(target);
  server = served.server;
  url = served.url + '#tab=transports';
} else {
  url = target + (target.includes('#') ? '&' : '#') + 'tab=transports';
}
const shot = shotArg ?? join(tmpdir(), `inspector-${mode}.png`);

const failures = [];
const check = (what, ok, detail) => { if (!ok) failures.push(`${what}: ${JSON.stringify(detail)}`); };
const { context, page, errors } = await launchChromium({ viewport: { width: 1280, height: 720 }, extraArgs: ['--enable-unsafe-swiftshader'] });
let summary = {};
try {
  await page.goto(url);
  await page.waitForFunction(() => window.appReady === true, null, { timeout: 30000 });
  // Live data for a few seconds: enough updates for a pause_writing marker and history.
  await page.waitForFunction(() => {
    const s = window.inspectorSummary();
    return s.updates >= 20 && s.transports.some((t) => t.pause_writing > 0);
  }, null, { timeout: 30000, polling: 250 }).catch(() => {});
  await page.waitForTimeout(1500);
  summary = await page.evaluate(() => window.inspectorSummary());
  check('the model received updates', summary.updates >= 20, summary.updates);
  check('no decoding error', summary.error === '', summary.error);
  if (mode === 'url')
    check('attached to the native process (not the page\'s own loop)',
          summary.source.startsWith('attached to') && summary.server.startsWith('eddy '), { source: summary.source, server: summary.server });
  else
    check('inspecting the page\'s own loop', summary.source.includes('in this page') && summary.server === 'in-process',
          { source: summary.source, server: summary.server });
  check('the views showed a ready-queue depth from the bursts', summary.shown.ready_depth_max >= 100 || summary.ready_depth_max >= 200,
        { shown: summary.shown.ready_depth_max, seen: summary.ready_depth_max });
  check('a transport went above its high water mark', summary.transports.some((t) => t.above_high), summary.transports);
  check('pause_writing markers are on the transport timeline', summary.shown.pause_writing_markers >= 1,
        { shown: summary.shown, transports: summary.transports });
  check('the views showed tasks and transports', summary.shown.tasks >= 5 && summary.shown.transports >= 3, summary.shown);
  await page.screenshot({ path: shot });

  // Pause, scrub back to the first frame, resume.
  await page.evaluate(() => Module._inspector_pause(1, 0));
  await page.waitForTimeout(300);
  const paused = await page.evaluate(() => window.inspectorSummary());
  check('paused: the view froze on the first recorded frame', paused.shown.paused && paused.shown.frame_seq <= summary.shown.frame_seq - 10,
        { paused: paused.shown, live: summary.shown.frame_seq });
  await page.evaluate(() => Module._inspector_pause(0, -1));
  await page.waitForTimeout(500);
  const resumed = await page.evaluate(() => window.inspectorSummary());
  check('resumed: the view follows live data again', !resumed.shown.paused && resumed.shown.frame_seq >= summary.shown.frame_seq,
        resumed.shown);

  // A click on the Overview tab (where the page drew it) opens it, and its two columns of plots
  // and the live-handles table lie inside the canvas. (They were once drawn past its right edge.)
  const r = resumed.shown.tab_rects.overview;
  await page.mouse.move((r[0] + r[2]) / 2, (r[1] + r[3]) / 2);
  await page.mouse.down();
  await page.waitForTimeout(100);
  await page.mouse.up();
  await page.waitForTimeout(500);
  const overview = (await page.evaluate(() => window.inspectorSummary())).shown;
  check('a click on the Overview tab opens it', overview.tab === 'overview', overview.tab);
  const panels = overview.panel_rects ?? {};
  const [wx0, wy0, wx1, wy1] = overview.window_rect ?? [0, 0, 0, 0];
  const names = ['depth', 'ips', 'lag', 'poll', 'timers', 'ready', 'live_handles'];
  check('the Overview drew its plots and the live-handles table', names.every((n) => n in panels), panels);
  check('every Overview panel lies inside the page\'s inspector',
        Object.values(panels).every((p) => wx0 <= p[0] && p[2] <= wx1 && wy0 <= p[1] && p[3] <= wy1 && p[2] - p[0] >= 200),
        { panels, window: overview.window_rect });
  if (shot.endsWith('.png')) await page.screenshot({ path: shot.replace(/\.png$/, '-overview.png') });
  check('no page errors', errors.length === 0, errors);
} finally {
  await context.close();
  if (server) server.close();
}
console.log(JSON.stringify({ mode, url, screenshot: shot, updates: summary.updates, shown: summary.shown }));
if (failures.length) {
  console.error('FAILED:\n  ' + failures.join('\n  '));
  process.exit(1);
}
console.log('browser inspector test passed');
