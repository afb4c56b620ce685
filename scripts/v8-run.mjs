// Runs a wasm32-wasip1 command in Node's WASI (V8): node scripts/v8-run.mjs PROGRAM.wasm DIR ARGS...
// DIR is preopened as /data, so ARGS can name files under it as /data/NAME.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';

const [program, dir, ...args] = process.argv.slice(2);
if (!program || !dir) {
  console.error('usage: node scripts/v8-run.mjs PROGRAM.wasm DIR ARGS...');
  process.exit(2);
}
const wasi = new WASI({ version: 'preview1', args: [program, ...args], env: {}, preopens: { '/data': dir } });
const module = await WebAssembly.compile(await readFile(program));
// The library's proxy-wasm shell links host imports (module "env") the benchmark never calls.
const imports = wasi.getImportObject();
for (const { module: m, name, kind } of WebAssembly.Module.imports(module)) {
  if (m !== 'env' || kind !== 'function') continue;
  imports.env ??= {};
  imports.env[name] = () => {
    throw new Error(`proxy-wasm host call ${name} is not available outside Envoy`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
// The shell's `_initialize` (a reactor's entry, for Envoy) is not run: this is a command.
const { _initialize, ...exports } = instance.exports;
process.exitCode = wasi.start({ exports });
