// Linked into the WebAssembly micro program (bench/micro.js) with --pre-js. Under Node, V8 then
// compiles the whole module with its optimizing tier (TurboFan) as it loads, instead of starting
// every function in its baseline tier (Liftoff) and recompiling the hot ones on the same CPU
// while the program runs. The native programs are compiled ahead of time; this is the same choice
// for the WebAssembly one, and the one a long-running Node service would make. It is paid once,
// before anything is timed (docs/targets.md gives the figures). EDDY_WASM_BASELINE=1 keeps V8's
// default tiering, to compare.
if (typeof process === 'object' && process.versions && process.versions.node &&
    !process.env.EDDY_WASM_BASELINE) {
  // Both flags: with lazy compilation (Node 20's default) each function would still be compiled
  // on its first call, inside the timed run (10 ms of a million-callback batch).
  require('v8').setFlagsFromString('--no-liftoff');
  require('v8').setFlagsFromString('--no-wasm-lazy-compilation');
}
