// Runs an ONNX file from nn export in onnxruntime (the onnxruntime-node npm
// package, installed by scripts/node_deps.sh) and prints its logits.
//
//   node tests/onnx_run.mjs MODEL.onnx IMAGES.f32 COUNT [BATCH]
//   node tests/onnx_run.mjs MODEL.onnx TOKENS.i64 COUNT BATCH STEPS
//
// IMAGES.f32 holds COUNT images as raw little-endian float32 in the layout of
// the model's input (C*H*W values each, read from the model). A text model's
// input is int64 token ids [N, T] with T symbolic: TOKENS.i64 holds COUNT
// sequences of STEPS ids each as raw little-endian int64. They run in
// batches of BATCH (default: all at once; the last batch may be smaller,
// which exercises the symbolic batch dimension). Prints one line with the
// graph's inputs and outputs as the session reports them, e.g.
//   image float32 [N,1,28,28] -> logits float32 [N,10]
//   tokens int64 [N,T] -> logits float32 [N,T,40]
// then one line per example with its logits (all T*classes of them for a
// model that scores every position, position by position). Exit status: 0
// success, 3 when onnxruntime-node is not installed, 1 on any other error.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const fail = (status, message) => {
  process.stderr.write(`onnx_run.mjs: error: ${message}\n`);
  process.exit(status);
};

const [modelPath, imagesPath, countArg, batchArg, stepsArg] = process.argv.slice(2);
if (!modelPath || !imagesPath || !countArg)
  fail(1, 'usage: node tests/onnx_run.mjs MODEL.onnx IMAGES.f32|TOKENS.i64 COUNT [BATCH [STEPS]]');
const count = Number(countArg);
const batch = batchArg === undefined ? count : Number(batchArg);
if (!Number.isInteger(count) || count < 1) fail(1, `COUNT '${countArg}' is not a positive integer`);
if (!Number.isInteger(batch) || batch < 1) fail(1, `BATCH '${batchArg}' is not a positive integer`);
const steps = stepsArg === undefined ? undefined : Number(stepsArg);
if (steps !== undefined && (!Number.isInteger(steps) || steps < 1)) fail(1, `STEPS '${stepsArg}' is not a positive integer`);

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.NN_NODE_MODULES || path.join(here, '..', 'build-node', 'node_modules');
let ort;
try {
  ort = createRequire(path.join(modules, 'noop.js'))('onnxruntime-node');
} catch (e) {
  fail(3, `onnxruntime-node is not in ${modules} (install it with scripts/node_deps.sh): ${e.message.split('\n')[0]}`);
}

const dims = (shape) => `[${shape.join(',')}]`;
const describe = (m) => `${m.name} ${m.type} ${dims(m.shape)}`;

try {
  const session = await ort.InferenceSession.create(modelPath);
  const [input] = session.inputMetadata;
  const [output] = session.outputMetadata;
  if (session.inputMetadata.length !== 1 || session.outputMetadata.length !== 1 || !input.isTensor || !output.isTensor)
    fail(1, `${modelPath}: expected one tensor input and one tensor output`);
  console.log(`${describe(input)} -> ${describe(output)}`);
  // One example's shape: symbolic dimensions after the batch (T) are STEPS.
  const shape = input.shape.slice(1).map((d) => {
    if (typeof d === 'number') return d;
    if (steps === undefined) fail(1, `${modelPath}: the input ${describe(input)} needs STEPS`);
    return steps;
  });
  const perExample = shape.reduce((a, b) => a * b, 1);
  const types = { float32: [Float32Array, 'images', 'float32'], int64: [BigInt64Array, 'sequences', 'int64'] };
  if (!types[input.type]) fail(1, `${modelPath}: input type ${input.type} is neither float32 nor int64`);
  const [Kind, what, type] = types[input.type];
  const bytes = readFileSync(imagesPath);
  if (bytes.length !== count * perExample * Kind.BYTES_PER_ELEMENT)
    fail(1, `${imagesPath}: ${bytes.length} bytes, expected ${count} ${what} of ${perExample} ${type}`);
  // A copy: Buffer's memory need not be aligned for a typed array view.
  const examples = new Kind(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const lines = [];
  for (let start = 0; start < count; start += batch) {
    const n = Math.min(batch, count - start);
    const x = new ort.Tensor(type, examples.subarray(start * perExample, (start + n) * perExample), [n, ...shape]);
    const result = (await session.run({ [input.name]: x }))[output.name];
    if (result.dims.length !== output.shape.length || result.dims[0] !== n)
      fail(1, `${output.name} has shape ${dims(result.dims)} for a batch of ${n}`);
    const each = result.dims.slice(1).reduce((a, b) => a * b, 1);
    for (let i = 0; i < n; i++) lines.push(Array.from(result.data.subarray(i * each, (i + 1) * each)).join(' '));
  }
  process.stdout.write(lines.join('\n') + '\n');
} catch (e) {
  fail(1, `${modelPath}: ${e.message.split('\n')[0]}`);
}
