// The demo page's glue: starts runs in the WebAssembly module, polls its counters, draws them.
// window.eddyDemo is also the API the Playwright test drives.
'use strict';
window.eddyLongTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.eddyLongTasks.push(e.duration);
  }).observe({ entryTypes: ['longtask'] });
} catch (e) { /* no long-task timing in this browser */ }

let readyResolve;
const ready = new Promise((res) => { readyResolve = res; });
var Module = {
  print: (t) => console.log(t),
  printErr: (t) => console.error(t),
  onEddyReady: () => readyResolve(),
};

const $ = (id) => document.getElementById(id);
const num = (id) => Number($(id).value);
const fmt = (n) => n.toLocaleString('en');

function stats() { return JSON.parse(Module.UTF8ToString(Module._demo_stats())); }

function draw(s) {
  $('rate').textContent = s.mib_per_s.toFixed(1);
  const rows = [
    ['running', s.running], ['bytes echoed / expected', `${fmt(s.echoed)} / ${fmt(s.expected)}`],
    ['pause_writing / resume_writing', `${s.pauses} / ${s.resumes}`], ['server naps', s.server_pauses],
    ['clients done', `${s.done_clients} / ${s.clients.length}`], ['elapsed s', s.elapsed.toFixed(3)],
    ['connections, segments', `${s.net.connections}, ${fmt(s.net.segments)}`],
    ['host tasks / timers / loop passes', `${fmt(s.driver.host_tasks)} / ${fmt(s.driver.host_timers)} / ${fmt(s.driver.passes)}`],
    ['every byte intact', s.ok], ['longest long task ms', Math.max(0, ...window.eddyLongTasks).toFixed(0)],
    ['WebSocket round trip', `${s.websocket.status} (${fmt(s.websocket.bytes)} B)`],
  ];
  $('totals').innerHTML = rows.map(([k, v]) => `<tr><td>${k}</td><td class="num">${v}</td></tr>`).join('');
  const scale = Math.max(s.high * 1.5, ...s.clients.map((c) => c.max_buffer), 1);
  $('bars').innerHTML = s.clients.map((c, i) =>
    `<div>client ${i}: ${fmt(c.buffer)} B (max ${fmt(c.max_buffer)}), paused ${c.pauses}×</div>` +
    `<div class="bar"><div class="fill" style="width:${(100 * c.buffer / scale).toFixed(1)}%"></div>` +
    `<div class="mark high" style="left:${(100 * s.high / scale).toFixed(1)}%"></div>` +
    `<div class="mark low" style="left:${(100 * s.low / scale).toFixed(1)}%"></div></div>`).join('');
  const st = $('status');
  st.textContent = s.running ? 'running…' : (s.error ? `error: ${s.error}` : (s.expected ? (s.ok ? 'done: every byte came back in order' : 'done: DATA MISMATCH') : 'ready'));
  st.className = s.running ? '' : (s.ok && !s.error ? 'ok' : 'bad');
}

function run(cfg) {
  const c = Object.assign({ clients: 4, megabytes: 4, message: 16384, latencyMs: 2, bandwidth: 0, high: 65536, low: 16384, slowMs: 5 }, cfg || {});
  if (Module._demo_start(c.clients, c.megabytes, c.message, c.latencyMs, c.bandwidth, c.high, c.low, c.slowMs) !== 0)
    return Promise.reject(new Error('a run is still going'));
  return new Promise((resolve) => {
    const tick = () => {
      const s = stats();
      draw(s);
      if (s.running) setTimeout(tick, 50); else resolve(s);
    };
    setTimeout(tick, 0);
  });
}

// Round-trips `bytes` through a real WebSocket echo server at `url`; resolves with the status.
function websocketEcho(url, bytes) {
  Module.ccall('demo_websocket_echo', null, ['string', 'number'], [url, bytes]);
  return new Promise((resolve) => {
    const tick = () => {
      const s = stats();
      draw(s);
      if (s.websocket.status === 'running') setTimeout(tick, 20); else resolve(s.websocket);
    };
    setTimeout(tick, 0);
  });
}

window.eddyDemo = {
  ready, run, stats, websocketEcho,
  setLink: (latencyMs, bandwidth) => Module._demo_set_link(latencyMs, bandwidth),
};

ready.then(() => {
  $('start').disabled = $('apply').disabled = false;
  draw(stats());
  $('start').onclick = async () => {
    $('start').disabled = true;
    await run({ clients: num('clients'), megabytes: num('megabytes'), message: num('message'), latencyMs: num('latency'),
                bandwidth: num('bandwidth') * 1024, high: num('high'), low: num('low'), slowMs: num('slow') });
    $('start').disabled = false;
  };
  $('apply').onclick = () => Module._demo_set_link(num('latency'), num('bandwidth') * 1024);
});
