// A static file server on 127.0.0.1 for the Playwright tests: serves `dir` (index.html for /),
// nothing outside it, with the types a WebAssembly page needs. Resolves to its base URL.
import { readFile } from 'node:fs';
import http from 'node:http';
import { join, normalize, resolve } from 'node:path';

const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.png': 'image/png' };

export async function serveStatic(directory) {
  const dir = resolve(directory);
  const server = http.createServer((req, res) => {
    let p = new URL(req.url, 'http://127.0.0.1').pathname;
    if (p === '/') p = '/index.html';
    const file = join(dir, normalize(p));
    if (!file.startsWith(dir)) { res.writeHead(403).end(); return; }
    readFile(file, (err, data) => {
      if (err) { res.writeHead(404).end(); return; }
      res.writeHead(200, { 'Content-Type': types[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' });
      res.end(data);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}
