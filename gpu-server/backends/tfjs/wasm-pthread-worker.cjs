// A pthread of tfjs-backend-wasm's threaded build, run by Node's worker_threads (see wasm-threads.ts).
// tfjs ships this worker's source as a string meant for a Blob URL, and sends the main script as a Blob, which it
// would load with importScripts(URL.createObjectURL(blob)): here that URL is the script's own file.
const vm = require('node:vm');
const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js');

const mainScript = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js');
URL.createObjectURL = () => mainScript;
URL.revokeObjectURL = () => {};
Object.assign(globalThis, { require, __filename });
// tfjs escapes the newlines inside the source's string literals before making the Blob; so must we.
vm.runInThisContext(wasmWorkerContents.replace(/\n/g, '\\n'), { filename: 'tfjs-backend-wasm-threaded-simd.worker.js' });
